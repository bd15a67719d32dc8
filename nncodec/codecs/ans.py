"""ANS coding of integer symbols under categorical models rebuilt from stored integer counts.

The model is plain data: a contiguous alphabet [lo, lo + len(counts)) and a count per symbol.
Both sides build it the same way (counts / sum in float64, constriction's `Categorical` with
`perfect=False`), so only the counts need storing. Any failure inside constriction is converted
to CorruptFileError, and a stream must be consumed exactly: leftover words mean a bad payload.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import constriction
import numpy as np

from ..errors import CorruptFileError, LimitExceededError
from .binary import Reader, encode_uvarints, write_uvarint, zigzag

_MAX_TOTAL = 2**53  # counts summing to at most this are exact in float64, whatever the summation order


@contextmanager
def constriction_errors(what: str) -> Iterator[None]:
    """Turn constriction's ValueErrors and pyo3 PanicExceptions (a BaseException) into ours."""
    try:
        yield
    except (KeyboardInterrupt, SystemExit, MemoryError):
        raise
    except BaseException as exc:  # noqa: BLE001 - PanicException derives from BaseException
        if isinstance(exc, (LimitExceededError, CorruptFileError)):
            raise
        raise CorruptFileError(f"{what}: entropy decoder rejected the payload ({type(exc).__name__}: {exc})") from None


@dataclass(frozen=True)
class CountTable:
    """A categorical model over the symbols lo .. lo + len(counts) - 1."""

    lo: int
    counts: np.ndarray  # uint64, at least one non-zero

    @property
    def alphabet(self) -> int:
        return int(self.counts.size)

    def to_bytes(self) -> bytes:
        return write_uvarint(zigzag(self.lo)) + write_uvarint(self.alphabet) + encode_uvarints(self.counts)

    @staticmethod
    def read(reader: Reader, max_alphabet: int) -> CountTable:
        lo = reader.svarint()
        alphabet = reader.uvarint()
        if alphabet < 1:
            raise CorruptFileError(f"{reader.what}: empty alphabet")
        if alphabet > max_alphabet:
            raise LimitExceededError(f"{reader.what}: alphabet of {alphabet} symbols is over the limit of {max_alphabet}")
        if not (lo >= -(2**31) and lo + alphabet - 1 < 2**31):
            raise CorruptFileError(f"{reader.what}: alphabet [{lo}, {lo + alphabet}) does not fit in int32")
        counts = reader.uvarints(alphabet)
        total = int((counts >> np.uint64(32)).sum()) * 2**32 + int((counts & np.uint64(0xFFFFFFFF)).sum())
        if total == 0 or total > _MAX_TOTAL:
            raise CorruptFileError(f"{reader.what}: count table is all zero or its counts sum to over 2**53")
        return CountTable(lo, counts)

    def probabilities(self) -> np.ndarray:
        c = self.counts.astype(np.float64)
        return c / c.sum()


def histogram(symbols: np.ndarray) -> CountTable:
    """The exact empirical counts of `symbols` over their contiguous range."""
    lo = int(symbols.min())
    return CountTable(lo, np.bincount((symbols - lo).astype(np.int64)).astype(np.uint64))


def coarsened(table: CountTable, max_count: int) -> CountTable:
    """Counts scaled so the largest is `max_count`, keeping every used symbol non-zero.

    Cheaper to store; the encoder keeps it only when the exact total size is smaller.
    """
    c = table.counts.astype(np.float64)
    scaled = np.round(c * (max_count / c.max())).astype(np.uint64)
    scaled[(table.counts > 0) & (scaled == 0)] = 1
    return CountTable(table.lo, scaled)


def encode(symbols: np.ndarray, table: CountTable) -> bytes:
    """ANS words (little-endian uint32) for `symbols`, all of which must have a non-zero count."""
    if table.alphabet == 1 or symbols.size == 0:
        return b""
    return _encode_indices((symbols.astype(np.int64) - table.lo).astype(np.int32), table)


def _encode_indices(sym: np.ndarray, table: CountTable) -> bytes:
    """`encode` for symbols already shifted to int32 indices into the table (symbols - lo)."""
    if table.alphabet == 1 or sym.size == 0:
        return b""
    with constriction_errors("ANS encoder"):
        model = constriction.stream.model.Categorical(table.probabilities(), perfect=False)
        coder = constriction.stream.stack.AnsCoder()
        coder.encode_reverse(sym, model)
        words = coder.get_compressed()
    return words.astype("<u4").tobytes()


def decode(payload: bytes | memoryview, table: CountTable, count: int, what: str) -> np.ndarray:
    """Decode exactly `count` symbols; the payload must be consumed exactly, symbols must be counted."""
    if table.alphabet == 1 or count == 0:
        if len(payload):
            raise CorruptFileError(f"{what}: {len(payload)} bytes where no entropy payload belongs")
        return np.full(count, table.lo, dtype=np.int64)
    words = Reader(payload, what).words_le(len(payload))
    if words.size and words[-1] == 0:
        raise CorruptFileError(f"{what}: ANS payload ends in a zero word")
    # a symbol costs at least 2**-24 of a bit... but at most 24 bits; bound the work before decoding
    with constriction_errors(what):
        model = constriction.stream.model.Categorical(table.probabilities(), perfect=False)
        coder = constriction.stream.stack.AnsCoder(words)
        sym = coder.decode(model, count)
        if not coder.is_empty():
            raise CorruptFileError(f"{what}: ANS payload has data left after {count} symbols")
    unused = table.counts == 0
    if unused.any() and unused[sym].any():  # the lookup only when the table has unused symbols
        raise CorruptFileError(f"{what}: decoded a symbol whose count is zero")
    return np.add(sym, table.lo, dtype=np.int64)


def encode_with_table(symbols: np.ndarray, coarsen: tuple[int, ...] = (255, 4095)) -> bytes:
    """Count table + ANS words, trying exact and coarsened counts and keeping the smallest."""
    exact = histogram(symbols) if symbols.size else CountTable(0, np.ones(1, dtype=np.uint64))
    best: bytes | None = None
    candidates = [exact] + [coarsened(exact, m) for m in coarsen if int(exact.counts.max()) > m]
    sym = (symbols.astype(np.int64) - exact.lo).astype(np.int32)  # shared: coarsening keeps lo
    for table in candidates:
        blob = table.to_bytes() + _encode_indices(sym, table)
        if best is None or len(blob) < len(best):
            best = blob
    assert best is not None
    return best


def decode_with_table(payload: bytes | memoryview, count: int, what: str, max_alphabet: int) -> np.ndarray:
    reader = Reader(payload, what)
    table = CountTable.read(reader, max_alphabet)
    return decode(reader.take(reader.remaining), table, count, what)
