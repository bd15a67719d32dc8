"""How each stream of a `raw` planes split is coded (spec §16.1): copy, zstd, `pairs` or ANS, chosen per
`EncodeOptions.prefer` from the stream's sample statistics (balanced, speed) or by coding every candidate (size).

Split from raw.py (which splits and joins the planes and reads and writes the payloads) because the choice is a
job of its own: the statistics, the thresholds that keep the decoder fast, and the fast paths that compute only
what a choice needs (files of many tiny tensors code four streams per tensor).
"""

from __future__ import annotations

import math

import numpy as np

from . import ans, pairs, planes_jit, zstd
from .base import BALANCED_MARGIN, Encoded, EncodeOptions, smallest

_U2_LE = np.dtype("<u2")
_NEAR_RANDOM_BITS = 7.98  # a byte stream with this much entropy is not worth entropy-coding
# balanced takes ANS for a tensor's streams only where it saves at least BALANCED_MARGIN of the all-fast
# size AND this many bytes: an ANS stream costs ~50-100 us to decode whatever its length (count table,
# model, coder) against ~3 us for a zstd frame, so on a file of many tiny tensors the few bytes it saved
# each (rapidocr: 141 tensors < 4 KB, 2.8 KB in all, 0.02 %) cost a quarter of the decode time.
ANS_MIN_SAVING = 128
# likewise `pairs` replaces the zstd frame of a stream only where it saves this many bytes: its decode
# costs ~130 us more per stream than a zstd frame's on small tensors (rapidocr fp32: 85 of its 117
# pairs tensors were < 64 kB; with the floor 14 are, for +510 B of 13.4 MB; lenet300 and resemblyzer
# unchanged)
PAIRS_MIN_SAVING = 32
# and is not tried on streams shorter than this: rapidocr has ~300 tiny exponent streams where trying it
# cost 30 % of the encode (fp32: 362 -> 248 ms CPU, indicative) to save 106 B of 13.4 MB
PAIRS_MIN_STREAM = 256


def zstd_level(nbytes: int, options: EncodeOptions) -> int:
    """Slow high levels only where they are affordable (an encoder choice, not part of the format)."""
    return options.zstd_level if nbytes <= 2**16 else min(options.zstd_level, 3)

def _entropy_bits(used: np.ndarray) -> float:
    """Bits per symbol of the histogram `used` (its nonzero counts): H = log2 m - sum(c log2 c) / m."""
    m = int(used.sum())
    return max(0.0, math.log2(m) - float(np.dot(used, np.log2(used))) / m)


_SAMPLE = 1 << 16  # symbols whose histogram stands for a larger stream's (entropy bias < 0.003 bits)


def _sample(stream: np.ndarray) -> np.ndarray:
    return stream if stream.size <= _SAMPLE else stream[:: stream.size // _SAMPLE]


def _sample_size(n: int) -> int:
    """len(_sample(stream)) of a stream of n symbols, without a pass over the counts."""
    return n if n <= _SAMPLE else -(-n // (n // _SAMPLE))


def _sample_counts(stream: np.ndarray) -> np.ndarray:
    """np.bincount(_sample(stream)) (a compiled count of a 1-byte stream's sample when the loops are loaded)."""
    loops = planes_jit.kernels(stream.size) if stream.itemsize == 1 else None
    if loops is None:
        return np.bincount(_sample(stream))
    counts = np.zeros(256, dtype=np.int64)
    loops["count_bytes"](stream, 1 if stream.size <= _SAMPLE else stream.size // _SAMPLE, counts)
    nz = counts.nonzero()[0]
    return counts[: nz[-1] + 1]  # (bincount's length: the largest value + 1)


def _nonzero(counts: np.ndarray) -> np.ndarray:
    return counts[counts.nonzero()]


def encode_streams(streams: list[np.ndarray], options: EncodeOptions, try_pairs: bool = True) -> list[Encoded]:
    """The coding of every stream of a planes split, by `options.prefer` (spec §16.1); `try_pairs`: whether
    balanced and speed may use `pairs` (not in the chunks of a large tensor, see `encode`)."""
    if options.prefer == "size":
        return _choose_streams([_encode_stream_exhaustive(s, options) for s in streams], options)
    cheap = [_encode_stream_quick(s, try_pairs) for s in streams]
    fast = [f for f, _ in cheap]
    if options.prefer == "speed":
        return fast
    # balanced: ANS is computed only where the entropy estimates say the tensor could save the margin
    fast_total = sum(len(f.payload) for f in fast)
    need = max(BALANCED_MARGIN * fast_total, ANS_MIN_SAVING)
    # first without the entropies: a stream's estimate is at least its count table (2 bytes a symbol + 8),
    # so when even those bounds leave too little to save, the exact gains would too (the same choice)
    if sum(max(0, len(f.payload) - (0 if st is None else 2 * st.k + 8)) for f, st in cheap) < need:
        return fast
    gains = [len(f.payload) - (0.0 if st is None else st.estimate()) for f, st in cheap]
    if sum(g for g in gains if g > 0) < need:
        return fast
    coded = [(f, Encoded("ans", ans.encode_with_table(s.astype(np.int64)), slow=True) if g > 0 else None)
             for s, (f, _), g in zip(streams, cheap, gains, strict=True)]
    return _choose_streams(coded, options)


class _Stats:
    """A stream's length, how many distinct symbols its sample holds, and on demand its sample's nonzero
    counts (`used`) and the entropy estimate, as _encode_stream_cheap computes them."""

    __slots__ = ("stream", "n", "k", "_used", "_bits")

    def __init__(self, stream: np.ndarray, n: int, k: int, used: np.ndarray | None = None) -> None:
        self.stream, self.n, self.k, self._used, self._bits = stream, n, k, used, None

    @property
    def used(self) -> np.ndarray:
        if self._used is None:
            self._used = _nonzero(_sample_counts(self.stream))
        return self._used

    def entropy(self) -> float:
        if self._bits is None:
            self._bits = _entropy_bits(self.used)
        return self._bits

    def estimate(self) -> float:
        """The estimated size of the stream's ANS coding: n H / 8 plus a count table."""
        return self.n * self.entropy() / 8 + 2 * self.k + 8


def _encoded(codec: str, payload: bytes | memoryview) -> Encoded:
    """Encoded(codec, payload) without the frozen dataclass's setattr calls (~1.3 -> ~0.4 us; 4 per tensor)."""
    e = object.__new__(Encoded)
    e.__dict__.update(codec=codec, payload=payload, params={}, slow=False)
    return e


# a histogram of at most this many distinct symbols has an entropy of at most log2(250) = 7.966 bits, below
# _NEAR_RANDOM_BITS whatever the counts (rounding in _entropy_bits is ~1e-13 bits): no need to compute it
_FEW_SYMBOLS = 250


def _encode_stream_quick(stream: np.ndarray, try_pairs: bool = True) -> tuple[Encoded, _Stats | None]:
    """_encode_stream_cheap's coding of `stream` (the same bytes), with the entropy computed only where the
    choice needs it: a 1-byte stream of more than _FEW_SYMBOLS distinct symbols (near-random or not), or
    balanced's exact gains (encode_streams). On a file of many tiny tensors (rapidocr: 355 under 4 kB, each
    4 streams) the entropies were a fifth of the encode. None for an empty stream (its estimate is 0)."""
    n = stream.size
    raw = _le_bytes(stream)
    if not n:
        return _encoded("copy", raw), None
    if n <= _FEW_SYMBOLS and stream.itemsize == 1 and planes_jit.NATIVE is not None:
        # a short stream: neither near-random (at most n distinct symbols) nor long enough for `pairs`, so
        # only the number of distinct symbols is needed now (balanced's bound), the counts perhaps later
        stats = _Stats(stream, n, planes_jit.NATIVE["distinct_bytes"](stream))
        z = _encoded("zstd", zstd.compress_fast(raw))
        return (z if len(z.payload) < n else _encoded("copy", raw)), stats
    counts = _sample_counts(stream)
    used = _nonzero(counts)
    stats = _Stats(stream, n, used.size, used)
    if stream.itemsize == 1 and used.size > _FEW_SYMBOLS and stats.entropy() >= _NEAR_RANDOM_BITS:
        return _encoded("copy", raw), stats
    z = _encoded("zstd", zstd.compress_fast(raw))
    if try_pairs and stream.itemsize == 1 and n >= PAIRS_MIN_STREAM and (used.size <= pairs.MAX_TABLE
                                 or np.sort(used)[-pairs.MAX_TABLE:].sum() >= _PAIRS_MASS * _sample_size(n)):
        p = _pairs(stream, counts)
        z = p if p is not None and len(p.payload) < len(z.payload) - PAIRS_MIN_SAVING else z
    return (z if len(z.payload) < len(raw) else Encoded("copy", raw)), stats


def _encode_stream_exhaustive(stream: np.ndarray, options: EncodeOptions) -> tuple[Encoded, Encoded | None]:
    """prefer="size": (the smallest fast-decoding coding, the ANS coding or None) of one symbol stream."""
    raw = _le_bytes(stream)
    fast = [lambda: Encoded("copy", raw)]
    slow = None
    if not (stream.itemsize == 1 and stream.size and _entropy_bits(_nonzero(np.bincount(stream))) >= _NEAR_RANDOM_BITS):
        fast.append(lambda: Encoded("zstd", zstd.compress(raw, zstd_level(len(raw), options))))
        fast.append(lambda: Encoded("zstd", zstd.compress_literal_heavy(raw)))
        fast.append(lambda: Encoded("zstd", zstd.compress_fast(raw)))
        if stream.itemsize == 1:
            fast.append(lambda: _pairs(stream))
        if stream.size and options.allow_slow:
            slow = Encoded("ans", ans.encode_with_table(stream.astype(np.int64)), slow=True)
    return smallest(fast, EncodeOptions(prefer="speed")), slow


def _le_bytes(stream: np.ndarray) -> memoryview:
    """The `copy` bytes of a symbol stream (1-byte symbols, or 2-byte little-endian), as a view: the planes
    payload is joined from the chosen streams anyway, and `tobytes` would copy every stream once more
    holding the GIL (the join lets it go for large payloads)."""
    le = stream if stream.itemsize == 1 else stream.astype(_U2_LE, copy=False)
    return memoryview(np.ascontiguousarray(le)).cast("B")


_PAIRS_MASS = 0.9  # try `pairs` on a stream whose 15 commonest symbols hold this much of the sample


def _pairs(stream: np.ndarray, counts: np.ndarray | None = None) -> Encoded | None:
    payload = pairs.encode(stream, counts)
    return None if payload is None else Encoded(pairs.METHOD, payload)


def _choose_streams(coded: list[tuple[Encoded, Encoded | None]], options: EncodeOptions) -> list[Encoded]:
    """Per stream, the fast coding or ANS. "balanced" takes ANS only where, over the whole tensor,
    it saves at least BALANCED_MARGIN of the all-fast size: on float weights ANS shaves ~0.2 %
    off the exponents at a several-fold slower decode, which a default should not buy."""
    smallest_each = [s if s is not None and len(s.payload) < len(f.payload) else f for f, s in coded]
    if options.prefer == "size":
        return smallest_each
    all_fast = [f for f, _ in coded]
    if options.prefer == "speed":
        return all_fast
    fast_total = sum(len(e.payload) for e in all_fast)
    mixed_total = sum(len(e.payload) for e in smallest_each)
    return smallest_each if fast_total - mixed_total >= max(BALANCED_MARGIN * fast_total, ANS_MIN_SAVING) else all_fast
