"""What a VAE-compressed model set is made of (issue 11), independent of how its parts are coded.

A collection of models shares one or more decoders. Each model is a *group*: its VAE-coded
tensors are flattened in order, concatenated and cut into chunks; every chunk has one latent
vector. A tensor's value is the decoder's output on its group's latents, cut back to its shape,
plus an optional quantized residual (an ordinary `QuantTensor` of levels, step, mask).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .components import CompressedTensor, QuantTensor
from .dtypes import DType

ACTIVATIONS = ("relu", "tanh")  # the allowlist; "linear" layers carry weights


@dataclass(frozen=True)
class DecoderSpec:
    """A decoder as data: chunk size, latent size, layer list, and its weights as ordinary tensors.

    `layers` holds ("linear", weight name, bias name) or (activation,) tuples; a linear layer
    computes y = x @ W.T + b with W of shape (out, in), as torch stores nn.Linear weights.
    """

    chunk: int
    latent: int
    layers: tuple[tuple[str, ...], ...]
    weights: dict[str, CompressedTensor] = field(default_factory=dict)


@dataclass(frozen=True)
class Latents:
    """Quantized posterior means: levels (int64, [chunks, latent]) times one float32 step."""

    levels: np.ndarray
    step: float

    def values(self) -> np.ndarray:
        """float32(level) x float32(step), each product rounded to float32 (as spec §7)."""
        return self.levels.astype(np.float32) * np.float32(self.step)


@dataclass(frozen=True)
class VaeGroup:
    """One model of a collection: its decoder, its latents, and its name (the tensors' prefix)."""

    model: str
    decoder: int
    latents: Latents


@dataclass(frozen=True)
class VaeTensor:
    """A tensor decoded from its group's latents, plus an optional residual of the same shape."""

    dtype: DType
    shape: tuple[int, ...]
    group: int
    residual: QuantTensor | None = None

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass(frozen=True)
class VaeSet:
    """The shared parts of a file: decoders and groups (tensors refer to groups by index)."""

    decoders: tuple[DecoderSpec, ...]
    groups: tuple[VaeGroup, ...]
