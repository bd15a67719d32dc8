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
    levels: np.ndarray  # integers, one per surviving position (components() returns int64)
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
    lo, hi = levels_range(t.levels) if t.levels.size else (0, 0)
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
        if t.levels.size and (q.values.size == 0 or lo < 0 or hi >= q.values.size):
            raise exc(f"levels outside the codebook of {q.values.size} entries")
    if t.levels.size and (lo < -(2**31) or hi >= 2**31):
        raise exc("levels must fit in int32")


def _float32_to_bfloat16_words(x: np.ndarray) -> np.ndarray:
    """Round float32 to bfloat16 (nearest, ties to even) and return the 16-bit words."""
    bits = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    nan = np.isnan(x)
    rounded[nan] = (bits[nan] >> 16) | 0x40
    return rounded.astype(np.uint16)


_BLOCK = 1 << 18  # output elements dequantized per step: temporaries (~40 bytes each) stay ~10 MiB


def _is_constant(a: np.ndarray) -> bool:
    """A zero-stride array (the decoders' constant levels or mask): one value, no memory."""
    return a.ndim >= 1 and a.size > 0 and all(st == 0 for st in a.strides)


def as_int64(levels: np.ndarray) -> np.ndarray:
    """int64 levels (what components() hands out); a constant stays a zero-stride array."""
    if _is_constant(levels):
        return np.broadcast_to(np.int64(levels.reshape(-1)[0]), levels.shape)
    return levels.astype(np.int64)


def levels_range(levels: np.ndarray) -> tuple[int, int]:
    """(min, max) of non-empty levels; O(1) for a constant (zero-stride) array."""
    if _is_constant(levels):
        v = int(levels.reshape(-1)[0])
        return v, v
    return int(levels.min()), int(levels.max())


@np.errstate(over="ignore")  # level x step beyond the dtype's range is inf, as IEEE rounding says: not a warning
def _values_block(t: QuantTensor, lv: np.ndarray, positions) -> np.ndarray:
    """float32 values of the survivors `lv` at flat `positions` (a callable, only for per-channel steps)."""
    q = t.quantizer
    if q.mode == "codebook":
        return q.values.astype(np.float32)[lv]
    if q.axis is None:
        return lv.astype(np.float32) * np.float32(q.values[0])
    inner = int(np.prod(t.shape[q.axis + 1 :], dtype=np.int64))
    channel = (positions() // inner) % t.shape[q.axis]
    return lv.astype(np.float32) * q.values.astype(np.float32)[channel]


@np.errstate(over="ignore")  # float32 -> float16 overflow is inf by IEEE rounding, not a warning
def _to_dtype(full: np.ndarray, name: str) -> np.ndarray:
    if name == "bfloat16":
        return _float32_to_bfloat16_words(full)
    return full.astype(name).view(DTYPES[name].storage)


def _float32_blocks(t: QuantTensor):
    """(start, stop, float32 values) for consecutive blocks of the flat output: level × step (or
    codebook[level]) in float32, scattered into the mask positions (zeros elsewhere)."""
    n = t.numel
    mask = None if t.mask is None else t.mask.reshape(-1)
    taken = 0
    for start in range(0, n, _BLOCK):
        stop = min(n, start + _BLOCK)
        full = np.zeros(stop - start, dtype=np.float32)
        if mask is None:
            lv = t.levels[start:stop]
            full[:] = _values_block(t, lv, lambda a=start, b=stop: np.arange(a, b, dtype=np.int64))
        else:
            m = mask[start:stop]
            k = int(np.count_nonzero(m))
            lv = t.levels[taken : taken + k]
            taken += k
            full[m] = _values_block(t, lv, lambda m=m, a=start: np.flatnonzero(m) + a)
        yield start, stop, full


def dequantize_float32(t: QuantTensor) -> np.ndarray:
    """The float32 values of a quantized tensor before rounding to its dtype (spec §7); the VAE
    residual is added at this precision."""
    out = np.empty(t.numel, dtype=np.float32)
    for start, stop, full in _float32_blocks(t):
        out[start:stop] = full
    return out


def float32_to_words(full: np.ndarray, dtype: DType) -> np.ndarray:
    """float32 values rounded to a float dtype (spec §7), as that dtype's storage words."""
    return _to_dtype(full, dtype.name)


def dequantize(t: QuantTensor) -> np.ndarray:
    """Decoded storage words of a quantized tensor: level × step (or codebook[level]) in float32,
    scattered into the mask positions (zeros elsewhere), then rounded to the tensor's dtype.
    Works block by block into the output, so the peak is the output plus a few MiB."""
    n = t.numel
    out = np.empty(n, dtype=t.dtype.storage)
    if t.mask is None and n and _is_constant(t.levels) and t.quantizer.axis is None:
        out[:] = _to_dtype(_values_block(t, t.levels[:1], None).reshape(1), t.dtype.name)  # one value: a fill
        return out
    for start, stop, full in _float32_blocks(t):
        out[start:stop] = _to_dtype(full, t.dtype.name)
    return out
