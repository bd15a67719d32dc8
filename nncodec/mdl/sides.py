"""The one code path both directions share: a driver asks a side for the symbols at some positions
given their probability tables; the encoding side codes the known symbols and returns them, the
decoding side decodes them into the buffer. Drivers never know which side they run on."""

from __future__ import annotations

import numpy as np

from .coder import StreamDecoder, StreamEncoder


class EncodeSide:
    def __init__(self, symbols: np.ndarray) -> None:
        self.symbols = np.asarray(symbols, dtype=np.int64)
        self.coder = StreamEncoder()

    def __call__(self, positions: np.ndarray, probs: np.ndarray) -> np.ndarray:
        s = self.symbols[positions]
        self.coder.encode(s, probs)
        return s

    def bits(self, positions: np.ndarray, shift: int, probs: np.ndarray) -> np.ndarray:
        """Bit `shift` of the symbols at `positions`, coded as binary symbols under [P(0), P(1)] rows."""
        y = (self.symbols[positions] >> shift) & 1
        self.coder.encode(y, probs)
        return y


class DecodeSide:
    def __init__(self, payload: bytes | memoryview, n: int, what: str = "dataset", coded: int | None = None) -> None:
        """n symbols to decode, from `coded` coded symbols (default n; a bitwise model codes 8 per byte)."""
        self.symbols = np.zeros(n, dtype=np.int64)
        self.coder = StreamDecoder(payload, n if coded is None else coded, what)

    def __call__(self, positions: np.ndarray, probs: np.ndarray) -> np.ndarray:
        s = self.coder.decode(probs)
        self.symbols[positions] = s
        return s

    def bits(self, positions: np.ndarray, shift: int, probs: np.ndarray) -> np.ndarray:
        """Decode one bit per position and set it as bit `shift` of the symbol there (which starts at 0)."""
        y = self.coder.decode(probs)
        self.symbols[positions] |= y << shift
        return y
