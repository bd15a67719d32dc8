"""Levels codec "ans-rowclass": levels conditioned on their output channel's class.

With one step for a whole tensor, output channels (rows) differ in scale, so their level
distributions differ. The encoder sorts non-empty rows into K classes (by the mean |level| of the
row) and stores, for every class, a count table; each row's class is itself coded (under a stored
count table over 0..K-1). Pays a few percent on finely quantized dense layers; the exact size
decides against it where it does not pay.

Which levels belong to which row follows from the tensor's shape and mask (decoded first): the
survivors of row r are those of the mask's row r (all C positions without a mask). Rows without
survivors get no class.

Payload (one ANS stream; symbols are decoded in this order):
    uvarint K (2..16), class count table, K level count tables (tables as in the "ans" codec:
    uvarint zigzag(lo), uvarint alphabet, alphabet x uvarint count), then the ANS words
    (little-endian uint32) to the end. Decoding order: the classes of the non-empty rows in row
    order, then the levels of class 0's rows (row-major), then class 1's, ... A table of alphabet
    size one codes its symbols with no bits.
"""

from __future__ import annotations

import numpy as np

from ..errors import CorruptFileError, LimitExceededError
from .ans import CountTable, StreamDecoder, StreamEncoder, categorical, coarsened, histogram
from .base import DecodeContext
from .binary import Reader, write_uvarint

MAX_CLASSES = 16
CLASS_CHOICES = (2, 4, 8)


def row_counts(shape: tuple[int, ...], mask: np.ndarray | None) -> np.ndarray | None:
    """Survivors per row (rows = first axis), or None where row contexts do not apply or where the
    tensor has no elements (a 0-element tensor may declare 2**53 rows: allocate nothing per row)."""
    if len(shape) < 2 or shape[0] < 2 or 0 in shape:
        return None
    rows = shape[0]
    cols = int(np.prod(shape[1:], dtype=np.int64))
    if mask is None:
        return np.full(rows, cols, dtype=np.int64)
    return np.count_nonzero(np.asarray(mask, dtype=bool).reshape(rows, -1), axis=1).astype(np.int64)


def _model(table: CountTable):
    return categorical(table.probabilities())


def _grouping(classes: np.ndarray, counts: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(index of each level in class-grouped order, levels per class) for rows with `classes`."""
    counts = counts.astype(np.int64)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
    order = np.argsort(classes, kind="stable")
    lengths = counts[order]
    new_starts = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
    # position j of the grouped order comes from starts[row] + (j - new_start[row]) of the row it falls in
    idx = np.repeat(starts[order] - new_starts, lengths) + np.arange(int(lengths.sum()), dtype=np.int64)
    per_class = np.bincount(classes, weights=counts, minlength=k).astype(np.int64)
    return idx, per_class


def _encode_with(levels: np.ndarray, counts: np.ndarray, classes_all: np.ndarray, k: int, max_count: int | None) -> bytes:
    nonempty = counts > 0
    classes = classes_all[nonempty]
    ccounts = counts[nonempty]
    idx, per_class = _grouping(classes, ccounts, k)
    grouped = levels[idx]
    class_table = CountTable(0, np.bincount(classes, minlength=k).astype(np.uint64))
    tables, pos = [], 0
    for c in range(k):
        part = grouped[pos : pos + per_class[c]]
        pos += per_class[c]
        t = histogram(part) if part.size else CountTable(0, np.ones(1, dtype=np.uint64))
        tables.append(coarsened(t, max_count) if max_count and int(t.counts.max()) > max_count else t)
    if max_count and int(class_table.counts.max()) > max_count:
        class_table = coarsened(class_table, max_count)
    head = write_uvarint(k) + class_table.to_bytes() + b"".join(t.to_bytes() for t in tables)
    enc = StreamEncoder()
    pos = grouped.size
    for c in range(k - 1, -1, -1):  # reverse of the decoding order
        part = grouped[pos - per_class[c] : pos]
        pos -= per_class[c]
        if part.size and tables[c].alphabet > 1:
            enc.push((part - tables[c].lo).astype(np.int32), _model(tables[c]))
    if classes.size:
        enc.push(classes.astype(np.int32), _model(class_table))
    return head + enc.to_bytes()


def encode(levels: np.ndarray, counts: np.ndarray) -> bytes | None:
    """The smallest "ans-rowclass" payload over a few class counts, or None if it cannot apply."""
    levels = np.asarray(levels, dtype=np.int64)
    nonempty = counts > 0
    if levels.size == 0 or int(nonempty.sum()) < 2:
        return None
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    mag = np.abs(levels).astype(np.float64)
    sums = np.add.reduceat(mag, np.minimum(starts, levels.size - 1)) if levels.size else np.zeros(counts.size)
    means = np.where(nonempty, sums / np.maximum(counts, 1), 0.0)
    best = None
    for k in CLASS_CHOICES:
        edges = np.quantile(means[nonempty], np.linspace(0, 1, k + 1)[1:-1])
        classes = np.searchsorted(edges, means, side="right").astype(np.int64)
        for max_count in (None, 255):
            blob = _encode_with(levels, counts, classes, k, max_count)
            if best is None or len(blob) < len(best):
                best = blob
    return best


def decode(payload: memoryview, count: int, counts: np.ndarray | None, ctx: DecodeContext, what: str) -> np.ndarray:
    """`counts`: survivors per row (`row_counts`); None when the tensor has no survivors at all."""
    if counts is None and count:
        raise CorruptFileError(f"{what}: row classes need a tensor of at least two rows")
    if counts is not None and int(counts.sum()) != count:
        raise CorruptFileError(f"{what}: rows hold {int(counts.sum())} levels, {count} expected")
    reader = Reader(payload, what)
    k = reader.uvarint()
    if not 2 <= k <= MAX_CLASSES:
        raise CorruptFileError(f"{what}: {k} row classes (2..{MAX_CLASSES} allowed)")
    try:
        class_table = CountTable.read(reader, k)
    except LimitExceededError:  # more classes than declared is damage, not a resource limit
        raise CorruptFileError(f"{what}: the class table has more than {k} symbols") from None
    if class_table.lo != 0 or class_table.alphabet > k:
        raise CorruptFileError(f"{what}: the class table must cover classes within 0..{k - 1}")
    tables = [CountTable.read(reader, ctx.limits.max_alphabet) for _ in range(k)]
    dec = StreamDecoder(reader.take(reader.remaining), what, ctx.ans_final_state)
    if not count:  # no survivors: no row has a class, the stream holds no symbols
        dec.finish()
        return np.zeros(0, dtype=np.int32)
    nonempty = counts > 0
    n_rows = int(nonempty.sum())
    if class_table.alphabet > 1:
        classes = np.empty(n_rows, dtype=np.int64)
        dec.decode_into(classes, _model(class_table), 0, class_table.counts == 0)
    else:
        classes = np.zeros(n_rows, dtype=np.int64)
    idx, per_class = _grouping(classes, counts[nonempty], k)
    grouped = np.empty(count, dtype=np.int32)
    pos = 0
    for c in range(k):
        n = int(per_class[c])
        t = tables[c]
        if n and t.alphabet > 1:
            dec.decode_into(grouped[pos : pos + n], _model(t), t.lo, t.counts == 0)
        else:
            grouped[pos : pos + n] = t.lo
        pos += n
    dec.finish()
    out = np.empty(count, dtype=np.int32)
    out[idx] = grouped
    return out
