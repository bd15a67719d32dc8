"""Uniform scalar quantization with an optional magnitude mask: the simplest lossy compressor.

level = round(w / step) for each surviving weight; step is per tensor or per output channel.
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
