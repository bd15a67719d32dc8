"""Uniform scalar quantization with an optional magnitude mask: the simplest lossy compressor.

level = round(w / step) for each surviving weight; step is per tensor or per output channel.
The step can be given directly, from a bit width (`step_for_bits`) or from a target relative error
(`step_for_relative_error`); `channel_steps` broadcasts a per-channel step to every element.
"""

from __future__ import annotations

import numpy as np

from ..components import Quantizer, QuantTensor
from ..dtypes import DType
from ..errors import BadArgumentError


def quantize_uniform(values: np.ndarray, dtype: DType, step: float | np.ndarray, *, axis: int | None = None,
                     mask: np.ndarray | None = None) -> QuantTensor:
    """Quantize float `values` with `step` (a scalar, or one per index of `axis`), keeping `mask`."""
    if dtype.kind != "f":
        raise BadArgumentError(f"only float tensors can be quantized, not {dtype.name}")
    x = np.asarray(values, dtype=np.float32)
    steps = np.atleast_1d(np.asarray(step, dtype=np.float32))
    if not (np.isfinite(steps).all() and (steps > 0).all()):
        raise BadArgumentError("step sizes must be positive and finite")
    if axis is None:
        if steps.size != 1:
            raise BadArgumentError("several step sizes need an axis")
        per_elem = np.broadcast_to(steps[0], x.shape)
    else:
        if not 0 <= axis < x.ndim or steps.size != x.shape[axis]:
            raise BadArgumentError(f"need {x.shape[axis] if 0 <= axis < x.ndim else '?'} step sizes for axis {axis}")
        bshape = [1] * x.ndim
        bshape[axis] = -1
        per_elem = steps.reshape(bshape)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != x.shape:
            raise BadArgumentError(f"mask shape {mask.shape} differs from tensor shape {x.shape}")
    q = np.rint(x / per_elem)
    if not np.isfinite(q).all() or np.abs(q).max(initial=0) >= 2**31:
        raise BadArgumentError("values are not finite or the step is too small for int32 levels")
    levels = q.astype(np.int64)
    levels = levels.reshape(-1) if mask is None else levels[mask]
    return QuantTensor(dtype, tuple(x.shape), levels, Quantizer("uniform", steps, axis), mask)


def default_axis(shape: tuple[int, ...]) -> int | None:
    """The output-channel axis of a weight (axis 0 of a 2-D+ tensor, as torch stores them), else None."""
    return 0 if len(shape) >= 2 and shape[0] > 1 else None


def channel_steps(steps: np.ndarray, shape: tuple[int, ...], axis: int | None) -> np.ndarray:
    """The step of every element: a scalar step, or steps[index along axis] broadcast to `shape`."""
    steps = np.atleast_1d(np.asarray(steps, dtype=np.float32))
    if axis is None:
        return np.broadcast_to(steps[0], shape)
    bshape = [1] * len(shape)
    bshape[axis] = -1
    return np.broadcast_to(steps.reshape(bshape), shape)


def _per_channel(x: np.ndarray, axis: int | None, reduce) -> np.ndarray:
    if axis is None:
        return np.atleast_1d(np.float64(reduce(x.reshape(-1)) if x.size else 0.0))
    moved = np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)
    return np.array([reduce(r) if r.size else 0.0 for r in moved], dtype=np.float64)


def _positive(steps: np.ndarray, fallback: float = 1.0) -> np.ndarray:
    """All-zero channels get a harmless positive step (their levels are all zero)."""
    steps = np.asarray(steps, dtype=np.float64)
    good = steps[np.isfinite(steps) & (steps > 0)]
    fill = float(good.max()) if good.size else fallback
    return np.where(np.isfinite(steps) & (steps > 0), steps, fill).astype(np.float32)


def step_for_bits(values: np.ndarray, bits: int, axis: int | None = None) -> np.ndarray:
    """Steps that map max|w| (per tensor or per channel) to the largest level of a signed `bits`-bit
    symmetric grid, i.e. levels in [-(2**(bits-1) - 1), 2**(bits-1) - 1]; bits=1 means {-1, 0, 1}."""
    if not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 31:
        raise BadArgumentError(f"bits must be an integer in [1, 31], got {bits!r}")
    top = max(2 ** (bits - 1) - 1, 1)
    peak = _per_channel(np.abs(np.asarray(values, dtype=np.float64)), axis, np.max)
    return _positive(peak / top)


def step_for_relative_error(values: np.ndarray, relative_error: float, axis: int | None = None) -> np.ndarray:
    """Steps whose uniform rounding noise (step / sqrt(12) RMS) is `relative_error` times the RMS of
    the weights (per tensor or per channel)."""
    if not 0 < float(relative_error) < 10:
        raise BadArgumentError(f"relative error must be in (0, 10), got {relative_error!r}")
    rms = _per_channel(np.asarray(values, dtype=np.float64), axis, lambda r: np.sqrt(np.mean(r * r)))
    return _positive(rms * float(relative_error) * np.sqrt(12.0))


def levels_to_quant_tensor(levels: np.ndarray, dtype: DType, steps: np.ndarray, axis: int | None,
                           zeros: str = "mask", mask: np.ndarray | None = None) -> QuantTensor:
    """A uniform `QuantTensor` from integer levels of the tensor's full shape.

    zeros="mask": zero levels become pruned positions of a mask (no mask when nothing is zero);
    zeros="levels": every level is stored and no mask is used. An explicit `mask` (positions that
    are pruned regardless of their level) is combined with the zero levels in "mask" mode.
    """
    if zeros not in ("mask", "levels"):
        raise BadArgumentError(f"zeros must be 'mask' or 'levels', not {zeros!r}")
    lv = np.asarray(levels, dtype=np.int64)
    quantizer = Quantizer("uniform", np.atleast_1d(np.asarray(steps, dtype=np.float32)), axis)
    keep = lv != 0 if zeros == "mask" else np.ones(lv.shape, dtype=bool)
    if mask is not None:
        keep &= np.asarray(mask, dtype=bool)
        lv = np.where(keep, lv, 0)
    if keep.all():
        return QuantTensor(dtype, tuple(lv.shape), lv.reshape(-1), quantizer, None)
    return QuantTensor(dtype, tuple(lv.shape), lv[keep], quantizer, keep)
