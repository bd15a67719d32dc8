"""The `pairs` stream method (spec/FORMAT.md §9.1, format 2.2): a 1-byte symbol stream's 15 most
frequent symbols as 4-bit codes, two codes per byte, that byte stream as one zstd frame, and the
other symbols ("escapes", code 15) stored as they are after it.

Why: zstd codes literals with Huffman, which spends a whole number of bits per symbol; on float
exponents (2.5-3.5 bits of entropy, a few dominant values) that rounding costs ~1.3 % over the
entropy. Huffman over pairs of symbols halves the rounding loss per symbol while keeping zstd's
decode speed (GB/s): measured on the real-weight checkpoints of §16.8, the exponent streams shrink by
~1 % (LeNet-300-100 fp32 -857 B, rapidocr fp32 -10.6 kB), which is what puts the default mode below
ZipNN's size on every test checkpoint. The entropy coder is still zstd's; this module only maps symbols.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import CorruptFileError
from . import planes_jit, zstd
from .binary import Reader, write_uvarint

METHOD = "pairs"
ESCAPE = 15  # the code of a symbol outside the table; its value follows the frame
MAX_TABLE = 15
PACKED_WINDOW_LOG = 15  # 32 KiB zstd blocks of packed codes: 64 Ki symbols per Huffman table, as plain streams have

_HI = np.arange(256) >> 4  # the first code of a packed byte
_LO = np.arange(256) & 15  # the second

def encode(stream: np.ndarray, counts: np.ndarray | None = None) -> bytes | None:
    """The pairs payload of a uint8 stream, or None when it uses fewer than two symbols (a constant
    stream is zstd's best case already). `counts`: a histogram to pick the table from (e.g. a sample's,
    which the encoder has already: any table decodes, the table only decides which symbols escape);
    by default the stream's own."""
    if counts is None:
        counts = np.bincount(stream, minlength=256)
    used = int(np.count_nonzero(counts))
    if used < 2:
        return None
    table = np.argsort(-counts, kind="stable")[: min(MAX_TABLE, used)].astype(np.uint8)
    code = np.full(256, ESCAPE, dtype=np.uint8)
    code[table] = np.arange(table.size, dtype=np.uint8)
    stream = np.ascontiguousarray(stream)
    loops = planes_jit.kernels(stream.size)
    if loops is not None:  # one compiled pass: the same packed bytes and escapes
        packed, escapes = np.empty((stream.size + 1) // 2, dtype=np.uint8), np.empty(stream.size, dtype=np.uint8)
        escapes = escapes[: loops["pairs"](stream, code, packed, escapes)]
    else:
        # two symbols (one little-endian uint16: s0 | s1 << 8) -> their packed byte, in one lookup
        by_pair = ((code[np.newaxis, :] << 4) | code[:, np.newaxis]).reshape(65536)
        even = stream.size - stream.size % 2
        packed = np.take(by_pair, stream[:even].view("<u2"))
        if stream.size % 2:
            packed = np.append(packed, code[stream[-1]] << np.uint8(4))  # the unused second code is 0
        escapes = stream[_escape_positions(packed)]
    frame = zstd.compress_fast(packed.tobytes(), PACKED_WINDOW_LOG)
    return b"".join((bytes([table.size]), table.tobytes(), write_uvarint(len(frame)), frame, escapes.tobytes()))


def decode(payload: bytes | memoryview, count: int, what: str,
           scratch: Callable[[int], np.ndarray | None] | None = None) -> np.ndarray:
    """`count` uint8 symbols from a pairs payload; every rule of §9.1 is checked before the symbols are
    returned (the frame's size is implied by `count`, so nothing is allocated from the payload's say-so).
    `scratch(count)`: a reused uint8 array (or None) the compiled loop may write the symbols into."""
    r = Reader(payload, what)
    k = r.take(1)[0]
    if not 1 <= k <= MAX_TABLE:
        raise CorruptFileError(f"{what}: pairs table of {k} symbols (1 to {MAX_TABLE} allowed)")
    table = np.frombuffer(r.take(k), dtype=np.uint8)
    if len(set(table.tobytes())) != k:  # (not np.unique: its first call imports numpy.ma, ~10 ms of a first load)
        raise CorruptFileError(f"{what}: pairs table lists a symbol twice")
    frame = r.take(r.uvarint())
    packed = np.frombuffer(zstd.decompress(frame, (count + 1) // 2, what), dtype=np.uint8)
    escapes = r.take(r.remaining)
    if count % 2 and packed[-1] & 15:
        raise CorruptFileError(f"{what}: the unused last pairs code is not 0")
    loops = planes_jit.kernels(count)
    if loops is not None:  # one compiled pass; a bad code or escape count falls through to the checks below
        out = scratch(count) if scratch is not None else None
        out = np.empty(count, dtype=np.uint8) if out is None else out
        esc = np.frombuffer(escapes, dtype=np.uint8)
        if loops["unpairs"](packed, table, k, esc, out) == esc.size:
            return out
    if k < MAX_TABLE:  # codes k .. 14 stand for nothing (with a full table every code means something)
        bad = ((k <= _HI) & (_HI < ESCAPE)) | ((k <= _LO) & (_LO < ESCAPE))
        if np.take(bad, packed).any():
            raise CorruptFileError(f"{what}: pairs code outside the table of {k} symbols")
    where = _escape_positions(packed)
    if where.size != len(escapes):
        raise CorruptFileError(f"{what}: {len(escapes)} escape bytes where the codes call for {where.size}")
    symbols = np.zeros(16, dtype=np.uint8)
    symbols[:k] = table
    # packed byte -> its two symbols as one uint16 (np.take on 2-byte items: ~12x faster than indexing a
    # (256, 2) table)
    both = np.stack([symbols[_HI], symbols[_LO]], axis=1).view(np.uint16).reshape(256)
    out = np.take(both, packed).view(np.uint8)[:count]
    if where.size:
        out[where] = np.frombuffer(escapes, dtype=np.uint8)
    return out


_HAS_ESCAPE = (_HI == ESCAPE) | (_LO == ESCAPE)  # packed bytes holding one


def _escape_positions(packed: np.ndarray) -> np.ndarray:
    """The symbol positions whose code is the escape, in order (a padding code is 0, never an escape): one
    lookup pass finds the few bytes holding one, the rest looks at those bytes only."""
    where = np.flatnonzero(np.take(_HAS_ESCAPE, packed))
    if not where.size:
        return where
    held = packed[where]
    first, second = 2 * where[held >= ESCAPE << 4], 2 * where[(held & np.uint8(15)) == ESCAPE] + 1
    return np.sort(np.concatenate([first, second])) if second.size else first
