"""An independent reader of the preamble, the header and the section table, written from
spec/FORMAT.md §2–§5 and §4.6 alone (struct, zlib, json and zstandard; nothing from nncodec's
container), for files whose header is compressed against header dictionary 1 (`header_encoding` 5).
It must agree with nncodec's reader on every dataset vector, on fresh output of the writer, and
nncodec's reader must take a dictionary frame that another zstd writer produced. This holds the
§4.6 text, `spec/header-dict-1.txt` and the code to each other."""

from __future__ import annotations

import hashlib
import json
import re
import struct
import zlib
from pathlib import Path

import pytest
import zstandard

from nncodec.container import header_dict
from nncodec.container.reader import Container

ROOT = Path(__file__).resolve().parent.parent
VECTORS = sorted((ROOT / "spec" / "vectors" / "dataset").glob("*.nnc"))
MAGIC = b"\x89NNC\r\n\x1a\n"


def spec_dictionary() -> bytes:
    """The dictionary file, checked against the size and sha256 that §4.6 states."""
    text = (ROOT / "spec" / "FORMAT.md").read_text()
    section = text[text.index("### 4.6"):text.index("## 5.")]
    size = int(re.search(r"It is the ([\d,]+) ASCII bytes", section).group(1).replace(",", ""))
    digest = re.search(r"sha256 `([0-9a-f]{64})`", section).group(1)
    data = (ROOT / "spec" / "header-dict-1.txt").read_bytes()
    assert len(data) == size and hashlib.sha256(data).hexdigest() == digest
    return data


def align_up(x: int, a: int) -> int:
    return -(-x // a) * a


def read_independently(data: bytes, dictionary: bytes) -> tuple[dict, list[bytes]]:
    """(header object, section bytes) of a file with header encoding 1 or 5, by §3, §4.1, §4.6, §5."""
    magic, major, _minor, encoding, reserved, h_len, f_len, h_crc, p_crc = struct.unpack("<8sHHB3sQQII", data[:40])
    assert magic == MAGIC and major == 2 and reserved == b"\0\0\0"
    assert p_crc == zlib.crc32(data[:36]) and f_len == len(data) and h_crc == zlib.crc32(data[40:40 + h_len])
    assert encoding in (1, 5)
    frame = data[40:40 + h_len]
    declared = zstandard.frame_content_size(frame)
    assert declared >= 0, "the frame must declare its content size"
    if encoding == 5:
        d = zstandard.ZstdCompressionDict(dictionary, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
        text = zstandard.ZstdDecompressor(dict_data=d).decompress(frame)
    else:
        text = zstandard.ZstdDecompressor().decompress(frame)
    assert len(text) == declared
    header = json.loads(text)
    a = header.get("align", 1)
    offset, sections = align_up(40 + h_len, a), []
    for entry in header.get("sections", []):
        length, crc = entry[0], entry[1]
        body = data[offset:offset + length]
        assert len(body) == length and zlib.crc32(body) == crc
        sections.append(body)
        end = offset + length
        offset = align_up(end, a)
    assert (end if sections else 40 + h_len) == len(data), "the last section ends the file"
    return header, sections


def read_with_nncodec(data: bytes) -> tuple[dict, list[bytes]]:
    with Container(data) as c:
        return c.header, [bytes(c.read_section(i)) for i in range(len(c.sections))]


def test_the_dictionary_file_is_the_one_the_spec_names_and_the_code_uses() -> None:
    assert spec_dictionary() == header_dict.DICT_1


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: p.name)
def test_independent_reader_agrees_on_every_dataset_vector(path: Path) -> None:
    data = path.read_bytes()
    if data[12] not in (1, 5):
        pytest.fail(f"{path.name}: dataset vectors are written with header encoding 1 or 5, not {data[12]}")
    assert read_independently(data, spec_dictionary()) == read_with_nncodec(data)


def test_dictionary_vectors_exist() -> None:
    """The parametrised test above checks encoding 5 on real vectors only if some use it."""
    assert sum(p.read_bytes()[12] == 5 for p in VECTORS) >= 3


def test_fresh_writer_output_reads_the_same_independently() -> None:
    """`recompress` (the writer's path) of a JSON-header file: the same header object and sections."""
    for path in VECTORS:
        data = path.read_bytes()
        header, sections = read_with_nncodec(data)
        plain = _file_with_header(json.dumps(header, separators=(",", ":")).encode(), sections, encoding=0)
        wrapped = header_dict.recompress(plain)
        assert wrapped[12] == 5 and len(wrapped) < len(plain)
        assert read_independently(wrapped, spec_dictionary()) == (header, sections)


def test_nncodec_reads_a_dictionary_frame_written_by_another_zstd_writer() -> None:
    """A frame at another level, with a content checksum and without nncodec's writer: still §4.6."""
    d = zstandard.ZstdCompressionDict(spec_dictionary(), dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    cctx = zstandard.ZstdCompressor(level=3, dict_data=d, write_content_size=True, write_checksum=True)
    for path in VECTORS:
        header, sections = read_with_nncodec(path.read_bytes())
        text = json.dumps(header, separators=(",", ":")).encode()
        data = _file_with_header(cctx.compress(text), sections, encoding=5)
        assert read_with_nncodec(data) == (header, sections)


def _file_with_header(stored: bytes, sections: list[bytes], *, encoding: int) -> bytes:
    """A file by §2–§3 around `stored` header bytes, sections unpadded (align 1), minor 3."""
    body = b"".join(sections)
    length = 40 + len(stored) + len(body)
    head = struct.pack("<8sHHB3sQQI", MAGIC, 2, 3, encoding, b"\0\0\0", len(stored), length, zlib.crc32(stored))
    return head + struct.pack("<I", zlib.crc32(head)) + stored + body
