"""A pruned model as nncodec components: a mask of the survivors plus their quantized levels.

Pruned weights are exactly zero, so the mask is read off the weights. Survivors are either quantized
uniformly (one step per tensor) or kept exactly (a float32 codebook of their distinct values). A
survivor that quantizes to level 0 is dropped from the mask: it decodes to zero either way, and the
mask bit and level it would cost buy nothing. `quantized_state_dict` gives, bit for bit, what the
file will decode to, so accuracy can be measured before anything is written.
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
from ...components import Quantizer, QuantTensor, RawTensor, dequantize
from ...convert import to_numpy, words_to_torch
from ...errors import BadArgumentError
from ..uniform import quantize_uniform
from .targets import Targets, select_parameters


def _exact_survivors(arr: np.ndarray, dt: Any, mask: np.ndarray) -> QuantTensor | None:
    """Survivors kept bit-exactly: a codebook of their distinct float32 values (None if impossible)."""
    if dt.name not in ("float32", "float16"):
        return None
    vals = arr[mask].astype(np.float32)
    if not np.isfinite(vals).all():
        return None
    # distinct bit patterns, so that -x/x and the codebook order are exact and deterministic
    uniq_bits, inverse = np.unique(vals.view(np.uint32), return_inverse=True)
    return QuantTensor(dt, tuple(arr.shape), inverse.astype(np.int64).reshape(-1),
                       Quantizer("codebook", uniq_bits.view(np.float32)), mask)


def tensor_component(name: str, value: Any, *, masked: bool, step: float | None) -> RawTensor | QuantTensor | None:
    """The component for one tensor (None = let nncodec store it losslessly)."""
    dt, arr = to_numpy(value, name)
    if dt.kind != "f" or (dt.name == "bfloat16" and step is None):
        return None
    if dt.name == "bfloat16":
        arr = value.detach().to("cpu", torch.float32).numpy()
    if step is None:
        if not masked:
            return None
        return _exact_survivors(arr, dt, arr != 0)
    if not (math.isfinite(step) and step > 0):
        raise BadArgumentError(f"{name}: step must be positive and finite, not {step!r}")
    x = arr.astype(np.float32)
    mask = (np.rint(x / np.float32(step)) != 0) if masked else None
    return quantize_uniform(x, dt, float(step), mask=mask)


def pruned_compressor(model: nn.Module, steps: Mapping[str, float] | None = None,
                      targets: Targets = None) -> Callable[[str, Any], RawTensor | QuantTensor | None]:
    """A `compressor=` for `nncodec.save_file(model.state_dict(), ...)`: the pruned parameters become
    mask + levels (uniform with `steps[name]`, else exact); other tensors named in `steps` are
    quantized without a mask; the rest is stored losslessly."""
    masked = set(select_parameters(model, targets))
    steps = dict(steps or {})
    state = model.state_dict()
    unknown = sorted(set(steps) - set(state))
    if unknown:
        raise BadArgumentError(f"steps name tensors the model does not have: {', '.join(unknown)}")

    def compressor(name: str, value: Any) -> RawTensor | QuantTensor | None:
        return tensor_component(name, value, masked=name in masked, step=steps.get(name))

    return compressor


def quantized_state_dict(model: nn.Module, steps: Mapping[str, float] | None = None,
                         targets: Targets = None) -> dict[str, torch.Tensor]:
    """The state dict the saved file will decode to (bit-exact), on the CPU."""
    comp = pruned_compressor(model, steps, targets)
    out: dict[str, torch.Tensor] = {}
    for name, value in model.state_dict().items():
        c = comp(name, value)
        if isinstance(c, QuantTensor):
            out[name] = words_to_torch(c.dtype, c.shape, dequantize(c))
        else:
            out[name] = value.detach().to("cpu").clone()
    return out


def max_abs(model: nn.Module, names: list[str]) -> dict[str, float]:
    state = model.state_dict()
    return {n: float(state[n].detach().abs().max()) if state[n].numel() else 0.0 for n in names}


def steps_for_levels(model: nn.Module, levels: float | Mapping[str, float], names: list[str]) -> dict[str, float]:
    """Step per tensor so that its largest magnitude maps to level `levels` (levels per sign)."""
    top = max_abs(model, names)
    out = {}
    for n in names:
        lv = levels[n] if isinstance(levels, Mapping) else levels
        if top[n] > 0:
            out[n] = top[n] / lv
    return out


def search_steps(model: nn.Module, metric: Callable[[Mapping[str, torch.Tensor]], float], limit: float, *,
                 names: list[str] | None = None, targets: Targets = None, max_levels: float = 4096.0,
                 refine: bool = True) -> dict[str, float]:
    """The coarsest uniform steps whose decoded model keeps `metric(state_dict) <= limit`.

    First one common number of levels for every tensor in `names` (default: the pruned parameters),
    found by bisection on log2(levels); then, largest tensor first, each tensor's levels are divided
    by 1.5 for as long as the metric allows. Returns {} if even `max_levels` misses the limit."""
    names = list(select_parameters(model, targets)) if names is None else list(names)

    def ok(levels: Mapping[str, float]) -> bool:
        return metric(quantized_state_dict(model, steps_for_levels(model, levels, names), targets)) <= limit

    if not ok(dict.fromkeys(names, max_levels)):
        return {}
    lo, hi = 0.0, math.log2(max_levels)  # log2 levels: hi is feasible
    if ok(dict.fromkeys(names, 1.0)):
        hi = 0.0
    else:
        for _ in range(8):
            mid = 0.5 * (lo + hi)
            if ok(dict.fromkeys(names, 2.0**mid)):
                hi = mid
            else:
                lo = mid
    levels = dict.fromkeys(names, 2.0**hi)
    if refine:
        state = model.state_dict()
        for n in sorted(names, key=lambda k: -int(torch.count_nonzero(state[k]))):
            for _ in range(4):
                trial = {**levels, n: levels[n] / 1.5}
                if trial[n] < 0.5 or not ok(trial):
                    break
                levels = trial
    return steps_for_levels(model, levels, names)


def save_pruned(model: nn.Module, path: str | os.PathLike, *, steps: Mapping[str, float] | None = None,
                targets: Targets = None, metadata: Mapping[str, str] | None = None, prefer: str = "size") -> int:
    """Write the pruned model to `path` (mask + levels per pruned tensor); returns the file size in bytes."""
    return save_file(model.state_dict(), path, metadata=metadata, prefer=prefer,
                     compressor=pruned_compressor(model, steps, targets))
