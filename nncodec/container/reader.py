"""Reading the .nnc container: preamble, header and sections, with every field checked first.

Only the preamble and header are read when a file is opened; a section is read (and its CRC
checked) when asked for, so one tensor of a large file decodes without touching the rest.
"""

from __future__ import annotations

import io
import os
import threading
import zlib
from dataclasses import dataclass
from typing import BinaryIO

from ..errors import CorruptFileError, FormatError, LimitExceededError, UnsupportedVersionError
from ..limits import DEFAULT_LIMITS, Limits
from . import polyglot, strict_json
from .format import (
    HEADER_JSON,
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
    if zlib.crc32(head[:36]) != crc and not _FUZZING_SKIP_CHECKSUMS:
        raise CorruptFileError("preamble checksum mismatch: the first 40 bytes are damaged")
    if major not in READABLE_MAJORS:
        raise UnsupportedVersionError(f"file format version {major}.{minor} needs a newer nncodec (this one reads "
                                      f"{', '.join(f'{m}.x' for m in READABLE_MAJORS)}); upgrade nncodec to read it")
    if reserved != b"\0\0\0":
        raise FormatError("reserved preamble bytes are not zero")
    if encoding not in (HEADER_JSON, HEADER_ZSTD):
        raise UnsupportedVersionError(f"unknown header encoding {encoding}")
    if file_length != file_size:
        if file_size < file_length:
            raise CorruptFileError(f"file is truncated: {file_size} bytes of the {file_length} it declares")
        raise CorruptFileError(f"file has {file_size - file_length} bytes after its declared end")
    if header_length > file_length - PREAMBLE_SIZE:
        raise CorruptFileError(f"header length {header_length} runs past the end of the file")
    return Preamble(major, minor, encoding, header_length, file_length, header_crc, reserved)


class Container:
    """An open .nnc container. Use as a context manager, or call close()."""

    def __init__(self, source: str | os.PathLike | bytes | bytearray | memoryview | BinaryIO,
                 limits: Limits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self._lock = threading.Lock()
        self._owned = False
        if isinstance(source, (bytes, bytearray, memoryview)):
            self._file: BinaryIO = io.BytesIO(bytes(source))
            self._owned = True
        elif isinstance(source, (str, os.PathLike)):
            try:
                self._file = open(source, "rb")  # noqa: SIM115 - closed in close()
            except IsADirectoryError:
                raise FormatError(f"{os.fspath(source)} is a directory, not an .nnc file") from None
            self._owned = True
        else:
            self._file = source
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def _read_at(self, offset: int, length: int) -> bytes:
        with self._lock:
            self._file.seek(offset)
            data = self._file.read(length)
        if len(data) != length:
            raise CorruptFileError(f"file ended while reading {length} bytes at offset {offset}")
        return data

    def _open(self) -> None:
        self._file.seek(0, os.SEEK_END)
        self.file_size = self._file.tell()
        head = self._read_at(0, min(PREAMBLE_SIZE, self.file_size))
        self.preamble = parse_preamble(head, self.file_size)
        limits = self.limits
        if self.preamble.header_length > limits.max_header_bytes:
            raise LimitExceededError(f"header of {self.preamble.header_length} bytes is over the limit of {limits.max_header_bytes}")
        stored = self._read_at(PREAMBLE_SIZE, self.preamble.header_length)
        if zlib.crc32(stored) != self.preamble.header_crc and not _FUZZING_SKIP_CHECKSUMS:
            raise CorruptFileError("header checksum mismatch: the header is damaged")
        text = stored
        if self.preamble.header_encoding == HEADER_ZSTD:
            import zstandard

            from ..codecs import zstd as zstd_codec

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
            text = zstd_codec.decompress(stored, declared, "header")  # bounded by `declared`
        header = strict_json.loads(text, limits.max_json_depth)
        if not isinstance(header, dict):
            raise FormatError("header must be a JSON object")
        self.header = header
        self.header_bytes = self.preamble.header_length
        self._parse_sections(header)
        self._refuse_polyglot()

    def _refuse_polyglot(self) -> None:
        head = self._read_at(0, min(polyglot.PDF_HEAD, self.file_size))
        tail_start = max(0, self.file_size - polyglot.ZIP_TAIL)
        other = polyglot.other_format(head, self._read_at(tail_start, self.file_size - tail_start), self.file_size)
        if other:
            raise FormatError(f"file is also a valid {other} (a polyglot file); refused")

    def _parse_sections(self, header: dict) -> None:
        limits = self.limits
        align = header_int(header.get("align", 1), "align", 1, MAX_ALIGN)
        if align & (align - 1):
            raise FormatError(f"align must be a power of two, got {align}")
        entries = header.get("sections", [])
        if not isinstance(entries, list):
            raise FormatError("sections must be a list")
        if len(entries) > limits.max_sections:
            raise LimitExceededError(f"{len(entries)} sections is over the limit of {limits.max_sections}")
        limits.check_entries("sections", len(entries), self.file_size)
        header_end = PREAMBLE_SIZE + self.preamble.header_length
        offset = align_up(header_end, align)
        sections: list[Section] = []
        padding: list[tuple[int, int]] = []
        if offset > header_end:
            padding.append((header_end, offset - header_end))
        for i, entry in enumerate(entries):
            if not isinstance(entry, list) or len(entry) not in (2, 3):
                raise FormatError(f"section {i} must be [length, crc32] or [length, crc32, kind]")
            length = header_int(entry[0], f"section {i} length")
            crc = header_int(entry[1], f"section {i} crc32", 0, 2**32 - 1)
            kind = entry[2] if len(entry) == 3 else "data"
            if not isinstance(kind, str):
                raise FormatError(f"section {i} kind must be a string")
            if kind not in SECTION_KINDS and not is_optional(kind):
                raise UnsupportedVersionError(f"section {i} has the unknown critical kind {kind!r}")
            if offset + length > self.file_size:
                raise CorruptFileError(f"section {i} ({length} bytes at offset {offset}) runs past the end of the file")
            sections.append(Section(i, offset, length, crc, kind))
            end = offset + length
            offset = align_up(end, align) if i + 1 < len(entries) else end
            if offset > end:
                padding.append((end, offset - end))
        if not entries:
            offset = header_end
            padding.clear()
        if offset != self.file_size:
            raise CorruptFileError(f"sections end at byte {offset} but the file has {self.file_size} bytes: unindexed bytes")
        for start, length in padding:
            if any(self._read_at(start, length)):
                raise FormatError(f"padding at offset {start} is not zero")
        self.align = align
        self.sections = sections
        self.padding = padding

    def read_section(self, index: int) -> bytes:
        """The bytes of section `index`, after its CRC has been checked."""
        s = self.sections[index]
        data = self._read_at(s.offset, s.length)
        if zlib.crc32(data) != s.crc and not _FUZZING_SKIP_CHECKSUMS:
            raise CorruptFileError(f"section {index} checksum mismatch: the file is damaged")
        return data

    def read_range(self, offset: int, length: int) -> bytes:
        """`length` bytes at file `offset`, unchecked: for a chunk of a chunked tensor (§23), whose own
        CRC the caller checks (tensorfile.decode_elements)."""
        return self._read_at(offset, length)

    def close(self) -> None:
        if self._owned and not self._file.closed:
            self._file.close()

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
