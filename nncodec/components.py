"""What a compressed tensor is made of, independent of how its parts are coded.

A compressor produces one of these per tensor; the codecs turn each part into bytes; the decoded
value of a tensor is fully determined by its parts (see `dequantize`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .codecs.pip import Pip, check_pip
from .dtypes import DTYPES, DType
from .errors import BadArgumentError, CorruptFileError


@dataclass(frozen=True)
class RawTensor:
    """A tensor stored losslessly: its exact little-endian storage words."""

    dtype: DType
    shape: tuple[int, ...]
    words: np.ndarray  # 1-D, dtype == self.dtype.storage


@dataclass(frozen=True)
class Quantizer:
    """How integer levels become values: a uniform step (per tensor or per channel) or a codebook."""

    mode: str  # "uniform" | "codebook"
    values: np.ndarray  # float32: the step(s) or the codebook entries
    axis: int | None = None  # uniform only: the axis whose index selects the step

    def __post_init__(self) -> None:
        if self.mode not in ("uniform", "codebook"):
            raise BadArgumentError(f"unknown quantizer mode {self.mode!r}")


@dataclass(frozen=True)
class QuantTensor:
    """Surviving positions (mask, None = all), their integer levels in row-major order, a quantizer."""

    dtype: DType
    shape: tuple[int, ...]
    levels: np.ndarray  # int64, one per surviving position
    quantizer: Quantizer
    mask: np.ndarray | None = None  # bool, self.shape
    extra: dict = field(default_factory=dict)
    pip: Pip | None = None  # inclusion probabilities; when present the mask is derived from them (codecs/pip.py)

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


CompressedTensor = RawTensor | QuantTensor


def check_quant_consistency(t: QuantTensor, exc: type[Exception] = CorruptFileError) -> None:
    """The parts must agree with each other and the shape; raises `exc` naming the disagreement."""
    if t.dtype.kind != "f":
        raise exc(f"quantized tensors must have a float dtype, not {t.dtype.name}")
    survivors = t.numel if t.mask is None else int(np.count_nonzero(t.mask))
    if t.mask is not None and tuple(t.mask.shape) != tuple(t.shape):
        raise exc(f"mask shape {t.mask.shape} differs from tensor shape {t.shape}")
    if t.pip is not None:
        check_pip(t.pip, t.numel, exc)
        if t.mask is None or not np.array_equal(t.pip.mask(t.shape), t.mask):
            raise exc(f"the pip threshold {t.pip.threshold} disagrees with the surviving weights")
    if t.levels.size != survivors:
        raise exc(f"{t.levels.size} levels for {survivors} surviving weights")
    q = t.quantizer
    if q.values.ndim != 1 or not np.isfinite(q.values).all():
        raise exc("quantizer values must be a finite 1-D array")
    if q.mode == "uniform":
        want = 1 if q.axis is None else (t.shape[q.axis] if 0 <= q.axis < len(t.shape) else -1)
        if want < 0:
            raise exc(f"quantizer axis {q.axis} is outside a {len(t.shape)}-D tensor")
        if q.values.size != want:
            raise exc(f"{q.values.size} step sizes where {want} are needed")
        if want and not (q.values > 0).all():
            raise exc("step sizes must be positive")
    else:
        if q.axis is not None:
            raise exc("a codebook quantizer has no axis")
        if t.levels.size and (q.values.size == 0 or t.levels.min() < 0 or t.levels.max() >= q.values.size):
            raise exc(f"levels outside the codebook of {q.values.size} entries")
    if t.levels.size and (t.levels.min() < -(2**31) or t.levels.max() >= 2**31):
        raise exc("levels must fit in int32")


def _float32_to_bfloat16_words(x: np.ndarray) -> np.ndarray:
    """Round float32 to bfloat16 (nearest, ties to even) and return the 16-bit words."""
    bits = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    nan = np.isnan(x)
    rounded[nan] = (bits[nan] >> 16) | 0x40
    return rounded.astype(np.uint16)


@np.errstate(over="ignore")  # level x step beyond the dtype's range is inf, as IEEE rounding says: not a warning
def dequantize(t: QuantTensor) -> np.ndarray:
    """Decoded storage words of a quantized tensor: level × step (or codebook[level]) in float32,
    scattered into the mask positions (zeros elsewhere), then rounded to the tensor's dtype."""
    q = t.quantizer
    if q.mode == "codebook":
        vals = q.values.astype(np.float32)[t.levels]
    else:
        lv = t.levels.astype(np.float32)
        if q.axis is None:
            vals = lv * np.float32(q.values[0])
        else:
            flat_pos = np.arange(t.numel, dtype=np.int64) if t.mask is None else np.flatnonzero(t.mask)
            inner = int(np.prod(t.shape[q.axis + 1 :], dtype=np.int64))
            channel = (flat_pos // inner) % t.shape[q.axis]
            vals = lv * q.values.astype(np.float32)[channel]
    full = np.zeros(t.numel, dtype=np.float32)
    if t.mask is None:
        full[:] = vals
    else:
        full[t.mask.reshape(-1)] = vals
    name = t.dtype.name
    if name == "bfloat16":
        return _float32_to_bfloat16_words(full)
    return full.astype(name).view(DTYPES[name].storage)
