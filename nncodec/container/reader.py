"""Reading the .nnc container: preamble, header and sections, with every field checked first.

Only the preamble and header are read when a file is opened; a section is read (and its CRC
checked) when asked for, so one tensor of a large file decodes without touching the rest. Files
named by path are memory-mapped, so reading a section is a view, not a copy.
"""

from __future__ import annotations

import itertools
import mmap
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from ..checksum import crc32
from ..errors import CorruptFileError, FormatError, LimitExceededError, UnsupportedVersionError
from ..limits import DEFAULT_LIMITS, Limits
from . import index, polyglot, strict_json
from .format import (
    HEADER_DICT,
    HEADER_ENCODINGS,
    HEADER_INDEXED,
    HEADER_ZSTD,
    MAGIC,
    MAX_ALIGN,
    PREAMBLE,
    PREAMBLE_SIZE,
    READABLE_MAJORS,
    Preamble,
    align_up,
    is_optional,
)
from .sniff import describe_foreign

CONTAINER_KEYS = ("sections", "align")
_GATHER_BYTES = 1 << 22  # padding checked in one numpy gather up to this many bytes (its index array: 8x)
SECTION_KINDS = ("data", "dataset")  # critical kinds this reader knows (§5; "dataset": §21)


@dataclass(frozen=True)
class Section:
    index: int
    offset: int
    length: int
    crc: int
    kind: str  # "data", "dataset" or an optional "x-..." kind


def header_int(value: object, what: str, lo: int = 0, hi: int = 2**53 - 1) -> int:
    # (header numbers are JSON integers <= 2**53 - 1, exact in every JSON implementation)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise FormatError(f"{what} must be an integer in [{lo}, {hi}], got {value!r}")
    return value


# Fuzzing only (as libpng's fuzzers do): lets mutated inputs reach the parsers behind the checksums.
# Never set this in production code; the checksums are the only defence against silent garbage.
_FUZZING_SKIP_CHECKSUMS = False


def parse_preamble(head: bytes, file_size: int) -> Preamble:
    if len(head) < 8 or head[:8] != MAGIC:
        if len(head) < 8 and MAGIC.startswith(head):
            raise CorruptFileError(f"file is {file_size} bytes, shorter than the {PREAMBLE_SIZE}-byte preamble")
        looks = describe_foreign(head)
        raise FormatError(f"not an .nnc file: this looks like {looks}" if looks else
                          "not an .nnc file: it does not start with the .nnc signature (\\x89NNC\\r\\n\\x1a\\n)")
    if len(head) < PREAMBLE_SIZE:
        raise CorruptFileError(f"file is {file_size} bytes, shorter than the {PREAMBLE_SIZE}-byte preamble (truncated)")
    magic, major, minor, encoding, reserved, header_length, file_length, header_crc, crc = PREAMBLE.unpack(head[:PREAMBLE_SIZE])
    if crc32(head[:36]) != crc and not _FUZZING_SKIP_CHECKSUMS:
        raise CorruptFileError("preamble checksum mismatch: the first 40 bytes are damaged")
    if major not in READABLE_MAJORS:
        raise UnsupportedVersionError(f"file format version {major}.{minor} needs a newer nncodec (this one reads "
                                      f"{', '.join(f'{m}.x' for m in READABLE_MAJORS)}); upgrade nncodec to read it")
    if reserved != b"\0\0\0":
        raise FormatError("reserved preamble bytes are not zero")
    if encoding not in HEADER_ENCODINGS:
        raise UnsupportedVersionError(f"unknown header encoding {encoding}")
    if file_length != file_size:
        if file_size < file_length:
            raise CorruptFileError(f"file is truncated: {file_size} bytes of the {file_length} it declares")
        raise CorruptFileError(f"file has {file_size - file_length} bytes after its declared end")
    if header_length > file_length - PREAMBLE_SIZE:
        raise CorruptFileError(f"header length {header_length} runs past the end of the file")
    return Preamble(major, minor, encoding, header_length, file_length, header_crc, reserved)


class SectionTable:
    """The section table as arrays (lengths, CRCs, implied offsets): a file of a million sections
    costs a few numpy views to open, and a `Section` is made only when one is asked for."""

    def __init__(self, lengths: np.ndarray, crcs: np.ndarray, kinds: dict[int, str], start: int, align: int,
                 file_size: int) -> None:
        n = len(lengths)
        if n and int(lengths.max()) > file_size:
            i = int(np.argmax(lengths > file_size))
            raise CorruptFileError(f"section {i} ({int(lengths[i])} bytes) runs past the end of the file")
        for i, kind in kinds.items():
            if kind not in SECTION_KINDS and not is_optional(kind):
                raise UnsupportedVersionError(f"section {i} has the unknown critical kind {kind!r}")
        steps = lengths.astype(np.uint64)
        if align > 1:  # each length <= file_size < 2**63: no overflow in the rounding
            steps = (steps + np.uint64(align - 1)) & ~np.uint64(align - 1)
        if n and n * (file_size + align) >= 2**63:  # the sum below could wrap: add as Python ints
            offsets = np.array([start + x for x in itertools.accumulate([0] + steps.tolist()[:-1])], dtype=object)
        else:
            offsets = np.empty(n, dtype=np.uint64)
            if n:
                offsets[0] = 0
                np.cumsum(steps[:-1], out=offsets[1:])
                offsets += np.uint64(start)
        ends = offsets + lengths.astype(offsets.dtype) if n else offsets
        if n and int(ends.max()) > file_size:
            i = int(np.argmax(ends > file_size))
            raise CorruptFileError(f"section {i} ({int(lengths[i])} bytes at offset {int(offsets[i])}) runs past the end of the file")
        end = int(ends[-1]) if n else None
        if end is not None and end != file_size:
            raise CorruptFileError(f"sections end at byte {end} but the file has {file_size} bytes: unindexed bytes")
        self.lengths, self.crcs, self.kinds, self.offsets, self.ends = lengths, crcs, kinds, offsets, ends
        self.start = start

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i: int) -> Section:
        if not 0 <= i < len(self.lengths):
            raise IndexError(f"no section {i}")
        return Section(i, int(self.offsets[i]), int(self.lengths[i]), int(self.crcs[i]), self.kinds.get(i, "data"))

    def __iter__(self) -> Iterator[Section]:
        return (self[i] for i in range(len(self)))

    def gaps(self, header_end: int) -> tuple[np.ndarray, np.ndarray]:
        """(start, length) of every padding gap: after the header and between sections."""
        if not len(self):
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        starts = np.concatenate([[header_end], self.ends[:-1].astype(np.int64)]).astype(np.int64)
        lengths = self.offsets.astype(np.int64) - starts
        keep = lengths > 0
        return starts[keep], lengths[keep]


class Container:
    """An open .nnc container. Use as a context manager, or call close().

    A file named by path is memory-mapped read-only (decoded tensors never alias the mapping: every
    decode path writes a new array); bytes are used in place; other file objects are read with
    seek/read.
    As with safetensors, a file truncated in place by another process while it is open makes reads
    of the lost pages fail with SIGBUS; nncodec's writers replace files by rename, never in place."""

    def __init__(self, source: str | os.PathLike | bytes | bytearray | memoryview | BinaryIO,
                 limits: Limits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self._lock = threading.Lock()
        self._owned = False
        self._map: mmap.mmap | None = None
        self._buf: memoryview | None = None
        self._file: BinaryIO | None = None
        if isinstance(source, (bytes, bytearray, memoryview)):
            self._buf = memoryview(source if isinstance(source, bytes) else bytes(source))
        elif isinstance(source, (str, os.PathLike)):
            try:
                self._file = open(source, "rb")  # noqa: SIM115 - closed in close()
            except IsADirectoryError:
                raise FormatError(f"{os.fspath(source)} is a directory, not an .nnc file") from None
            self._owned = True
            try:
                size = os.fstat(self._file.fileno()).st_size
                if size:
                    self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
                    self._buf = memoryview(self._map)
            except (OSError, ValueError):  # not mappable (a pipe, a special file): read it instead
                self._map = None
        else:
            self._file = source
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def _read_at(self, offset: int, length: int) -> bytes | memoryview:
        if self._buf is not None:
            data = self._buf[offset:offset + length]
        else:
            with self._lock:
                self._file.seek(offset)
                data = self._file.read(length)
        if len(data) != length:
            raise CorruptFileError(f"file ended while reading {length} bytes at offset {offset}")
        return data

    def _open(self) -> None:
        if self._buf is not None:
            self.file_size = len(self._buf)
        else:
            self._file.seek(0, os.SEEK_END)
            self.file_size = self._file.tell()
        head = bytes(self._read_at(0, min(PREAMBLE_SIZE, self.file_size)))
        self.preamble = parse_preamble(head, self.file_size)
        limits = self.limits
        if self.preamble.header_length > limits.max_header_bytes:
            raise LimitExceededError(f"header of {self.preamble.header_length} bytes is over the limit of {limits.max_header_bytes}")
        stored = self._read_at(PREAMBLE_SIZE, self.preamble.header_length)
        if crc32(stored) != self.preamble.header_crc and not _FUZZING_SKIP_CHECKSUMS:
            raise CorruptFileError("header checksum mismatch: the header is damaged")
        self.header_bytes = self.preamble.header_length
        self.index: index.Index | None = None
        header_end = PREAMBLE_SIZE + self.preamble.header_length
        encoding = self.preamble.header_encoding
        text = self._header_text(bytes(stored)) if encoding & HEADER_ZSTD else stored
        if encoding & HEADER_INDEXED:
            self.index = index.parse(memoryview(text), self.file_size, limits)
            header = self.index.top
            lengths, crcs, kinds = self.index.lengths, self.index.crcs, self.index.kinds
        else:
            header = strict_json.loads(bytes(text), limits.max_json_depth)
            if not isinstance(header, dict):
                raise FormatError("header must be a JSON object")
            lengths, crcs, kinds = _section_list(header.get("sections", []), limits, self.file_size)
        self.header = header
        self.align = header_int(header.get("align", 1), "align", 1, MAX_ALIGN)
        if self.align & (self.align - 1):
            raise FormatError(f"align must be a power of two, got {self.align}")
        start = align_up(header_end, self.align) if len(lengths) else header_end
        if not len(lengths) and header_end != self.file_size:
            raise CorruptFileError(f"sections end at byte {header_end} but the file has {self.file_size} bytes: unindexed bytes")
        self.sections = SectionTable(lengths, crcs, kinds, start, self.align, self.file_size)
        self._check_padding(header_end)
        self._refuse_polyglot()

    def _header_text(self, stored: bytes) -> bytes:
        """The content of a zstd-framed header (§4.1), its declared size checked before decompressing."""
        import zstandard

        from ..codecs import zstd as zstd_codec

        limits = self.limits
        try:
            declared = zstandard.get_frame_parameters(stored).content_size
        except zstandard.ZstdError as exc:
            raise CorruptFileError(f"compressed header is not a zstd frame ({exc})") from None
        if declared == zstandard.CONTENTSIZE_UNKNOWN:
            raise CorruptFileError("compressed header does not declare its size")
        if declared > limits.max_header_bytes:
            raise LimitExceededError(f"header of {declared} bytes is over the limit of {limits.max_header_bytes}")
        if declared > len(stored) * limits.max_header_expansion:
            raise LimitExceededError(
                f"compressed header of {len(stored)} bytes declares {declared} bytes, more than "
                f"{limits.max_header_expansion}x its size (max_header_expansion)")
        if self.preamble.header_encoding & HEADER_DICT:  # §4.6: against header dictionary 1
            from . import header_dict

            return header_dict.decompress(stored, declared)  # bounded by `declared`
        return zstd_codec.decompress(stored, declared, "header")  # bounded by `declared`

    @property
    def padding(self) -> list[tuple[int, int]]:
        """(offset, length) of every padding gap."""
        starts, lengths = self.sections.gaps(PREAMBLE_SIZE + self.header_bytes)
        return list(zip(starts.tolist(), lengths.tolist(), strict=True))

    def _check_padding(self, header_end: int) -> None:
        starts, lengths = self.sections.gaps(header_end)
        self.padding_bytes = int(lengths.sum())
        if self._buf is not None and 0 < self.padding_bytes <= _GATHER_BYTES:  # one vectorised gather
            first = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
            where = first + np.arange(self.padding_bytes)
            whole = np.frombuffer(self._buf, dtype=np.uint8)
            bad = np.flatnonzero(whole[where])
            if bad.size:
                raise FormatError(f"padding at offset {int(where[bad[0]])} is not zero")
            return
        for start, length in zip(starts.tolist(), lengths.tolist(), strict=True):
            if bytes(self._read_at(start, length)) != bytes(length):
                raise FormatError(f"padding at offset {start} is not zero")

    def _refuse_polyglot(self) -> None:
        head = bytes(self._read_at(0, min(polyglot.PDF_HEAD, self.file_size)))
        tail_start = max(0, self.file_size - polyglot.ZIP_TAIL)
        other = polyglot.other_format(head, bytes(self._read_at(tail_start, self.file_size - tail_start)), self.file_size)
        if other:
            raise FormatError(f"file is also a valid {other} (a polyglot file); refused")

    def section_view(self, index: int) -> memoryview:
        """The bytes of section `index` without a copy (a view into the mapped file where there is
        one), after its CRC has been checked."""
        table = self.sections  # (no Section object: this runs once per tensor)
        if not 0 <= index < len(table.lengths):
            raise IndexError(f"no section {index}")
        data = memoryview(self._read_at(int(table.offsets[index]), int(table.lengths[index])))
        if crc32(data) != int(table.crcs[index]) and not _FUZZING_SKIP_CHECKSUMS:
            raise CorruptFileError(f"section {index} checksum mismatch: the file is damaged")
        return data

    def read_section(self, index: int) -> bytes:
        """The bytes of section `index` (a copy), after its CRC has been checked."""
        return bytes(self.section_view(index))

    def read_range(self, offset: int, length: int) -> bytes:
        """`length` bytes at file `offset`, unchecked: for a chunk of a chunked tensor (§23), whose own
        CRC the caller checks (tensorfile.decode_elements)."""
        return self._read_at(offset, length)

    def read_range_into(self, offset: int, length: int, scratch: np.ndarray) -> bytes | memoryview:
        """`length` bytes at file offset `offset`, unchecked (as read_range), copied with one pread into the
        start of the uint8 array `scratch` (at least `length` long) when the file is mapped, instead of a view of
        the mapping. Measured end to end (the 47 MB lazy read, one decode thread, load 0.4, indicative): 48 -> 29 ms
        of CPU. Where the mapping's extra cost went was not isolated: a CRC alone over a fresh mapping costs about
        what pread + CRC cost; the decoders then read a buffer that is hot in cache. An in-memory source is sliced
        as it is."""
        if self._map is None or self._file is None or not hasattr(os, "preadv"):
            return self.read_range(offset, length)
        view = memoryview(scratch)[:length]
        done = 0
        while done < length:
            got = os.preadv(self._file.fileno(), [view[done:]], offset + done)
            if got <= 0:
                raise CorruptFileError(f"file ended while reading {length} bytes at offset {offset}")
            done += got
        return view

    def release(self) -> None:
        """Drop the mapped pages read so far from this process (they stay in the page cache): a
        mapping's touched pages count as resident memory until released, so a reader that streams
        through a large file calls this after each tensor to keep its RSS at one tensor."""
        if self._map is not None and hasattr(mmap, "MADV_DONTNEED"):
            self._map.madvise(mmap.MADV_DONTNEED)

    def close(self) -> None:
        self._buf = None
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:  # arrays made from the mapping still use it: it closes with them
                pass
            self._map = None
        if self._owned and self._file is not None and not self._file.closed:
            self._file.close()

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _section_list(entries: object, limits: Limits, file_size: int) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """The `sections` member of a JSON header as arrays: each entry [length, crc32] or
    [length, crc32, kind], counts checked against the limits before the lists are walked."""
    if not isinstance(entries, list):
        raise FormatError("sections must be a list")
    if len(entries) > limits.max_sections:
        raise LimitExceededError(f"{len(entries)} sections is over the limit of {limits.max_sections}")
    limits.check_entries("sections", len(entries), file_size)
    lengths = np.empty(len(entries), dtype=np.uint64)
    crcs = np.empty(len(entries), dtype=np.uint32)
    kinds: dict[int, str] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, list) or len(entry) not in (2, 3):
            raise FormatError(f"section {i} must be [length, crc32] or [length, crc32, kind]")
        lengths[i] = header_int(entry[0], f"section {i} length")
        crcs[i] = header_int(entry[1], f"section {i} crc32", 0, 2**32 - 1)
        if len(entry) == 3:
            if not isinstance(entry[2], str):
                raise FormatError(f"section {i} kind must be a string")
            if entry[2] != "data":
                kinds[i] = entry[2]
    return lengths, crcs, kinds
