"""Chunked raw tensors (spec/FORMAT.md §23, format 2.1): a large tensor's words cut into runs of `n`
elements, each coded on its own by a raw codec (copy, zstd or planes), all in the tensor's one section.

Why: independent chunks encode and decode in parallel (parallel.py), and a reader that wants a row
range decodes only the chunks covering it, after checking only their CRCs (each chunk has its own).
Why one section and not one per chunk: the section rules (§5) stay as they are, and a format 2.0 reader
opens the file and refuses just these tensors ("unknown raw codec 'chunks'") instead of the whole file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .. import parallel
from ..checksum import crc32
from ..dtypes import DType
from ..errors import CorruptFileError, UnsupportedVersionError
from ..limits import Limits
from .base import DecodeContext, Encoded, EncodeOptions, Parts, expect_params, payload_crc32

CODEC = "chunks"
CHUNK_CODECS = ("copy", "zstd", "planes")  # what one chunk may use (no nesting)
WHAT = "raw/chunks"

EncodeWhole = Callable[[np.ndarray, DType, EncodeOptions], Encoded]
DecodeWhole = Callable[..., np.ndarray]


@dataclass(frozen=True)
class ChunkTable:
    """The validated chunk list of one tensor: chunk k holds elements [k*n, min((k+1)*n, numel)) and
    the section bytes [offsets[k], offsets[k+1])."""

    n: int
    numel: int
    offsets: tuple[int, ...]  # count + 1 entries; the last is the section length
    crcs: tuple[int, ...]
    codecs: tuple[str, ...]
    params: tuple[dict, ...]

    @property
    def count(self) -> int:
        return len(self.crcs)

    def elements(self, k: int) -> tuple[int, int]:
        return k * self.n, min((k + 1) * self.n, self.numel)

    def covering(self, start: int, stop: int) -> range:
        """The chunks holding elements [start, stop) (empty for an empty range)."""
        if stop <= start:
            return range(0)
        return range(start // self.n, (stop - 1) // self.n + 1)


def chunk_elements(numel: int, row: int, dt: DType, chunk_bytes: int) -> int:
    """Elements per chunk: about `chunk_bytes` of input, a whole number of rows (`row` elements each)
    whenever a row fits, so that a row range maps onto whole chunks."""
    target = max(1, chunk_bytes // dt.itemsize)
    if 0 < row <= target:
        target -= target % row
    return min(target, max(numel, 1))


def encode(words: np.ndarray, dt: DType, options: EncodeOptions, row: int, encode_whole: EncodeWhole) -> Encoded:
    """The chunked coding of flat `words`: every chunk by `encode_whole`, in parallel, in order; the payload is
    the chunks' pieces (Parts), joined only by a consumer that needs one buffer."""
    n = chunk_elements(words.size, row, dt, options.chunk_bytes)
    starts = range(0, words.size, n)

    def one(a: int) -> tuple[Encoded, int]:
        e = encode_whole(words[a : a + n], dt, options)
        return e, payload_crc32(e.payload)

    coded = parallel.map_ordered(one, starts, options.threads)
    table = [[len(e.payload), crc, e.codec] + ([e.params] if e.params else []) for e, crc in coded]
    return Encoded(CODEC, Parts(e.payload for e, _ in coded), {"n": n, "chunks": table},
                   slow=any(e.slow for e, _ in coded))


def parse(params: object, numel: int, section_length: int, limits: Limits) -> ChunkTable:
    """The chunk table of a `chunks` part, every rule of §23 checked before anything is allocated."""
    expect_params(params, {"n": int, "chunks": list}, WHAT)
    n, entries = params["n"], params["chunks"]
    if n < 1:
        raise CorruptFileError(f"{WHAT}: n must be at least 1, got {n}")
    want = -(-numel // n)
    limits.check(f"{WHAT}: chunks of one tensor", max(want, len(entries)), limits.max_chunks_per_tensor)
    if len(entries) != want:
        raise CorruptFileError(f"{WHAT}: {len(entries)} chunks where {numel} elements in chunks of {n} need {want}")
    offsets, crcs, codecs, plist = [0], [], [], []
    for k, entry in enumerate(entries):
        if not isinstance(entry, list) or len(entry) not in (3, 4):
            raise CorruptFileError(f"{WHAT}: chunk {k} must be [length, crc32, codec] or [length, crc32, codec, p]")
        length, crc, codec = entry[0], entry[1], entry[2]
        p = entry[3] if len(entry) == 4 else {}
        if type(length) is not int or length < 0 or type(crc) is not int or not 0 <= crc < 2**32:
            raise CorruptFileError(f"{WHAT}: chunk {k} needs a length >= 0 and a crc32 in [0, 2**32)")
        if not isinstance(codec, str) or not isinstance(p, dict):
            raise CorruptFileError(f"{WHAT}: chunk {k} codec must be a string and p an object")
        if codec not in CHUNK_CODECS:
            if codec == CODEC:
                raise CorruptFileError(f"{WHAT}: chunk {k} is itself chunked (chunks do not nest)")
            raise UnsupportedVersionError(f"{WHAT}: chunk {k} uses the unknown raw codec {codec!r} (written by a newer nncodec?)")
        end = offsets[-1] + length
        if end > section_length:
            raise CorruptFileError(f"{WHAT}: chunk {k} runs past the end of its {section_length}-byte section")
        offsets.append(end)
        crcs.append(crc)
        codecs.append(codec)
        plist.append(p)
    if offsets[-1] != section_length:
        raise CorruptFileError(f"{WHAT}: chunks hold {offsets[-1]} bytes of a {section_length}-byte section")
    return ChunkTable(n, numel, tuple(offsets), tuple(crcs), tuple(codecs), tuple(plist))


def decode_chunk(table: ChunkTable, k: int, data: bytes | memoryview, dt: DType, ctx: DecodeContext,
                 decode_whole: DecodeWhole, out: np.ndarray | None = None, verify_crc: bool = True) -> np.ndarray:
    """The words of chunk `k` from its bytes `data` (into `out` if given), its CRC checked first
    unless the caller has checked the whole section's."""
    if verify_crc and crc32(data) != table.crcs[k]:
        raise CorruptFileError(f"{WHAT}: chunk {k} checksum mismatch: the file is damaged")
    start, stop = table.elements(k)
    return decode_whole(table.codecs[k], table.params[k], memoryview(data), dt, stop - start, ctx, out=out)


def decode(table: ChunkTable, payload: memoryview, dt: DType, ctx: DecodeContext, decode_whole: DecodeWhole,
           out: np.ndarray | None = None) -> np.ndarray:
    """Every chunk of a section that was read whole (its CRC already checked), in parallel, into one array."""
    words = np.empty(table.numel, dtype=dt.storage) if out is None else out

    def one(k: int) -> None:
        a, b = table.elements(k)
        piece = payload[table.offsets[k] : table.offsets[k + 1]]
        decode_chunk(table, k, piece, dt, ctx, decode_whole, out=words[a:b], verify_crc=False)

    parallel.map_ordered(one, range(table.count), ctx.threads, shared=True)
    return words
