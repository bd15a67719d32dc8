"""Header dictionary 1 (spec/FORMAT.md §4.6, format 2.3): a JSON header compressed against a fixed
dictionary. Round trips keep the header text and the sections byte for byte; damaged or ill-formed
frames and encodings are typed errors; the dictionary is the spec's file."""

from __future__ import annotations

import hashlib
import zlib
from pathlib import Path

import numpy as np
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from nncodec.container import header_dict
from nncodec.container.format import HEADER_DICT, HEADER_ZSTD, MAJOR, PREAMBLE_SIZE, Preamble
from nncodec.container.reader import Container
from nncodec.container.writer import assemble
from nncodec.errors import CorruptFileError, LimitExceededError, UnsupportedVersionError
from nncodec.limits import Limits

ROOT = Path(__file__).resolve().parent.parent
MEMBER = {"s": 0, "kind": "labels", "code": "prequential", "n": 100, "alphabet": 10, "sha256": "ab" * 32,
          "model": {"arch": "uniform", "classes": 10}, "seed": 0,
          "env": {"torch": "2.13.0+cpu", "constriction": "0.5.0", "numpy": "2.4.6", "platform": "Linux-x86_64",
                  "threads": "1"}}


def _file(member: dict = MEMBER, payload: bytes = b"\x01\x02\x03\x04" * 5) -> bytes:
    return assemble({"tensors": {}, "dataset": member}, [payload], kinds={0: "dataset"})


def _text(data: bytes) -> bytes:
    with Container(data) as c:
        stored = bytes(data[PREAMBLE_SIZE:PREAMBLE_SIZE + c.preamble.header_length])
        return c._header_text(stored) if c.preamble.header_encoding & HEADER_ZSTD else stored


def test_the_dictionary_is_the_spec_s() -> None:
    spec = (ROOT / "spec" / "header-dict-1.txt").read_bytes()
    assert spec == header_dict.DICT_1 and len(spec) == 1028
    assert hashlib.sha256(spec).hexdigest() == header_dict.DICT_1_SHA256
    assert header_dict.DICT_1_SHA256 in (ROOT / "spec" / "FORMAT.md").read_text(encoding="utf-8")


def test_a_dataset_header_shrinks_and_reads_back_the_same() -> None:
    plain = _file()
    packed = header_dict.recompress(plain)
    assert len(packed) < len(plain)
    with Container(packed) as c, Container(plain) as p:
        assert (c.preamble.minor, c.preamble.header_encoding) == (3, HEADER_DICT | HEADER_ZSTD)
        assert c.header == p.header and bytes(c.read_section(0)) == bytes(p.read_section(0))
    assert _text(packed) == _text(plain)
    assert header_dict.recompress(packed) == packed  # already dictionary-compressed: unchanged


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=12).filter(lambda k: not k.startswith("x-")),
                       st.one_of(st.integers(0, 2**53 - 1), st.text(max_size=40)), max_size=6),
       st.binary(max_size=64))
def test_recompress_keeps_every_header_and_section_byte(meta: dict, payload: bytes) -> None:
    plain = assemble({"tensors": {}, "meta": {k: str(v) for k, v in meta.items()}}, [payload])
    out = header_dict.recompress(plain)
    assert _text(out) == _text(plain)
    with Container(out) as c:
        assert bytes(c.read_section(0)) == payload
        assert c.preamble.header_encoding in (0, 1, 5)


def _with_stored(data: bytes, stored: bytes, encoding: int = HEADER_DICT | HEADER_ZSTD) -> bytes:
    with Container(data) as c:
        rest = data[PREAMBLE_SIZE + c.preamble.header_length:]
    size = PREAMBLE_SIZE + len(stored) + len(rest)
    return Preamble(MAJOR, 3, encoding, len(stored), size, zlib.crc32(stored)).pack() + stored + rest


def test_damaged_or_foreign_frames_are_corrupt_file_errors() -> None:
    plain = _file()
    text = _text(plain)
    no_dict = zstandard.ZstdCompressor(level=19, write_content_size=True).compress(text)
    cases = [
        b"\x00" * 30,  # not a frame
        header_dict.compress(text)[:-3],  # truncated
        zstandard.ZstdCompressor(level=3, write_content_size=False).compress(text),  # no declared size
    ]
    for stored in cases:
        with pytest.raises(CorruptFileError):
            Container(_with_stored(plain, stored))
    # a frame that does not refer to the dictionary decodes to the same text: it is a valid encoding-5 frame
    with Container(_with_stored(plain, no_dict)) as c:
        assert c.header["dataset"] == MEMBER
    # a dictionary frame read without the dictionary (encoding 1) does not decode
    with pytest.raises(CorruptFileError):
        Container(_with_stored(plain, header_dict.compress(text), encoding=HEADER_ZSTD))


@pytest.mark.parametrize("encoding", [4, 6])
def test_the_dictionary_bit_without_a_frame_is_refused(encoding: int) -> None:
    plain = _file()
    with pytest.raises(UnsupportedVersionError):
        Container(_with_stored(plain, _text(plain), encoding=encoding))


def test_declared_size_is_bounded_before_decompressing() -> None:
    big = {**MEMBER, "model": {"arch": "uniform", "classes": 10}, "x-note": "a" * 5000}
    packed = header_dict.recompress(_file(big), Limits(max_header_expansion=1000))
    with Container(packed, limits=Limits(max_header_expansion=1000)) as c:
        assert c.preamble.header_encoding == HEADER_DICT | HEADER_ZSTD
    with pytest.raises(LimitExceededError):
        Container(packed)  # the default expansion limit, 16x: checked before decompressing
    with pytest.raises(LimitExceededError):
        Container(packed, limits=Limits(max_header_expansion=1000, max_header_bytes=1000))
    assert header_dict.recompress(_file(big)) == _file(big)  # the writer never makes what the reader refuses


def test_a_reader_without_the_addition_refuses_it_clearly(monkeypatch) -> None:
    """A 2.2 reader's list of encodings: 5 is 'unknown header encoding 5' [UnsupportedVersionError]."""
    from nncodec.container import reader

    monkeypatch.setattr(reader, "HEADER_ENCODINGS", (0, 1, 2, 3))
    with pytest.raises(UnsupportedVersionError, match="unknown header encoding 5"):
        Container(header_dict.recompress(_file()))


def test_recompress_leaves_files_it_cannot_improve_alone() -> None:
    tiny = assemble({}, [])
    assert header_dict.recompress(tiny) == tiny
    aligned = assemble({"tensors": {}}, [np.arange(4, dtype=np.uint8).tobytes()], align=64)
    assert header_dict.recompress(aligned) == aligned
