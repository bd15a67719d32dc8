"""Range coding of symbol batches under per-symbol probability tables (constriction's queue coder).

A queue coder decodes in the order it encoded, so a model can predict symbol t from symbols < t on
both sides. The probability tables are float64 (explicit dtype) and constriction's `Categorical`
is built with `perfect=False` (both choices change the bitstream; they are fixed here, in one
place). The decoder proves the stream was consumed exactly: it re-encodes every decoded batch
with the same tables into a shadow encoder and, at the end, requires the shadow words to equal
the stored words, and the number of symbols to equal the count stored in the header. A stream
with extra, missing or altered words therefore never decodes silently.
"""

from __future__ import annotations

import numpy as np

from ..codecs.ans import constriction_errors
from ..errors import CorruptFileError

PROB_DTYPE = np.float64  # the probability dtype handed to constriction (part of the format)
PERFECT = False  # constriction Categorical(perfect=...) (part of the format)


def _family():
    import constriction

    return constriction.stream.model.Categorical(perfect=PERFECT)


def _tables(probs: np.ndarray, batch: int) -> np.ndarray:
    p = np.ascontiguousarray(probs, dtype=PROB_DTYPE)
    if p.ndim != 2 or p.shape[0] != batch or p.shape[1] < 1:
        raise ValueError(f"need a [{batch}, alphabet] probability table, got {p.shape}")
    return p


class StreamEncoder:
    """Encodes batches of symbols; `finish()` gives the little-endian u32 words."""

    def __init__(self) -> None:
        import constriction

        self._enc = constriction.stream.queue.RangeEncoder()
        self._family = _family()
        self.count = 0

    def encode(self, symbols: np.ndarray, probs: np.ndarray) -> None:
        s = np.ascontiguousarray(symbols, dtype=np.int32).reshape(-1)
        if s.size == 0:
            return
        p = _tables(probs, s.size)
        if s.min() < 0 or s.max() >= p.shape[1]:
            raise ValueError("a symbol outside its alphabet cannot be coded")
        self._enc.encode(s, self._family, p)
        self.count += int(s.size)

    def bits(self) -> int:
        return int(self._enc.num_bits())

    def finish(self) -> bytes:
        return self._enc.get_compressed().astype("<u4").tobytes()


class StreamDecoder:
    """Decodes batches of symbols from `payload` and checks, in `finish`, that it ended exactly
    where the encoder ended after exactly `expected_count` symbols."""

    def __init__(self, payload: bytes | memoryview, expected_count: int, what: str = "dataset") -> None:
        import constriction

        if len(payload) % 4:
            raise CorruptFileError(f"{what}: coded stream of {len(payload)} bytes is not whole 32-bit words")
        self._words = np.frombuffer(bytes(payload), dtype="<u4").astype(np.uint32)
        self.what = what
        with constriction_errors(what):
            self._dec = constriction.stream.queue.RangeDecoder(self._words)
        self._shadow = constriction.stream.queue.RangeEncoder()
        self._family = _family()
        self.expected = expected_count
        self.count = 0

    def decode(self, probs: np.ndarray) -> np.ndarray:
        p = np.ascontiguousarray(probs, dtype=PROB_DTYPE)
        batch = p.shape[0]
        if batch == 0:
            return np.zeros(0, dtype=np.int64)
        if self.count + batch > self.expected:
            raise CorruptFileError(f"{self.what}: more symbols requested than the {self.expected} stored")
        with constriction_errors(self.what):
            s = np.asarray(self._dec.decode(self._family, p), dtype=np.int32)
            self._shadow.encode(s, self._family, p)
        self.count += batch
        return s.astype(np.int64)

    def finish(self) -> None:
        if self.count != self.expected:
            raise CorruptFileError(f"{self.what}: decoded {self.count} symbols, the header says {self.expected}")
        if not np.array_equal(self._shadow.get_compressed(), self._words):
            raise CorruptFileError(f"{self.what}: the coded stream does not end where its {self.expected} symbols end "
                                   "(extra, missing or damaged words)")
