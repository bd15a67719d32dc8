"""A spike-and-slab model as components: mask + quantized survivors, optionally with its PIPs.

Without PIPs this is exactly the training-aware export (`training.export.pruned_compressor`). With
PIPs, each pruned tensor gets a `pip` component and its mask is derived from it, so every weight with
phi > threshold is a survivor (one that quantizes to level 0 keeps its level-0 slot: the mask is the
PIPs' to decide). Both decode to the same values: `training.export.quantized_state_dict` holds for both.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from ...api import save_file
from ...codecs.pip import DEFAULT_BITS, DEFAULT_LIMIT, quantize_pip
from ...components import QuantTensor, RawTensor
from ...convert import to_numpy
from ...errors import BadArgumentError
from ..training.export import _exact_survivors, pruned_compressor
from ..training.targets import Targets
from ..uniform import quantize_uniform


def spike_slab_state(model: nn.Module) -> tuple[dict[str, torch.Tensor], float]:
    """The PIPs and threshold that `spike_slab` left on `model`."""
    pips = getattr(model, "spike_slab_pips", None)
    if not isinstance(pips, dict):
        raise BadArgumentError("this model carries no inclusion probabilities (run spike_slab on it first)")
    return pips, float(getattr(model, "spike_slab_threshold", 0.5))


def pip_compressor(model: nn.Module, steps: Mapping[str, float] | None = None, targets: Targets = None, *,
                   pips: Mapping[str, torch.Tensor] | None = None, threshold: float | None = None,
                   bits: int = DEFAULT_BITS, limit: int = DEFAULT_LIMIT) -> Callable[[str, Any], RawTensor | QuantTensor | None]:
    """`pruned_compressor` plus a `pip` component on every tensor that has PIPs (default: those that
    `spike_slab` left on the model). Without a step, survivors are kept exactly (a float32 codebook)."""
    if pips is None:
        pips, tau = spike_slab_state(model)
        threshold = tau if threshold is None else threshold
    threshold = 0.5 if threshold is None else float(threshold)
    steps = dict(steps or {})
    base = pruned_compressor(model, steps, targets)

    def compressor(name: str, value: Any) -> RawTensor | QuantTensor | None:
        if name not in pips:
            return base(name, value)
        dt, arr = to_numpy(value, name)
        if dt.kind != "f" or dt.name == "bfloat16":
            raise BadArgumentError(f"{name}: PIPs are stored for float16/float32/float64 tensors only")
        step = steps.get(name)
        if step is not None and not (math.isfinite(step) and step > 0):
            raise BadArgumentError(f"{name}: step must be positive and finite, not {step!r}")
        phi = pips[name].detach().cpu().double().numpy()
        if phi.shape != arr.shape:
            raise BadArgumentError(f"{name}: PIPs of shape {phi.shape} for a tensor of shape {arr.shape}")
        mask = phi > threshold
        x = arr.astype(np.float32)
        if np.any(x[~mask] != 0):
            raise BadArgumentError(f"{name}: weights with phi <= {threshold} must be pruned (exactly zero)")
        q = quantize_uniform(x, dt, float(step), mask=mask) if step is not None else _exact_survivors(arr, dt, mask)
        if q is None:
            raise BadArgumentError(f"{name}: survivors must be finite to be stored exactly (or give a step)")
        pip = quantize_pip(phi, mask, bits=bits, limit=limit, threshold=threshold)
        return QuantTensor(q.dtype, q.shape, q.levels, q.quantizer, q.mask, pip=pip)

    return compressor


def save_spike_slab(model: nn.Module, path: str | os.PathLike, *, steps: Mapping[str, float] | None = None,
                    keep_pip: bool = False, targets: Targets = None, bits: int = DEFAULT_BITS,
                    limit: int = DEFAULT_LIMIT, metadata: Mapping[str, str] | None = None, prefer: str = "size") -> int:
    """Write a `spike_slab` model to `path` (mask + levels; with `keep_pip`, PIPs + levels); returns bytes."""
    comp = (pip_compressor(model, steps, targets, bits=bits, limit=limit) if keep_pip
            else pruned_compressor(model, steps, targets))
    return save_file(model.state_dict(), path, metadata=metadata, prefer=prefer, compressor=comp)
