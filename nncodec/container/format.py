"""Constants and the fixed 40-byte preamble of the .nnc container (spec/FORMAT.md §2)."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

MAGIC = b"\x89NNC\r\n\x1a\n"
MAJOR = 2  # written; spec/FORMAT.md §12
MINOR = 0
READABLE_MAJORS = (1, 2)  # 1.x files are read with format 1's ANS end rule (§12)
PREAMBLE = struct.Struct("<8sHHB3sQQII")
PREAMBLE_SIZE = PREAMBLE.size  # 40
HEADER_JSON = 0
HEADER_ZSTD = 1
HEADER_INDEXED = 2  # binary section table and names, one JSON text per entry (§4.5); 3 = zstd frame of it
HEADER_DICT = 4  # with bit 0: the zstd frame is compressed against header dictionary 1 (§4.6, format 2.3)
HEADER_ENCODINGS = (0, 1, 2, 3, 5, 7)  # bit 0: a zstd frame; bit 1: indexed; bit 2: dictionary 1 (needs bit 0)
MINOR_HEADER_DICT = 3  # the minor version of a file whose header uses dictionary 1
MAX_ALIGN = 1 << 16
OPTIONAL_PREFIX = "x-"  # header keys and section kinds with this prefix may be skipped by readers


@dataclass(frozen=True)
class Preamble:
    major: int
    minor: int
    header_encoding: int
    header_length: int
    file_length: int
    header_crc: int
    reserved: bytes = b"\0\0\0"

    def pack(self) -> bytes:
        head = PREAMBLE.pack(MAGIC, self.major, self.minor, self.header_encoding, self.reserved,
                             self.header_length, self.file_length, self.header_crc, 0)[:36]
        return head + struct.pack("<I", zlib.crc32(head))


def align_up(offset: int, align: int) -> int:
    return -(-offset // align) * align


def is_optional(name: str) -> bool:
    return name.startswith(OPTIONAL_PREFIX)
