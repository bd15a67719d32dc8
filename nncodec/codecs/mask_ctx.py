"""Mask codec "ans-classes": mask bits under probabilities conditioned on their row's and column's class.

Pruning leaves some input columns of a layer (unused input pixels, weak input channels) nearly
empty and others dense, and output rows differ in density too. The encoder sorts the rows into
Kr classes and the columns into Kc classes by their density; the class of every row and column
is coded first, and then each (row class, column class) context has its own stored pair of
counts (zeros, ones). Since every bit's context is known once the classes are decoded, all bits of
one context are decoded in a single call: Kr·Kc calls in all, as fast as an i.i.d. model. (An
adaptive "ones above in this column" context was measured too: same size, 5-10x slower decode.)

The mask is viewed as R x C: R = shape[0] rows, C = the product of the other dimensions (a
conv kernel's column is an (input channel, ky, kx) position).

Payload:
    uvarint Kr (1..16), uvarint Kc (1..64),
    if Kr > 1: the row-class count table, if Kc > 1: the column-class count table (tables as
    in the "ans" codec: uvarint zigzag(lo) (must be 0), uvarint alphabet (<= K), alphabet x
    uvarint count), then Kr·Kc x (uvarint zeros, uvarint ones), then the ANS words
    (little-endian uint32) to the end.
Decoding order: the R row classes, the C column classes, then for each context
c = row_class·Kc + column_class in increasing order, the bits at the positions of that context in
row-major order, under Categorical([zeros, ones] / (zeros + ones)). A context whose zeros or ones
count is zero codes its bits with no bits.
"""

from __future__ import annotations

import numpy as np

from ..errors import CorruptFileError, LimitExceededError
from .ans import CountTable, StreamDecoder, StreamEncoder, categorical, coarsened
from .base import DecodeContext
from .binary import Reader, encode_uvarints, write_uvarint

MAX_ROW_CLASSES = 16
MAX_COL_CLASSES = 64
CLASS_CHOICES = ((1, 4), (1, 8), (4, 8), (4, 16))
_MAX_TOTAL = 2**53


def applies(shape: tuple[int, ...]) -> bool:
    return len(shape) >= 2 and shape[0] >= 1 and int(np.prod(shape, dtype=np.int64)) >= 2


def _classes(density: np.ndarray, k: int) -> np.ndarray:
    if k == 1 or density.size == 0:
        return np.zeros(density.size, dtype=np.int64)
    edges = np.quantile(density, np.linspace(0, 1, k + 1)[1:-1])
    return np.searchsorted(edges, density, side="right").astype(np.int64)


def _model(pair: np.ndarray):
    p = pair.astype(np.float64)
    return categorical(p / p.sum())


def _encode_with(bits: np.ndarray, rc: np.ndarray, cc: np.ndarray, kr: int, kc: int, max_count: int | None) -> bytes:
    ctx = (rc[:, None] * kc + cc[None, :]).reshape(-1).astype(np.uint16)
    flat = bits.reshape(-1)
    order = np.argsort(ctx, kind="stable")
    grouped = flat[order].astype(np.int32)
    n_ctx = kr * kc
    ones = np.bincount(ctx, weights=flat, minlength=n_ctx).astype(np.uint64)
    total = np.bincount(ctx, minlength=n_ctx).astype(np.uint64)
    pairs = np.stack([total - ones, ones], axis=1)
    if max_count is not None:
        pairs = np.stack([coarsened(CountTable(0, p), max_count).counts if p.max() > max_count else p for p in pairs])
    tables = {}
    for which, k, cls in (("rows", kr, rc), ("cols", kc, cc)):
        if k > 1:
            t = CountTable(0, np.bincount(cls, minlength=k).astype(np.uint64))
            tables[which] = coarsened(t, max_count) if max_count is not None and int(t.counts.max()) > max_count else t
    head = write_uvarint(kr) + write_uvarint(kc) + b"".join(t.to_bytes() for t in tables.values())
    head += encode_uvarints(pairs.reshape(-1))
    enc = StreamEncoder()
    ends = np.cumsum(total.astype(np.int64))
    for c in range(n_ctx - 1, -1, -1):
        if pairs[c, 0] and pairs[c, 1]:
            enc.push(grouped[ends[c] - int(total[c]) : ends[c]], _model(pairs[c]))
    for which, cls in (("cols", cc), ("rows", rc)):
        t = tables.get(which)
        if t is not None and t.alphabet > 1:
            enc.push(cls.astype(np.int32), categorical(t.probabilities()))
    return head + enc.to_bytes()


def encode(mask: np.ndarray, choices: tuple[tuple[int, int], ...] = CLASS_CHOICES) -> bytes:
    """The smallest "ans-classes" payload of a boolean mask over a few class counts."""
    shape = np.shape(mask)
    bits = np.asarray(mask, dtype=bool).reshape(shape[0], -1)
    rows, cols = bits.shape
    best = None
    for kr, kc in choices:
        kr, kc = min(kr, rows), min(kc, cols)
        rc = _classes(bits.mean(axis=1), kr)
        cc = _classes(bits.mean(axis=0), kc)
        for max_count in (None, 255) if bits.size < 2**16 else (None,):  # coarse tables pay on small masks only
            blob = _encode_with(bits, rc, cc, kr, kc, max_count)
            if best is None or len(blob) < len(best):
                best = blob
    assert best is not None
    return best


def _read_classes(reader: Reader, k: int, what: str) -> CountTable | None:
    if k == 1:
        return None
    try:
        table = CountTable.read(reader, k)
    except LimitExceededError:  # more classes than declared is damage, not a resource limit
        raise CorruptFileError(f"{what}: a class table has more than {k} symbols") from None
    if table.lo != 0:
        raise CorruptFileError(f"{what}: class tables must start at class 0")
    return table


def decode(payload: memoryview, shape: tuple[int, ...], ctx: DecodeContext, what: str) -> np.ndarray:
    if not applies(shape):
        raise CorruptFileError(f"{what}: row/column classes need a tensor of at least two dimensions")
    rows = shape[0]
    cols = int(np.prod(shape[1:], dtype=np.int64))
    reader = Reader(payload, what)
    kr, kc = reader.uvarint(), reader.uvarint()
    if not (1 <= kr <= MAX_ROW_CLASSES and 1 <= kc <= MAX_COL_CLASSES):
        raise CorruptFileError(f"{what}: {kr} row / {kc} column classes (1..{MAX_ROW_CLASSES} / 1..{MAX_COL_CLASSES})")
    row_table = _read_classes(reader, kr, what)
    col_table = _read_classes(reader, kc, what)
    pairs = reader.uvarints(2 * kr * kc).reshape(kr * kc, 2)
    total = int((pairs >> np.uint64(32)).sum()) * 2**32 + int((pairs & np.uint64(0xFFFFFFFF)).sum())
    if total == 0 or total > _MAX_TOTAL:
        raise CorruptFileError(f"{what}: context counts are all zero or sum to over 2**53")
    dec = StreamDecoder(reader.take(reader.remaining), what, ctx.ans_final_state)
    classes = []
    for table, n in ((row_table, rows), (col_table, cols)):
        if table is None or table.alphabet == 1:
            classes.append(np.zeros(n, dtype=np.int64))
            continue
        cls = np.empty(n, dtype=np.int64)
        dec.decode_into(cls, categorical(table.probabilities()), 0, table.counts == 0)
        classes.append(cls)
    rc, cc = classes
    # The positions of context (a, b) in row-major order are rows of class a x columns of class b:
    # decode each context's bits straight into that sub-grid (no per-position index arrays).
    row_sets = [np.flatnonzero(rc == a) for a in range(kr)]
    col_sets = [np.flatnonzero(cc == b) for b in range(kc)]
    out = np.zeros((rows, cols), dtype=bool)
    for c in range(kr * kc):
        r_idx, c_idx = row_sets[c // kc], col_sets[c % kc]
        n = r_idx.size * c_idx.size
        if not n:
            continue
        zeros, ones = int(pairs[c, 0]), int(pairs[c, 1])
        if zeros == 0 and ones == 0:
            raise CorruptFileError(f"{what}: context {c} holds bits but has no counts")
        if zeros and ones:
            bits = np.empty(n, dtype=bool)
            dec.decode_into(bits, _model(pairs[c]))
            out[np.ix_(r_idx, c_idx)] = bits.reshape(r_idx.size, c_idx.size)
        elif ones:
            out[np.ix_(r_idx, c_idx)] = True
    dec.finish()
    return out.reshape(shape)
