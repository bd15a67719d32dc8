"""Which weights survive (`mask` component): a boolean array of the tensor's shape.

Candidates, smallest kept: ANS with one Bernoulli probability for the whole tensor, ANS with one
probability per row (rows = the first axis; pruning density varies strongly between output units),
or zstd over the packed bits.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import CorruptFileError, LimitExceededError, UnsupportedVersionError
from . import ans, mask_ctx, zstd
from .base import DecodeContext, Encoded, EncodeOptions, expect_params, smallest
from .binary import Reader, encode_uvarints
from .raw import zstd_level


def _rows(shape: tuple[int, ...]) -> int:
    return shape[0] if len(shape) >= 2 else 1


def _row_model(row_len: int, k: int):
    return ans.categorical(np.array([row_len - k, k], dtype=np.float64) / row_len)


def _encode_rows(bits: np.ndarray, rows: int) -> bytes:
    """Per-row ones counts, then one ANS stream coding each row under its own Bernoulli model."""
    per_row = bits.reshape(rows, -1)
    row_len = per_row.shape[1]
    ones = per_row.sum(axis=1).astype(np.uint64)
    enc = ans.StreamEncoder()
    models: dict[int, object] = {}
    for r in range(rows - 1, -1, -1):
        k = int(ones[r])
        if 0 < k < row_len:
            if k not in models:
                models[k] = _row_model(row_len, k)
            enc.push(per_row[r].astype(np.int32), models[k])
    return encode_uvarints(ones) + enc.to_bytes()


_LONG_RUN = 4096  # symbols: a run of rows this long is decoded under its one model


def _decode_rows(payload: memoryview, shape: tuple[int, ...], ctx: DecodeContext, what: str) -> np.ndarray:
    """Consecutive rows with the same count form a run decoded under one model; short runs (counts
    that change from row to row) are batched and decoded in one call with a probability pair per
    symbol (the same fixed-point model per row), so a million rows cost a few calls, not a million
    models built in a Python loop."""
    rows = _rows(shape)
    numel = math.prod(shape)
    row_len = numel // rows if rows else 0
    reader = Reader(payload, what)
    ones = reader.uvarints(rows).astype(np.int64)
    if rows and ones.max() > row_len:
        raise CorruptFileError(f"{what}: a row has more ones than its {row_len} elements")
    dec = ans.StreamDecoder(reader.take(reader.remaining), what, ctx.ans_final_state)
    out = np.zeros((rows, row_len), dtype=bool)
    out[ones == row_len] = True
    coded = np.flatnonzero((ones > 0) & (ones < row_len))
    if coded.size:
        k_coded = ones[coded]
        brk = np.flatnonzero((np.diff(coded) != 1) | (np.diff(k_coded) != 0)) + 1
        starts = np.concatenate(([0], brk)).tolist()
        ends = np.concatenate((brk, [coded.size])).tolist()

        def batch(lo: int, hi: int) -> None:  # coded rows lo..hi-1, each under its own (row_len, k)
            if hi > lo:
                k = k_coded[lo:hi].astype(np.float64)
                pairs = np.stack([(row_len - k) / row_len, k / row_len], axis=1)  # as _row_model computes them
                bits = dec.decode_per_symbol(np.repeat(pairs, row_len, axis=0))
                out[coded[lo:hi]] = bits.reshape(hi - lo, row_len).astype(bool)

        pending = 0
        for s, e in zip(starts, ends, strict=True):
            if (e - s) * row_len >= _LONG_RUN:
                batch(pending, s)
                r0, r1 = int(coded[s]), int(coded[e - 1]) + 1
                dec.decode_into(out[r0:r1].reshape(-1), _row_model(row_len, int(k_coded[s])))
                pending = e
            elif (e - pending) * row_len >= ans.CHUNK:
                batch(pending, e)
                pending = e
        batch(pending, coded.size)
        got = np.count_nonzero(out[coded], axis=1)
        bad = np.flatnonzero(got != k_coded)
        if bad.size:
            r = int(coded[bad[0]])
            raise CorruptFileError(f"{what}: row {r} decodes to a different number of ones than its count {int(ones[r])}")
    dec.finish()
    return out.reshape(shape)


def encode(mask: np.ndarray, options: EncodeOptions) -> Encoded:
    bits = np.asarray(mask, dtype=bool).reshape(-1)
    shape = tuple(np.shape(mask))
    candidates = []
    if bits.size:
        candidates.append(lambda: Encoded("ans", ans.encode_with_table(bits.astype(np.int64), coarsen=()), slow=True))
        if _rows(shape) > 1:
            candidates.append(lambda: Encoded("ans-rows", _encode_rows(bits, _rows(shape)), slow=True))
        if options.contexts and mask_ctx.applies(shape):  # row/column-class contexts (mask_ctx.py)
            candidates.append(lambda: Encoded("ans-classes", mask_ctx.encode(bits.reshape(shape)), slow=True))

    def zstd_candidate() -> Encoded:
        packed = np.packbits(bits, bitorder="little").tobytes()
        return Encoded("zstd", zstd.compress(packed, zstd_level(len(packed), options)))

    candidates.append(zstd_candidate)
    return smallest(candidates, options)


def decode(codec: str, params: dict, payload: memoryview, shape: tuple[int, ...], ctx: DecodeContext) -> np.ndarray:
    what = f"mask/{codec}"
    expect_params(params, {}, what)
    numel = math.prod(shape)
    if codec == "ans":
        try:
            bits = ans.decode_with_table(payload, numel, what, 2, ctx.ans_final_state, dtype=bool)
        except LimitExceededError:  # a two-symbol alphabet is the format, not a resource limit
            raise CorruptFileError(f"{what}: the count table has more than two symbols") from None
        return bits.reshape(shape)
    if codec == "ans-rows":
        return _decode_rows(payload, shape, ctx, what)
    if codec == "ans-classes":
        return mask_ctx.decode(payload, shape, ctx, what)
    if codec == "zstd":
        packed = zstd.decompress(payload, (numel + 7) // 8, what)
        bits = np.unpackbits(np.frombuffer(packed, dtype=np.uint8), bitorder="little")
        if bits[numel:].any():
            raise CorruptFileError(f"{what}: padding bits after the mask are not zero")
        return bits[:numel].view(bool).reshape(shape)
    raise UnsupportedVersionError(f"unknown mask codec {codec!r} (written by a newer nncodec?)")
