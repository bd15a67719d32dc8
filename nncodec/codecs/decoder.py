"""The `decoder` component: a VAE decoder described as data, validated, and run.

Nothing from a file is executed: the architecture is a list of layers from an allowlist
(`linear`, `relu`, `tanh`), its weights are ordinary tensors of the same file. Every size is
checked against the reader's `Limits` (`max_vae_*`) and the tensors' shapes before anything is
allocated, and the decoder runs on blocks of chunks so its memory stays proportional to one block.

Arithmetic (spec §19.4): latents and weights are widened exactly to binary64, every layer is
computed in binary64 (any summation order, FMA allowed), and the output is rounded once to
binary32. Platforms then agree to within one binary32 ulp of the output (a value may sit next to
a rounding boundary); the spec's tolerance covers that.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..errors import CorruptFileError, FormatError, LimitExceededError, UnsupportedVersionError
from ..limits import DEFAULT_LIMITS, Limits
from ..vae_components import ACTIVATIONS

BLOCK_ELEMENTS = 2**22  # rows of one block x widest layer: bounds the working memory


@dataclass(frozen=True)
class Arch:
    chunk: int
    latent: int
    layers: tuple[tuple[str, ...], ...]

    def to_json(self) -> dict:
        return {"chunk": self.chunk, "latent": self.latent, "layers": [list(layer) for layer in self.layers]}

    @property
    def weight_names(self) -> list[str]:
        return [n for layer in self.layers if layer[0] == "linear" for n in layer[1:]]


def _int(value: object, what: str, lo: int, hi: int, exc: type[Exception]) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FormatError(f"{what} must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise exc(f"{what} is {value}, outside [{lo}, {hi}]")
    return value


def parse_arch(obj: Mapping, what: str = "decoder", limits: Limits = DEFAULT_LIMITS) -> Arch:
    """The chunk size, latent size and layer list of a decoder header object (sizes bounded)."""
    chunk = _int(obj.get("chunk"), f"{what} chunk", 1, limits.max_vae_chunk, LimitExceededError)
    latent = _int(obj.get("latent"), f"{what} latent", 1, limits.max_vae_latent, LimitExceededError)
    layers_raw = obj.get("layers")
    if not isinstance(layers_raw, list) or not layers_raw:
        raise FormatError(f"{what}: layers must be a non-empty list")
    limits.check(f"{what}: number of layers", len(layers_raw), limits.max_vae_layers)
    layers = []
    for i, layer in enumerate(layers_raw):
        if not isinstance(layer, list) or not layer or not all(isinstance(x, str) for x in layer):
            raise FormatError(f"{what} layer {i}: must be a list of strings")
        op = layer[0]
        if op == "linear":
            if len(layer) != 3:
                raise FormatError(f"{what} layer {i}: linear takes a weight and a bias name")
        elif op in ACTIVATIONS:
            if len(layer) != 1:
                raise FormatError(f"{what} layer {i}: {op} takes no arguments")
        else:
            raise UnsupportedVersionError(f"{what} layer {i}: unknown layer {op!r} (allowed: linear, {', '.join(ACTIVATIONS)})")
        layers.append(tuple(layer))
    return Arch(chunk, latent, tuple(layers))


def check_shapes(arch: Arch, shapes: Mapping[str, tuple[int, ...]], what: str = "decoder",
                 limits: Limits = DEFAULT_LIMITS) -> int:
    """Each weight used once and shaped to chain latent -> ... -> chunk; returns multiply-adds per
    chunk. The decoder's output size must be its chunk size (FormatError otherwise)."""
    names = arch.weight_names
    if len(set(names)) != len(names):
        raise FormatError(f"{what}: a weight is used by two layers")
    if set(names) != set(shapes):
        raise FormatError(f"{what}: layers use {sorted(names)} but the decoder holds {sorted(shapes)}")
    width, macs = arch.latent, 0
    for i, layer in enumerate(arch.layers):
        if layer[0] != "linear":
            continue
        w, b = shapes[layer[1]], shapes[layer[2]]
        if len(w) != 2 or w[1] != width:
            raise FormatError(f"{what} layer {i}: weight shape {w} does not take {width} inputs")
        if w[0] < 1:
            raise FormatError(f"{what} layer {i}: a layer of {w[0]} units")
        limits.check(f"{what} layer {i}: units", w[0], limits.max_vae_width)
        if tuple(b) != (w[0],):
            raise FormatError(f"{what} layer {i}: bias shape {b} does not match {w[0]} units")
        macs += w[0] * w[1]
        width = w[0]
    if width != arch.chunk:
        raise FormatError(f"{what}: output size {width} differs from the chunk size {arch.chunk}")
    return macs


def check_work(macs: int, chunks: int, what: str = "decoder", limits: Limits = DEFAULT_LIMITS) -> None:
    limits.check(f"{what}: decoding work ({chunks} chunks x {macs} multiply-adds)", macs * chunks, limits.max_vae_work)


def run(arch: Arch, weights: Mapping[str, np.ndarray], z: np.ndarray) -> np.ndarray:
    """Decoder output, float32 [chunks, chunk], for float32 latents `z` [chunks, latent].

    Weights (any float dtype, decoded values) are widened to float64; non-finite ones are refused.
    """
    w64 = {}
    for name, value in weights.items():
        v = np.asarray(value, dtype=np.float64)
        if not np.isfinite(v).all():
            raise CorruptFileError(f"decoder weight {name!r} holds non-finite values")
        w64[name] = v
    z = np.asarray(z, dtype=np.float32)
    if z.ndim != 2 or z.shape[1] != arch.latent:
        raise CorruptFileError(f"latents of shape {z.shape} for a decoder of latent size {arch.latent}")
    widest = max([arch.latent] + [w64[layer[1]].shape[0] for layer in arch.layers if layer[0] == "linear"])
    block = max(1, BLOCK_ELEMENTS // widest)
    out = np.empty((z.shape[0], arch.chunk), dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        for start in range(0, z.shape[0], block):
            x = z[start : start + block].astype(np.float64)
            for layer in arch.layers:
                if layer[0] == "linear":
                    x = x @ w64[layer[1]].T + w64[layer[2]]
                elif layer[0] == "relu":
                    x = np.maximum(x, 0.0)
                else:
                    x = np.tanh(x)
            out[start : start + block] = x.astype(np.float32)
    return out
