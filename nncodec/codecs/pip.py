"""Posterior inclusion probabilities (`pip` component): one code per weight, uniform in logit space.

A spike-and-slab posterior gives every weight a probability phi of being non-zero. Trained PIPs sit
mostly near 0 and 1, which a grid uniform in *logit* space resolves where a linear grid cannot:
code k of a `bits`-bit grid stands for sigmoid(-limit + 2 * limit * k / (2**bits - 1)). The tensor's
mask is derived, not stored: a weight survives iff its code is >= the stored code threshold `t`, so a
tensor with PIPs costs no mask bytes. Codes are coded with ANS under their count table, or zstd over
one byte per code; the smaller is kept (FORMAT.md §20).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import BadArgumentError, CorruptFileError, LimitExceededError, UnsupportedVersionError
from . import ans, zstd
from .base import DecodeContext, Encoded, EncodeOptions, expect_params, smallest
from .raw import zstd_level

MAX_BITS = 8
MAX_LIMIT = 32
DEFAULT_BITS = 4
DEFAULT_LIMIT = 8


@dataclass(frozen=True)
class Pip:
    """Quantized inclusion probabilities of one tensor (row-major codes) and the mask threshold."""

    codes: np.ndarray  # int64, one per element, 0 <= code < 2**bits
    bits: int  # 1 .. MAX_BITS
    limit: int  # logit range [-limit, limit], 1 .. MAX_LIMIT
    threshold: int  # a weight survives iff code >= threshold; 0 .. 2**bits

    @property
    def levels(self) -> int:
        return 1 << self.bits

    def probabilities(self) -> np.ndarray:
        """The probability of every code, float32 (float64 logistic, then rounded)."""
        logit = -self.limit + 2.0 * self.limit * self.codes.astype(np.float64) / (self.levels - 1)
        return (1.0 / (1.0 + np.exp(-logit))).astype(np.float32)

    def mask(self, shape: tuple[int, ...]) -> np.ndarray:
        return (self.codes >= self.threshold).reshape(shape)


def check_pip(p: Pip, numel: int, exc: type[Exception] = CorruptFileError) -> None:
    """Ranges of the grid and the codes; raises `exc`."""
    if not isinstance(p, Pip):
        raise exc(f"pip must be a Pip, not {type(p).__name__}")
    for name, value, hi in (("bits", p.bits, MAX_BITS), ("limit", p.limit, MAX_LIMIT)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= hi:
            raise exc(f"pip {name} must be an integer in 1..{hi}, not {value!r}")
    if isinstance(p.threshold, bool) or not isinstance(p.threshold, (int, np.integer)) or not 0 <= p.threshold <= p.levels:
        raise exc(f"pip threshold must be an integer in 0..{p.levels}, not {p.threshold!r}")
    if not isinstance(p.codes, np.ndarray) or p.codes.dtype.kind not in "iu" or p.codes.ndim != 1:
        raise exc("pip codes must be a 1-D integer array")
    if p.codes.size != numel:
        raise exc(f"{p.codes.size} pip codes for {numel} elements")
    if p.codes.size and (int(p.codes.min()) < 0 or int(p.codes.max()) >= p.levels):
        raise exc(f"pip codes outside 0..{p.levels - 1}")


def code_of(prob: np.ndarray, bits: int, limit: int) -> np.ndarray:
    """The nearest grid code (in logit) of each probability."""
    with np.errstate(divide="ignore"):
        logit = np.log(prob) - np.log1p(-prob)
    k = np.rint((np.clip(logit, -limit, limit) + limit) * ((1 << bits) - 1) / (2.0 * limit))
    return k.astype(np.int64)


def quantize_pip(phi: np.ndarray, mask: np.ndarray, *, bits: int = DEFAULT_BITS, limit: int = DEFAULT_LIMIT,
                 threshold: float = 0.5) -> Pip:
    """Codes for the probabilities `phi` whose derived mask is exactly `mask`.

    The code threshold is the first code whose probability exceeds `threshold`. A weight whose
    probability rounds to the wrong side of it (only possible within one grid step of `threshold`)
    gets the nearest code on the side its mask says: the mask is never changed."""
    phi = np.asarray(phi, dtype=np.float64).reshape(-1)
    mask = np.asarray(mask, dtype=bool).reshape(-1)
    if phi.shape != mask.shape:
        raise BadArgumentError(f"{phi.size} probabilities for a mask of {mask.size} elements")
    if not np.isfinite(phi).all() or (phi.size and (phi.min() < 0 or phi.max() > 1)):
        raise BadArgumentError("inclusion probabilities must be finite and within [0, 1]")
    if not (0.0 <= threshold <= 1.0):
        raise BadArgumentError(f"the threshold must be within [0, 1], not {threshold!r}")
    grid = Pip(np.arange(1 << bits, dtype=np.int64), bits, limit, 0)
    check_pip(grid, grid.levels, BadArgumentError)
    values = grid.probabilities()
    t = int(np.searchsorted(values, np.float32(threshold), side="right"))  # first code with value > threshold
    codes = code_of(phi, bits, limit)
    if t == 0 and not mask.all() or t == grid.levels and mask.any():
        raise BadArgumentError(f"threshold {threshold} leaves no code for one side of the mask on this grid")
    codes[mask & (codes < t)] = t
    codes[~mask & (codes >= t)] = t - 1
    return Pip(codes, bits, limit, t)


def encode(p: Pip, options: EncodeOptions) -> Encoded:
    params = {"bits": int(p.bits), "limit": int(p.limit), "t": int(p.threshold)}
    codes = p.codes.astype(np.int64)
    candidates = []
    if codes.size:
        candidates.append(lambda: Encoded("ans", ans.encode_with_table(codes), params, slow=True))

    def zstd_candidate() -> Encoded:
        raw = codes.astype(np.uint8).tobytes()
        return Encoded("zstd", zstd.compress(raw, zstd_level(len(raw), options)), params)

    candidates.append(zstd_candidate)
    return smallest(candidates, options)


def decode(codec: str, params: dict, payload: memoryview, numel: int, ctx: DecodeContext) -> Pip:
    what = f"pip/{codec}"
    if codec not in ("ans", "zstd"):
        raise UnsupportedVersionError(f"unknown pip codec {codec!r} (written by a newer nncodec?)")
    expect_params(params, {"bits": int, "limit": int, "t": int}, what)
    grid = Pip(np.zeros(0, dtype=np.int64), params["bits"], params["limit"], params["t"])
    check_pip(grid, 0, CorruptFileError)
    if codec == "ans":
        try:
            codes = ans.decode_with_table(payload, numel, what, grid.levels)
        except LimitExceededError:  # the alphabet is fixed by `bits`: more symbols is a bad file
            raise CorruptFileError(f"{what}: the count table has more than {grid.levels} symbols") from None
    else:
        codes = np.frombuffer(zstd.decompress(payload, numel, what), dtype=np.uint8).astype(np.int64)
    p = Pip(codes, grid.bits, grid.limit, grid.threshold)
    check_pip(p, numel, CorruptFileError)
    return p
