"""Malformed input: every defect raises the right NNCodecError subclass, and nothing else escapes.

Files are crafted with `rebuild` (the real writer, `assemble`), so checksums are right and only the
intended defect is present; `raw_file` writes a preamble + header by hand for defects the writer
cannot express (bad section tables, duplicate keys, wrong versions).
"""

from __future__ import annotations

import copy
import io
import json
import pickle
import struct
import zipfile
import zlib

import numpy as np
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nncodec
from nncodec import (
    CorruptFileError,
    FormatError,
    LimitExceededError,
    Limits,
    NNCodecError,
    UnsupportedVersionError,
)
from nncodec.codecs import ans, binary, levels, mask, raw, zstd
from nncodec.codecs.base import Encoded
from nncodec.container.format import HEADER_JSON, HEADER_ZSTD, MAGIC, MAJOR, PREAMBLE_SIZE, Preamble
from nncodec.container.reader import Container
from nncodec.container.writer import assemble
from nncodec.dtypes import DTYPES

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ----------------------------------------------------------------------------- crafting helpers


def consume(data: bytes, limits: Limits = nncodec.DEFAULT_LIMITS) -> dict:
    """Everything a reader can do with a file: open, info, verify, decode every tensor and component."""
    with nncodec.open(data, framework="np", limits=limits) as f:
        f.info()
        f.verify()
        out = {name: f.get_tensor(name) for name in f}
        for name in f:
            f.components(name)
        return out


def explode(data: bytes) -> tuple[dict, list[bytes], int, dict[int, str]]:
    """(header body without container keys, section payloads, align, optional kinds) of a valid file."""
    with Container(data) as c:
        body = {k: v for k, v in c.header.items() if k not in ("sections", "align")}
        return (copy.deepcopy(body), [c.read_section(s.index) for s in c.sections], c.align,
                {s.index: s.kind for s in c.sections if s.kind != "data"})


def rebuild(body: dict, sections: list[bytes], align: int = 1, kinds: dict[int, str] | None = None) -> bytes:
    """A file with correct checksums around exactly the header and sections given."""
    return assemble(body, sections, align=align, kinds=kinds)


def raw_file(header: bytes | dict, tail: bytes = b"", *, major: int = MAJOR, minor: int = 0, encoding: int = HEADER_JSON,
             reserved: bytes = b"\0\0\0", file_length: int | None = None, header_length: int | None = None) -> bytes:
    """Preamble (with a correct preamble CRC and header CRC) + header bytes + tail, written by hand."""
    text = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    length = PREAMBLE_SIZE + len(text) + len(tail) if file_length is None else file_length
    pre = Preamble(major, minor, encoding, len(text) if header_length is None else header_length, length,
                   zlib.crc32(text), reserved).pack()
    return pre + text + tail


def section_table(payloads: list[bytes]) -> list[list[int]]:
    return [[len(p), zlib.crc32(p)] for p in payloads]


class Builder:
    """Builds the header body and sections of a file part by part, forcing every codec path."""

    def __init__(self) -> None:
        self.sections: list[bytes] = []
        self.tensors: dict[str, dict] = {}
        self.expected: dict[str, np.ndarray] = {}

    def part(self, enc: Encoded) -> dict:
        self.sections.append(enc.payload)
        out = {"s": len(self.sections) - 1, "codec": enc.codec}
        if enc.params:
            out["p"] = enc.params
        return out

    def raw(self, name: str, words: np.ndarray, dt_name: str, enc: Encoded, shape=None) -> None:
        shape = list(words.shape if shape is None else shape)
        self.tensors[name] = {"dtype": dt_name, "shape": shape, "raw": self.part(enc)}
        self.expected[name] = words.reshape(shape)

    def body(self, meta: dict | None = None) -> dict:
        out = {"tensors": self.tensors}
        if meta:
            out["meta"] = meta
        return out


def planes(words: np.ndarray, dt_name: str, methods: list[str]) -> Encoded:
    dt = DTYPES[dt_name]
    split, streams = raw._split(words.reshape(-1), dt)
    parts = []
    for s, m in zip(streams, methods, strict=True):
        data = s.astype(s.dtype.newbyteorder("<")).tobytes()
        data = {"copy": data, "zstd": zstd.compress(data), "ans": ans.encode_with_table(s.astype(np.int64))}[m]
        parts.append((m, data))
    return Encoded("planes", b"".join(p for _, p in parts), {"split": split, "streams": [[m, len(p)] for m, p in parts]})


def zigzag_zstd(lv: np.ndarray, width: int = 4) -> Encoded:
    return Encoded("zstd", zstd.compress(levels._zigzag(lv).astype(levels._WIDTHS[width]).tobytes()), {"width": width})


def sample_parts() -> tuple[dict, list[bytes], Builder]:
    """A file that exercises every codec path: raw copy/zstd/planes (copy, zstd, ans streams), bool,
    scalar, 0-size, masks (ans, ans-rows, zstd), levels (ans, zstd), uniform, per-channel, codebook."""
    rng = np.random.default_rng(7)
    b = Builder()
    w = rng.normal(0, 0.05, size=(8, 16)).astype(np.float32).view(np.uint32)
    b.raw("w_planes", w, "float32", planes(w, "float32", ["ans", "zstd", "copy", "ans"]))
    h = rng.normal(size=20).astype(np.float16).view(np.uint16)
    b.raw("h_copy", h, "float16", Encoded("copy", h.tobytes()))
    d = np.arange(10, dtype=np.float64).view(np.uint64)
    b.raw("d_zstd", d, "float64", Encoded("zstd", zstd.compress(d.tobytes())))
    i = rng.integers(-300, 300, size=(3, 5)).astype(np.int32)
    b.raw("i_bytes", i, "int32", planes(i, "int32", ["ans", "zstd", "copy", "ans"]))
    bl = rng.integers(0, 2, size=9).astype(np.uint8)
    b.raw("bool", bl, "bool", Encoded("copy", bl.tobytes()))
    bf = np.array([0x3F80], dtype=np.uint16).reshape(())
    b.raw("bf_scalar", bf, "bfloat16", planes(bf, "bfloat16", ["copy", "copy"]))
    b.raw("empty", np.zeros((2, 0), dtype=np.uint64), "uint64", Encoded("copy", b""))
    # quantized: mask ans + levels ans + uniform scalar step
    m1 = rng.random((4, 6)) < 0.4
    lv1 = rng.integers(-3, 4, size=int(m1.sum()))
    b.tensors["q_ans"] = {"dtype": "float32", "shape": [4, 6], "q": {"mode": "uniform"},
                          "mask": b.part(Encoded("ans", ans.encode_with_table(m1.reshape(-1).astype(np.int64), coarsen=()))),
                          "levels": b.part(Encoded("ans", ans.encode_with_table(lv1))),
                          "quantizer": b.part(Encoded("f32", np.array([0.5], "<f4").tobytes()))}
    # mask ans-rows + levels zstd + per-channel steps on axis 1
    m2 = np.zeros((4, 6), dtype=bool)
    m2[1] = True
    m2[3, ::2] = True
    lv2 = rng.integers(-100, 100, size=int(m2.sum()))
    b.tensors["q_rows"] = {"dtype": "bfloat16", "shape": [4, 6], "q": {"mode": "uniform", "axis": 1},
                           "mask": b.part(Encoded("ans-rows", mask._encode_rows(m2.reshape(-1), 4))),
                           "levels": b.part(zigzag_zstd(lv2, 1)),
                           "quantizer": b.part(Encoded("f32", np.linspace(0.1, 0.6, 6).astype("<f4").tobytes()))}
    # mask zstd + codebook
    m3 = rng.random(10) < 0.5
    m3[0] = True
    lv3 = rng.integers(0, 3, size=int(m3.sum()))
    lv3[0] = 2  # uses the whole codebook
    b.tensors["q_code"] = {"dtype": "float16", "shape": [10], "q": {"mode": "codebook"},
                           "mask": b.part(Encoded("zstd", zstd.compress(np.packbits(m3, bitorder="little").tobytes()))),
                           "levels": b.part(zigzag_zstd(lv3, 2)),
                           "quantizer": b.part(Encoded("f32", np.array([-1, 0, 2.5], "<f4").tobytes()))}
    b.tensors["tied"] = {"alias": "w_planes"}
    return b.body({"arch": "test", "note": "ünïcode"}), b.sections, b


def sample_file(align: int = 1) -> bytes:
    body, sections, _ = sample_parts()
    return rebuild(body, sections, align)


def expect(exc: type[Exception], data: bytes, limits: Limits = nncodec.DEFAULT_LIMITS) -> Exception:
    """`consume(data)` raises exactly an `exc` (a subclass of it); anything else fails the test."""
    with pytest.raises(NNCodecError) as info:
        consume(data, limits)
    assert isinstance(info.value, exc), f"{type(info.value).__name__} ({info.value}) is not a {exc.__name__}"
    return info.value


def modified(edit, align: int = 1) -> bytes:
    """The sample file after `edit(body, sections)` changed its header body and/or section list."""
    body, sections, _ = sample_parts()
    edit(body, sections)
    return rebuild(body, sections, align)


# ------------------------------------------------------------------------------ the baseline


def test_helpers_build_valid_files():
    body, sections, b = sample_parts()
    data = rebuild(body, sections)
    out = consume(data)
    for name, words in b.expected.items():
        assert out[name].shape == words.shape and out[name].tobytes() == words.tobytes(), name
    assert out["tied"] is out["w_planes"]
    with nncodec.open(data) as f:
        codecs = {(c["kind"], c["codec"]) for t in f.info()["tensors"] for c in t["components"]}
    assert {("mask", "ans"), ("mask", "ans-rows"), ("mask", "zstd"), ("levels", "ans"), ("levels", "zstd"),
            ("raw", "planes"), ("raw", "copy"), ("raw", "zstd"), ("quantizer", "f32")} <= codecs
    assert rebuild(*explode(data)) == data
    assert raw_file(data[PREAMBLE_SIZE:PREAMBLE_SIZE + Container(data).preamble.header_length],
                    data[PREAMBLE_SIZE + Container(data).preamble.header_length:],
                    encoding=Container(data).preamble.header_encoding) == data
    for align in (8, 256):
        consume(sample_file(align))


# ---------------------------------------------------------------------------- truncation


def test_truncation_at_every_section_boundary_and_sampled_offsets():
    data = sample_file(align=16)
    with Container(data) as c:
        cuts = {0, 1, 7, 8, 20, 39, 40, 41, PREAMBLE_SIZE + c.preamble.header_length - 1,
                PREAMBLE_SIZE + c.preamble.header_length}
        for s in c.sections:
            cuts |= {s.offset, s.offset + 1, s.offset + s.length - 1, s.offset + s.length}
    cuts |= set(range(0, len(data), 37))
    for cut in sorted(x for x in cuts if 0 <= x < len(data)):
        expect(CorruptFileError, data[:cut])


# ------------------------------------------------------------------------------- bit flips


@pytest.mark.parametrize("align", [1, 32])
def test_one_flipped_bit_is_never_silent(align):
    """A flipped bit in every preamble byte, a sample of header bytes, and the first, a middle and
    the last byte of every section and padding run."""
    data = sample_file(align)
    with Container(data) as c:
        header_end = PREAMBLE_SIZE + c.preamble.header_length
        padding = [range(start, start + n) for start, n in c.padding]
        positions = set(range(PREAMBLE_SIZE)) | set(range(PREAMBLE_SIZE, header_end, 11)) | {header_end - 1}
        for s in list(c.sections) + [None]:
            span = range(s.offset, s.offset + s.length) if s else range(0)
            for r in [span] + padding:
                if len(r):
                    positions |= {r[0], r[len(r) // 2], r[-1]}
    for pos in sorted(positions):
        damaged = bytearray(data)
        damaged[pos] ^= 1 << (pos * 5 + 3) % 8
        if pos < len(MAGIC):
            expect(FormatError, bytes(damaged))  # and names what it looks like instead
        elif any(pos in r for r in padding):
            expect(FormatError, bytes(damaged))  # padding must be zero
        else:
            expect(CorruptFileError, bytes(damaged))


# ----------------------------------------------------------------------------- wrong files


def _safetensors_bytes() -> bytes:
    from safetensors.numpy import save

    return save({"a": np.zeros(3, dtype=np.float32)})


def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", b"x")
    return buf.getvalue()


@pytest.mark.parametrize("make, word", [
    (_safetensors_bytes, "safetensors"),
    (lambda: b"GGUF" + struct.pack("<I", 3) + bytes(64), "GGUF"),
    (_zip_bytes, "ZIP"),
    (lambda: pickle.dumps({"a": 1}, protocol=2), "pickle"),
    (lambda: pickle.dumps({"a": [1, 2, 3]}, protocol=4), "pickle"),
    (lambda: zstd.compress(b"hello" * 20), "zstd"),
    (lambda: b"hello, this is text and not a model at all", "not an .nnc file"),
    (lambda: sample_file().replace(b"\r\n", b"\n", 1), ".nnc"),  # text-mode line ending damage
])
def test_wrong_magic_names_what_it_looks_like(make, word):
    err = expect(FormatError, make())
    assert not isinstance(err, CorruptFileError) or word == ".nnc"
    assert word.lower() in str(err).lower()


def test_too_short_files():
    expect(CorruptFileError, b"")
    expect(CorruptFileError, MAGIC[:5])
    expect(CorruptFileError, MAGIC + b"\1\0")
    expect(FormatError, b"GGUF")


# ---------------------------------------------------------------------------------- preamble


def _split(data: bytes) -> tuple[bytes, bytes, int]:
    hl = Container(data).preamble.header_length
    return data[PREAMBLE_SIZE:PREAMBLE_SIZE + hl], data[PREAMBLE_SIZE + hl:], Container(data).preamble.header_encoding


def test_future_major_version_is_refused():
    header, tail, enc = _split(sample_file())
    err = expect(UnsupportedVersionError, raw_file(header, tail, major=3, encoding=enc))
    assert "3.0" in str(err)
    expect(UnsupportedVersionError, raw_file(header, tail, major=0, encoding=enc))


def test_future_minor_version_is_read():
    header, tail, enc = _split(sample_file())
    consume(raw_file(header, tail, minor=9, encoding=enc))


def test_preamble_field_defects():
    header, tail, enc = _split(sample_file())
    expect(UnsupportedVersionError, raw_file(header, tail, encoding=4))
    expect(FormatError, raw_file(header, tail, encoding=enc, reserved=b"\0\1\0"))
    size = PREAMBLE_SIZE + len(header) + len(tail)
    expect(CorruptFileError, raw_file(header, tail, encoding=enc, file_length=size + 1))
    expect(CorruptFileError, raw_file(header, tail, encoding=enc, file_length=size - 1))
    # header length beyond the file, and header length that cuts the header short
    expect(CorruptFileError, raw_file(header, tail, encoding=enc, header_length=size))
    expect(CorruptFileError, raw_file(header, tail, encoding=enc, header_length=2**64 - 1))
    expect(CorruptFileError, raw_file(header, tail, encoding=enc, header_length=len(header) - 1))


def test_header_length_over_limit():
    data = sample_file()
    expect(LimitExceededError, data, Limits(max_header_bytes=16))


def test_trailing_bytes():
    data = sample_file()
    expect(CorruptFileError, data + b"\0")
    expect(CorruptFileError, data + b"extra bytes")
    header, tail, enc = _split(data)
    # trailing bytes that the preamble does count: the sections no longer tile the file
    expect(CorruptFileError, raw_file(header, tail + b"\0" * 3, encoding=enc))


# ----------------------------------------------------------------------------- section table


def _with_table(edit) -> bytes:
    """The sample file with its section table edited by hand (JSON header, checksums right)."""
    data = sample_file()
    with Container(data) as c:
        header = copy.deepcopy(c.header)
        tail = data[c.sections[0].offset:]
    edit(header)
    return raw_file(header, tail)


def test_section_table_must_tile_the_file():
    def shorten(h):
        h["sections"][2][0] -= 1

    def lengthen(h):
        h["sections"][-1][0] += 1

    def drop_last(h):
        h["sections"].pop()

    def grow(h):
        h["sections"][0][0] += 2**40

    for edit in (shorten, lengthen, drop_last, grow):
        expect(CorruptFileError, _with_table(edit))


@pytest.mark.parametrize("entry", [
    [5], [5, 1, "data", 0], "5", {"length": 5}, [-1, 0], [True, 0], [5.0, 0], [5, 2**32], [5, -1],
    [5, 0, 7], [2**64, 0],
])
def test_malformed_section_entries(entry):
    def edit(h):
        h["sections"][0] = entry

    expect(FormatError, _with_table(edit))


@pytest.mark.parametrize("value", [3, 0, -8, 2**17, "8", 8.0, True, None])
def test_bad_align(value):
    def edit(h):
        h["align"] = value

    expect(FormatError, _with_table(edit))


def test_sections_not_a_list():
    def edit(h):
        h["sections"] = {"0": [1, 2]}

    expect(FormatError, _with_table(edit))


def test_nonzero_padding():
    data = bytearray(sample_file(align=64))
    start, n = Container(bytes(data)).padding[1]
    data[start + n - 1] = 1
    expect(FormatError, bytes(data))


def test_two_tensors_referencing_the_same_section():
    def same(body, sections):
        body["tensors"]["h_copy"]["raw"]["s"] = body["tensors"]["bool"]["raw"]["s"]
        sections.append(b"")  # keep the section count (the now-unused one is an orphan either way)

    expect(FormatError, modified(same))

    def within_one_tensor(body, sections):
        q = body["tensors"]["q_ans"]
        q["levels"]["s"] = q["mask"]["s"]

    expect(FormatError, modified(within_one_tensor))


def test_orphan_section():
    expect(FormatError, modified(lambda body, sections: sections.append(b"stray bytes")))
    expect(FormatError, modified(lambda body, sections: sections.append(b"")))


def test_section_index_out_of_range_or_not_an_int():
    for value in (len(sample_parts()[1]), -1, "0", 1.0, True, None, 2**80):
        def edit(body, sections, value=value):
            body["tensors"]["bool"]["raw"]["s"] = value

        expect(FormatError, modified(edit))


def test_optional_section_used_by_a_tensor():
    body, sections, _ = sample_parts()
    i = body["tensors"]["bool"]["raw"]["s"]
    expect(FormatError, rebuild(body, sections, 1, {i: "x-thumbnail"}))


# ----------------------------------------------------------------------------------- aliases


@pytest.mark.parametrize("target", ["missing", "tied", "chain", 5, None])
def test_bad_alias(target):
    def edit(body, sections):
        body["tensors"]["chain"] = {"alias": "tied"}
        body["tensors"]["tied"] = {"alias": target}

    expect(FormatError, modified(edit))


def test_alias_with_other_keys():
    def edit(body, sections):
        body["tensors"]["tied"]["dtype"] = "float32"

    expect(UnsupportedVersionError, modified(edit))


# -------------------------------------------------------------------------------------- JSON


def _header_text(data: bytes) -> tuple[bytes, bytes]:
    with Container(data) as c:
        text = json.dumps(c.header, separators=(",", ":")).encode()
        return text, data[c.sections[0].offset:]


def test_duplicate_json_keys():
    text, tail = _header_text(sample_file())
    dup_tensor = text.replace(b'"tensors":{', b'"tensors":{"bool":{"alias":"w_planes"},', 1)
    expect(FormatError, raw_file(dup_tensor, tail))
    dup_top = text[:-1] + b',"tensors":{}}'
    expect(FormatError, raw_file(dup_top, tail))


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_in_json(constant):
    text, tail = _header_text(sample_file())
    expect(FormatError, raw_file(text[:-1] + b',"x-v":' + constant + b"}", tail))


@pytest.mark.parametrize("text", [
    b"", b"[]", b"null", b"{", b'{"tensors":{}', b"\xff\xfe{}", b'{"a":"\xc3"}', b"{}{}",
    b'{"x-a":"\\ud800"}', b'{"meta":{"\\udc00":"v"}}', b'{"x-a":' + b"1" * 5000 + b"}",
])
def test_bad_header_json(text):
    expect(FormatError, raw_file(text))


def test_excessive_json_nesting():
    text, tail = _header_text(sample_file())
    deep = b"[" * 40 + b"]" * 40
    expect(LimitExceededError, raw_file(text[:-1] + b',"x-deep":' + deep + b"}", tail))
    deeper = b'{"a":' * 100000 + b"1" + b"}" * 100000  # no recursion blow-up either
    expect(LimitExceededError, raw_file(deeper))
    # brackets inside strings do not count
    consume(raw_file(text[:-1] + b',"x-s":"' + b"[" * 100 + b'"}', tail))


def test_compressed_header_defects():
    text, tail = _header_text(sample_file())
    good = zstd.compress(text)
    consume(raw_file(good, tail, encoding=HEADER_ZSTD))
    no_size = zstandard.ZstdCompressor(write_content_size=False).compress(text)
    for bad in (text, no_size, good + b"\0", good[:-3], zstd.compress(b"[1,2]")):
        expect(FormatError, raw_file(bad, tail, encoding=HEADER_ZSTD))
    bomb = zstd.compress(b" " * 2**20)
    expect(LimitExceededError, raw_file(bomb, encoding=HEADER_ZSTD), Limits(max_header_bytes=2**16))


# ----------------------------------------------------------------------- header semantics


def _set(path: list, value):
    def edit(body, sections):
        obj = body
        for key in path[:-1]:
            obj = obj[key]
        obj[path[-1]] = value

    return edit


@pytest.mark.parametrize("path, value", [
    (["tensors"], []),
    (["tensors", "bool"], "x"),
    (["tensors", "bool", "dtype"], "float8"),
    (["tensors", "bool", "dtype"], "complex64"),
    (["tensors", "bool", "dtype"], None),
    (["tensors", "bool", "shape"], "9"),
    (["tensors", "bool", "shape"], [-9]),
    (["tensors", "bool", "shape"], [9.0]),
    (["tensors", "bool", "shape"], [True] * 9),
    (["tensors", "bool", "shape"], [2**60, 2**60]),  # over 2**53 per dimension: not exact in JSON
    (["tensors", "bool", "raw"], "copy"),
    (["tensors", "bool", "raw", "codec"], 3),
    (["tensors", "bool", "raw", "p"], []),
    (["tensors", "q_ans", "q"], "uniform"),
    (["tensors", "q_ans", "q", "mode"], "lattice"),
    (["tensors", "q_ans", "q", "axis"], 2),
    (["tensors", "q_ans", "q", "axis"], -1),
    (["tensors", "q_code", "q", "axis"], 0),
    (["tensors", "q_ans", "dtype"], "int32"),
    (["meta"], {"a": 1}),
    (["meta"], ["a"]),
])
def test_bad_header_values(path, value):
    expect(FormatError, modified(_set(path, value)))


def test_missing_quant_parts():
    for part in ("levels", "quantizer", "q"):
        def edit(body, sections, part=part):
            del body["tensors"]["q_code"][part]

        expect(FormatError, modified(edit))


def test_quantized_scalar_with_axis():
    b = Builder()
    b.tensors["s"] = {"dtype": "float32", "shape": [], "q": {"mode": "uniform", "axis": 0},
                      "levels": b.part(zigzag_zstd(np.array([3]))),
                      "quantizer": b.part(Encoded("f32", np.array([0.5], "<f4").tobytes()))}
    expect(FormatError, rebuild(b.body(), b.sections))


def test_unknown_codec_names():
    for kind, tensor in (("raw", "bool"), ("mask", "q_ans"), ("levels", "q_ans"), ("quantizer", "q_ans")):
        expect(UnsupportedVersionError, modified(_set(["tensors", tensor, kind, "codec"], "brotli")))


def test_unknown_codec_params():
    expect(CorruptFileError, modified(_set(["tensors", "h_copy", "raw", "p"], {"level": 3})))
    expect(CorruptFileError, modified(_set(["tensors", "q_rows", "levels", "p"], {"width": 8})))
    expect(CorruptFileError, modified(_set(["tensors", "w_planes", "raw", "p", "split"], "bytes")))


def test_unknown_dtype():
    err = expect(UnsupportedVersionError, modified(_set(["tensors", "bool", "dtype"], "float8_e4m3")))
    assert "float8_e4m3" in str(err)


# ------------------------------------------------------------------------------------ limits


def test_ndim_over_the_limit():
    expect(LimitExceededError, modified(_set(["tensors", "empty", "shape"], [1] * 17 + [0])))
    expect(LimitExceededError, sample_file(), Limits(max_ndim=1))


def test_element_count_overflow():
    # dims whose product overflows 64 bits (and the default limit) long before anything is allocated
    expect(LimitExceededError, modified(_set(["tensors", "empty", "shape"], [2**40, 2**40, 2**40, 1])))
    expect(LimitExceededError, modified(_set(["tensors", "bool", "shape"], [2**53 - 1] * 8)))


@pytest.mark.parametrize("limits", [
    Limits(max_tensors=5),
    Limits(max_sections=4),
    Limits(max_elements_per_tensor=100),
    Limits(max_total_decoded_bytes=512),
    Limits(max_metadata_bytes=8),
    Limits(max_json_depth=3),
    Limits(max_alphabet=4),
])
def test_custom_limits(limits):
    expect(LimitExceededError, sample_file(), limits)


def test_decompression_bomb_stops_at_limits():
    """A tiny file declaring a huge constant tensor is refused before anything is allocated."""
    b = Builder()
    n = 2**30
    b.tensors["big"] = {"dtype": "float32", "shape": [n], "raw": b.part(Encoded("zstd", zstd.compress(b"\0" * 4)))}
    data = rebuild(b.body(), b.sections)
    expect(LimitExceededError, data, Limits(max_total_decoded_bytes=2**20))
    expect(CorruptFileError, data)  # with default limits the declared size disagrees before allocating
    b = Builder()
    table = ans.CountTable(0, np.array([1], dtype=np.uint64))
    b.tensors["m"] = {"dtype": "float32", "shape": [2**20, 2**10], "q": {"mode": "uniform"},
                      "mask": b.part(Encoded("ans", table.to_bytes())),
                      "levels": b.part(zigzag_zstd(np.zeros(0, np.int64))),
                      "quantizer": b.part(Encoded("f32", np.array([1], "<f4").tobytes()))}
    expect(LimitExceededError, rebuild(b.body(), b.sections), Limits(max_elements_per_tensor=2**20))


# --------------------------------------------------------------------------- payload defects


def _replace_section(tensor: str, kind: str, payload: bytes, params: dict | None = None):
    def edit(body, sections):
        part = body["tensors"][tensor][kind]
        sections[part["s"]] = payload
        if params is not None:
            part.pop("p", None)
            if params:
                part["p"] = params

    return edit


def test_component_sizes_disagree():
    # shape changed: the raw payload no longer has the right size
    expect(CorruptFileError, modified(_set(["tensors", "h_copy", "shape"], [21])))
    expect(CorruptFileError, modified(_set(["tensors", "d_zstd", "shape"], [5, 3])))
    expect(CorruptFileError, modified(_set(["tensors", "w_planes", "shape"], [8, 15])))
    # mask vs levels: one level too many or too few for the mask's survivors
    expect(CorruptFileError, modified(_replace_section("q_code", "levels", zigzag_zstd(np.zeros(11, np.int64), 2).payload)))
    many = np.random.default_rng(0).integers(-3, 4, size=40)
    expect(CorruptFileError, modified(_replace_section("q_ans", "levels", ans.encode_with_table(many))))
    # mask shape vs tensor shape: a mask coded for 12 elements where the tensor has 10
    twelve = zstd.compress(np.packbits(np.ones(12, bool), bitorder="little").tobytes())
    expect(CorruptFileError, modified(_replace_section("q_code", "mask", twelve)))
    # per-channel steps: 6 needed, 5 given; codebook levels outside the codebook
    expect(CorruptFileError, modified(_replace_section("q_rows", "quantizer", np.ones(5, "<f4").tobytes())))
    expect(CorruptFileError, modified(_replace_section("q_code", "quantizer", np.ones(2, "<f4").tobytes())))
    expect(CorruptFileError, modified(_replace_section("q_code", "quantizer", b"")))
    expect(CorruptFileError, modified(_replace_section("q_code", "quantizer", b"\0\0\0")))
    # non-positive or non-finite steps
    expect(CorruptFileError, modified(_replace_section("q_ans", "quantizer", np.array([0], "<f4").tobytes())))
    expect(CorruptFileError, modified(_replace_section("q_ans", "quantizer", np.array([-1], "<f4").tobytes())))
    expect(CorruptFileError, modified(_replace_section("q_ans", "quantizer", np.array([np.nan], "<f4").tobytes())))


def test_levels_outside_int32():
    b = Builder()
    b.tensors["q"] = {"dtype": "float32", "shape": [2], "q": {"mode": "uniform"},
                      "levels": b.part(Encoded("zstd", zstd.compress(np.array([2**32 - 1, 2**32 - 2], "<u4").tobytes()),
                                               {"width": 4})),
                      "quantizer": b.part(Encoded("f32", np.array([1], "<f4").tobytes()))}
    data = rebuild(b.body(), b.sections)
    consume(data)  # zigzag of width 4 decodes to exactly the int32 range: valid
    b.sections[0] = ans.CountTable(2**31 - 1, np.array([1], np.uint64)).to_bytes()
    b.tensors["q"]["levels"] = {"s": 0, "codec": "ans"}
    consume(rebuild(b.body(), b.sections))  # lo = int32 max with alphabet 1: valid
    b.sections[0] = ans.CountTable(2**31, np.array([1], np.uint64)).to_bytes()
    expect(CorruptFileError, rebuild(b.body(), b.sections))


def test_bad_count_table_all_zero():
    table = binary.write_uvarint(0) + binary.write_uvarint(4) + bytes(4)
    expect(CorruptFileError, modified(_replace_section("q_ans", "levels", table)))
    expect(CorruptFileError, modified(_replace_section("q_ans", "mask", table[:1] + binary.write_uvarint(2) + bytes(2))))
    expect(CorruptFileError, modified(_replace_section("q_ans", "levels", b"")))
    expect(CorruptFileError, modified(_replace_section("q_ans", "levels", binary.write_uvarint(0) + b"\x80\x00")))


def test_ans_payload_with_extra_words():
    body, sections, _ = sample_parts()
    levels_payload = sections[body["tensors"]["q_ans"]["levels"]["s"]]
    for extra in (b"\x01\0\0\0", b"\0\0\0\0", b"\x01", b"\xff\xff\xff\xff" * 3):
        expect(CorruptFileError, modified(_replace_section("q_ans", "levels", levels_payload + extra)))
    mask_payload = sections[body["tensors"]["q_rows"]["mask"]["s"]]
    expect(CorruptFileError, modified(_replace_section("q_rows", "mask", mask_payload + b"\x05\0\0\0")))
    # ANS data where the alphabet has one symbol (nothing to code) is refused too
    one = ans.CountTable(0, np.array([1], np.uint64)).to_bytes()
    expect(CorruptFileError, modified(_replace_section("q_ans", "levels", one + b"\x01\0\0\0")))


def test_ans_stream_in_raw_planes_with_extra_words():
    body, sections, _ = sample_parts()
    part = body["tensors"]["w_planes"]["raw"]
    payload = sections[part["s"]]
    first_len = part["p"]["streams"][0][1]
    padded = payload[:first_len] + b"\x09\0\0\0" + payload[first_len:]
    streams = [list(s) for s in part["p"]["streams"]]
    streams[0][1] += 4
    expect(CorruptFileError, modified(_replace_section("w_planes", "raw", padded, {"split": "float", "streams": streams})))


def test_zstd_frame_wrong_declared_size_or_trailing_data():
    d = sample_parts()[2].expected["d_zstd"].tobytes()
    for bad in (zstd.compress(d[:-8]), zstd.compress(d + bytes(8)), zstd.compress(d) + b"\0",
                zstd.compress(d) + zstd.compress(b""), zstandard.ZstdCompressor(write_content_size=False).compress(d),
                b"\x50\x2a\x4d\x18" + struct.pack("<I", len(d)) + d, zstd.compress(d)[:-1], b""):
        expect(CorruptFileError, modified(_replace_section("d_zstd", "raw", bad)))
    lv = zigzag_zstd(np.arange(5), 2).payload
    expect(CorruptFileError, modified(_replace_section("q_code", "levels", lv)))


def test_bool_raw_values_other_than_0_and_1():
    for bad in (bytes([0, 1, 2, 0, 0, 0, 0, 0, 1]), bytes([255] * 9)):
        expect(CorruptFileError, modified(_replace_section("bool", "raw", bad)))
    zstd_bad = zstd.compress(bytes([0, 1, 1, 0, 3, 0, 1, 1, 1]))
    expect(CorruptFileError, modified(_replace_section("bool", "raw", zstd_bad, {})))


def test_mask_padding_bits_must_be_zero():
    body, sections, _ = sample_parts()
    part = body["tensors"]["q_code"]["mask"]
    packed = bytearray(zstandard.ZstdDecompressor().decompress(sections[part["s"]]))
    packed[-1] |= 0x80  # bit 15 of a 10-element mask
    expect(CorruptFileError, modified(_replace_section("q_code", "mask", zstd.compress(bytes(packed)))))


# ---------------------------------------------------------------- nothing else ever escapes


def _json_values():
    return st.recursive(
        st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.sampled_from([0, 1, 2, -1, 2**31, 2**53, 2**64])
        | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8)
        | st.sampled_from(["copy", "zstd", "planes", "ans", "ans-rows", "f32", "float32", "bool", "uniform",
                           "codebook", "bytes", "float"]),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=3),
        max_leaves=8)


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


def _only_nncodec_errors(data: bytes) -> None:
    try:
        consume(data)
    except NNCodecError:
        pass


@FUZZ
@given(st.data())
def test_header_mutations_raise_only_nncodec_errors(data):
    """Any value anywhere in a (checksum-correct) header: a typed error or a successful decode."""
    body, sections, _ = sample_parts()
    paths = [p for p in _paths(body) if p]
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        obj = body
        try:
            for key in path[:-1]:
                obj = obj[key]
            action = data.draw(st.sampled_from(["set", "delete"]))
            if action == "delete" and isinstance(obj, dict):
                del obj[path[-1]]
            else:
                obj[path[-1]] = data.draw(_json_values())
        except (KeyError, IndexError, TypeError):
            continue
    _only_nncodec_errors(rebuild(body, sections))


@FUZZ
@given(st.data())
def test_payload_mutations_raise_only_nncodec_errors(data):
    """Damaged payloads behind correct checksums reach every decoder: typed errors only."""
    body, sections, _ = sample_parts()
    i = data.draw(st.integers(0, len(sections) - 1))
    payload = bytearray(sections[i])
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "set", "truncate", "insert"]))
        pos = data.draw(st.integers(0, max(len(payload) - 1, 0)))
        if op == "flip" and payload:
            payload[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "set" and payload:
            payload[pos] = data.draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF]))
        elif op == "truncate":
            del payload[pos:]
        else:
            payload[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
    sections[i] = bytes(payload)
    _only_nncodec_errors(rebuild(body, sections))


@FUZZ
@given(st.binary(max_size=200), st.sampled_from([0, 1]))
def test_arbitrary_header_bytes_raise_only_nncodec_errors(text, encoding):
    _only_nncodec_errors(raw_file(text, encoding=encoding))


@FUZZ
@given(st.data())
def test_raw_byte_mutations_raise_only_nncodec_errors(data):
    raw_data = bytearray(sample_file(data.draw(st.sampled_from([1, 8]))))
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.integers(0, len(raw_data) - 1))
        raw_data[pos] = data.draw(st.integers(0, 255))
    _only_nncodec_errors(bytes(raw_data))
