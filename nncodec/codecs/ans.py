"""ANS coding of integer symbols under categorical models rebuilt from stored integer counts.

The model is plain data: a contiguous alphabet [lo, lo + len(counts)) and a count per symbol.
Both sides build it the same way (counts / sum in float64, constriction's `Categorical` with
`perfect=False`), so only the counts need storing. Any failure inside constriction is converted
to CorruptFileError, and a stream must be consumed exactly: leftover words mean a bad payload, and
(format 2) the decoder must end in the known state the encoder started from, so missing words are
caught too. Every codec builds its streams with StreamEncoder / StreamDecoder, never constriction's
coder directly, so each gets that proof and chunked decoding.
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
# Format 2 (spec §8.6): every stream starts (encoder) and must end (decoder) in this state. >= 2**24, so
# an exhausted decoder, whose state only falls once words run out, cannot sit in it; < 2**32, so it is
# one word: measured cost 1.2 bytes per stream on average, at most 4.
FINAL_STATE = 0x1B873593
LEGACY_FINAL_STATE = 0  # format 1: streams started empty and had to end empty
CHUNK = 1 << 20  # symbols per constriction call: bounds its own allocations (4 bytes per symbol)


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


def categorical(probabilities: np.ndarray):
    """constriction's fixed-point categorical model of spec §8.5 (always `perfect=False`)."""
    return constriction.stream.model.Categorical(probabilities, perfect=False)


_CATEGORICAL_FAMILY = constriction.stream.model.Categorical(perfect=False)  # probabilities given per symbol


class StreamEncoder:
    """One ANS stream (spec §8.6) built by pushing symbol runs in reverse decoding order.

    Format 2 starts the coder in the state FINAL_STATE (one word) instead of 0, so the decoder must
    end in exactly that state with every word consumed: a stream with words dropped or added cannot
    end there (except by a 2**-28-ish accident), where format 1 silently yielded the first symbol.
    """

    def __init__(self) -> None:
        self._coder = constriction.stream.stack.AnsCoder(np.array([FINAL_STATE], dtype=np.uint32))

    def push(self, indices: np.ndarray, model) -> None:
        """Push `indices` (int32 model indices, in decoding order) so the decoder pops them first."""
        if indices.size:
            with constriction_errors("ANS encoder"):
                self._coder.encode_reverse(np.ascontiguousarray(indices, dtype=np.int32), model)

    def to_bytes(self) -> bytes:
        with constriction_errors("ANS encoder"):
            return self._coder.get_compressed().astype("<u4").tobytes()


class StreamDecoder:
    """The decoder of one ANS stream: symbols in chunks into numpy arrays, then the end check.

    Symbols are decoded CHUNK at a time into arrays that numpy allocates first (a numpy
    MemoryError can be caught; constriction aborts the process when its own allocation fails).
    `final_state` is FINAL_STATE for format 2 and LEGACY_FINAL_STATE (0) for format 1 files.
    """

    def __init__(self, payload: bytes | memoryview, what: str, final_state: int = FINAL_STATE) -> None:
        self.what = what
        self.final_state = final_state
        words = Reader(payload, what).words_le(len(payload))
        if words.size and words[-1] == 0:
            raise CorruptFileError(f"{what}: ANS payload ends in a zero word")
        with constriction_errors(what):
            self._coder = constriction.stream.stack.AnsCoder(words)

    def decode_into(self, out: np.ndarray, model, offset: int = 0, unused: np.ndarray | None = None) -> None:
        """Fill `out` (1-D, any integer or bool dtype) with model indices + `offset`, chunk by chunk.
        `unused` (per model index) marks symbols whose stored count is zero: decoding one is damage.
        Callers check that index + offset fits `out`'s dtype."""
        n = out.shape[0]
        check = unused is not None and bool(unused.any())
        with constriction_errors(self.what):
            for start in range(0, n, CHUNK):
                stop = min(n, start + CHUNK)
                chunk = self._coder.decode(model, stop - start)
                if check and unused[chunk].any():
                    raise CorruptFileError(f"{self.what}: decoded a symbol whose count is zero")
                if offset:
                    chunk += np.int32(offset)
                out[start:stop] = chunk

    def decode_per_symbol(self, probabilities: np.ndarray) -> np.ndarray:
        """One symbol per row of `probabilities` (float64, one distribution per symbol), each under
        the same fixed-point model `categorical(row)` would build (constriction's model family).
        Callers keep the rows to at most CHUNK per call."""
        with constriction_errors(self.what):
            return self._coder.decode(_CATEGORICAL_FAMILY, np.ascontiguousarray(probabilities, dtype=np.float64))

    def decode(self, model, count: int, dtype=np.int32) -> np.ndarray:
        out = np.empty(count, dtype=dtype)
        self.decode_into(out, model)
        return out

    def finish(self) -> None:
        """The stream must now be exactly its final state: every word read, nothing missing."""
        with constriction_errors(self.what):
            if self.final_state == LEGACY_FINAL_STATE:
                ok = self._coder.is_empty()
            else:
                ok = self._coder.num_words() == 1 and int(self._coder.get_compressed()[0]) == self.final_state
        if not ok:
            raise CorruptFileError(f"{self.what}: ANS stream does not end in its final state "
                                   "(words missing, added or damaged)")


def encode(symbols: np.ndarray, table: CountTable) -> bytes:
    """ANS words (little-endian uint32) for `symbols`, all of which must have a non-zero count."""
    if table.alphabet == 1 or symbols.size == 0:
        return b""
    return _encode_indices((symbols.astype(np.int64) - table.lo).astype(np.int32), table)


def _encode_indices(sym: np.ndarray, table: CountTable) -> bytes:
    """`encode` for symbols already shifted to int32 indices into the table (symbols - lo)."""
    if table.alphabet == 1 or sym.size == 0:
        return b""
    enc = StreamEncoder()
    enc.push(sym, categorical(table.probabilities()))
    return enc.to_bytes()


def decode(payload: bytes | memoryview, table: CountTable, count: int, what: str,
           final_state: int = FINAL_STATE, dtype=np.int32) -> np.ndarray:
    """Exactly `count` symbols as `dtype` (int32 by default); the payload must be consumed exactly,
    symbols must be counted. A one-symbol alphabet needs no words: a constant (read-only, zero-stride)
    array is returned, so a few bytes declaring many constant symbols allocate nothing."""
    lo, hi = table.lo, table.lo + table.alphabet - 1
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    if info is not None and (lo < info.min or hi > info.max):
        raise CorruptFileError(f"{what}: symbols [{lo}, {hi}] do not fit {np.dtype(dtype).name}")
    if info is None and (lo < 0 or hi > 1):
        raise CorruptFileError(f"{what}: symbols [{lo}, {hi}] are not booleans")
    if table.alphabet == 1 or count == 0:
        if len(payload):
            raise CorruptFileError(f"{what}: {len(payload)} bytes where no entropy payload belongs")
        return np.broadcast_to(np.array(table.lo, dtype=dtype), (count,))
    dec = StreamDecoder(payload, what, final_state)
    out = np.empty(count, dtype=dtype)
    dec.decode_into(out, categorical(table.probabilities()), lo, table.counts == 0)
    dec.finish()
    return out


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


def decode_with_table(payload: bytes | memoryview, count: int, what: str, max_alphabet: int,
                      final_state: int = FINAL_STATE, dtype=np.int32) -> np.ndarray:
    reader = Reader(payload, what)
    table = CountTable.read(reader, max_alphabet)
    return decode(reader.take(reader.remaining), table, count, what, final_state, dtype)
