"""Which weights survive (`mask` component): a boolean array of the tensor's shape.

Candidates, smallest kept: ANS with one Bernoulli probability for the whole tensor, ANS with one
probability per row (rows = the first axis; pruning density varies strongly between output units),
or zstd over the packed bits.
"""

from __future__ import annotations

import constriction
import numpy as np

from ..errors import CorruptFileError, LimitExceededError, UnsupportedVersionError
from . import ans, mask_ctx, zstd
from .ans import constriction_errors
from .base import DecodeContext, Encoded, EncodeOptions, expect_params, smallest
from .binary import Reader, encode_uvarints
from .raw import zstd_level


def _rows(shape: tuple[int, ...]) -> int:
    return shape[0] if len(shape) >= 2 else 1


def _encode_rows(bits: np.ndarray, rows: int) -> bytes:
    """Per-row ones counts, then one ANS stream coding each row under its own Bernoulli model."""
    per_row = bits.reshape(rows, -1)
    row_len = per_row.shape[1]
    ones = per_row.sum(axis=1).astype(np.uint64)
    coder = constriction.stream.stack.AnsCoder()
    with constriction_errors("mask encoder"):
        for r in range(rows - 1, -1, -1):
            k = int(ones[r])
            if 0 < k < row_len:
                model = constriction.stream.model.Categorical(np.array([row_len - k, k], dtype=np.float64) / row_len, perfect=False)
                coder.encode_reverse(per_row[r].astype(np.int32), model)
        words = coder.get_compressed()
    return encode_uvarints(ones) + words.astype("<u4").tobytes()


def _decode_rows(payload: memoryview, shape: tuple[int, ...], what: str) -> np.ndarray:
    rows = _rows(shape)
    numel = int(np.prod(shape, dtype=np.int64))
    row_len = numel // rows if rows else 0
    reader = Reader(payload, what)
    ones = reader.uvarints(rows)
    if rows and ones.max() > row_len:
        raise CorruptFileError(f"{what}: a row has more ones than its {row_len} elements")
    words = reader.words_le(reader.remaining)
    if words.size and words[-1] == 0:
        raise CorruptFileError(f"{what}: ANS payload ends in a zero word")
    out = np.zeros((rows, row_len), dtype=bool)
    with constriction_errors(what):
        coder = constriction.stream.stack.AnsCoder(words)
        for r in range(rows):
            k = int(ones[r])
            if k == row_len:
                out[r] = True
            elif k:
                model = constriction.stream.model.Categorical(np.array([row_len - k, k], dtype=np.float64) / row_len, perfect=False)
                out[r] = coder.decode(model, row_len).astype(bool)
                if int(np.count_nonzero(out[r])) != k:
                    raise CorruptFileError(f"{what}: row {r} decodes to a different number of ones than its count {k}")
        if not coder.is_empty():
            raise CorruptFileError(f"{what}: ANS payload has data left after the last row")
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
    numel = int(np.prod(shape, dtype=np.int64))
    if codec == "ans":
        try:
            sym = ans.decode_with_table(payload, numel, what, 2)
        except LimitExceededError:  # a two-symbol alphabet is the format, not a resource limit
            raise CorruptFileError(f"{what}: the count table has more than two symbols") from None
        if sym.size and (sym.min() < 0 or sym.max() > 1):
            raise CorruptFileError(f"{what}: mask symbols outside {{0, 1}}")
        return sym.astype(bool).reshape(shape)
    if codec == "ans-rows":
        return _decode_rows(payload, shape, what)
    if codec == "ans-classes":
        return mask_ctx.decode(payload, shape, what)
    if codec == "zstd":
        packed = zstd.decompress(payload, (numel + 7) // 8, what)
        bits = np.unpackbits(np.frombuffer(packed, dtype=np.uint8), bitorder="little")
        if bits[numel:].any():
            raise CorruptFileError(f"{what}: padding bits after the mask are not zero")
        return bits[:numel].astype(bool).reshape(shape)
    raise UnsupportedVersionError(f"unknown mask codec {codec!r} (written by a newer nncodec?)")
