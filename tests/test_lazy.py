"""Lazy reads (issue 13): the indexed header (spec §4.5), entries validated on first use, get_slice.

What users rely on: an indexed file decodes to exactly what the same tensors decode to from a JSON
header; opening parses no entry; a malformed entry raises its typed error when it is used and in
verify/info/load_file, never another exception; get_slice equals indexing the whole tensor.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nncodec
from nncodec.codecs.base import EncodeOptions
from nncodec.compress import quantize_uniform
from nncodec.container import index
from nncodec.container.format import HEADER_INDEXED, HEADER_JSON, MAJOR, PREAMBLE_SIZE, Preamble
from nncodec.container.reader import Container
from nncodec.container.writer import _layout
from nncodec.dtypes import DTYPES
from nncodec.errors import ClosedFileError, CorruptFileError, FormatError, LimitExceededError
from nncodec.tensorwriter import encode_file

RNG = np.random.default_rng(13)
W = (RNG.standard_normal((12, 20)) * 0.1).astype(np.float32)


def many_tensors() -> dict:
    """130 tensors (indexed by the writer): every entry form, dtypes, a scalar, an empty tensor."""
    import torch

    t = {f"blocks.{i}.w": W[i % 12, : 1 + i % 7].copy() for i in range(120)}
    t["q"] = quantize_uniform(W, DTYPES["float32"], 0.02, mask=W > 0)
    t["bf16"] = torch.from_numpy(W).to(torch.bfloat16)
    t["flags"] = np.array([True, False, True])
    t["ids"] = np.arange(7, dtype=np.int64)
    t["scalar"] = np.float32(2.5)
    t["empty"] = np.zeros((0, 4), np.float32)
    shared = torch.from_numpy(W[0].copy())
    t["tied.a"], t["tied.b"] = shared, shared
    return t


@pytest.fixture(scope="module")
def indexed() -> bytes:
    data = nncodec.save(many_tensors(), {"arch": "test"})
    assert Container(data).preamble.header_encoding & HEADER_INDEXED
    return data


def as_json(data: bytes) -> bytes:
    """The same file with its header stored as JSON text (the eager path)."""
    with Container(data) as c:
        header = c.index.header_object()
        body = {k: v for k, v in header.items() if k not in ("sections", "align")}
        kinds = {i: k for i, k in c.sections.kinds.items()}
        return _layout(body, [bytes(c.read_section(i)) for i in range(len(c.sections))], kinds, c.align, HEADER_JSON)


def indexed_file(tensors: dict, sections: list[bytes], top: dict | None = None) -> bytes:
    """A file with an indexed header holding exactly `tensors` (entry objects) and `sections`."""
    table = [[len(p), zlib.crc32(p)] for p in sections]
    return wrap(index.pack({**(top or {}), "tensors": tensors}, table), sections)


def wrap(stored: bytes, sections: list[bytes]) -> bytes:
    tail = b"".join(sections)
    pre = Preamble(MAJOR, 1, HEADER_INDEXED, len(stored), PREAMBLE_SIZE + len(stored) + len(tail), zlib.crc32(stored))
    return pre.pack() + stored + tail


def copy_entry(s: int, n: int = 2) -> dict:
    return {"dtype": "float32", "shape": [n], "raw": {"s": s, "codec": "copy"}}


# ------------------------------------------------------------------------- lazy equals eager


def test_indexed_file_decodes_exactly_like_its_json_twin(indexed):
    eager = nncodec.load(as_json(indexed), framework="np")
    with nncodec.open(indexed, framework="np") as f:
        assert f.keys() == list(eager) and f.metadata() == {"arch": "test"}
        for name in reversed(f.keys()):  # any order, one at a time
            got = f.get_tensor(name)
            assert got.dtype == eager[name].dtype and got.shape == eager[name].shape
            assert got.tobytes() == eager[name].tobytes(), name
        assert f.get_tensor("tied.a") is f.get_tensor("tied.b")
        f.verify()
        assert f.info()["header_encoding"] in ("indexed", "indexed+zstd")
    assert {k: v.tobytes() for k, v in nncodec.load(indexed, framework="np").items()} == \
        {k: v.tobytes() for k, v in eager.items()}


def test_opening_parses_no_entry_and_a_get_parses_one(indexed, monkeypatch):
    """A get parses its own entry and the alias entries (to know tied names), not the other 127."""
    names = list(many_tensors())
    parsed = []
    real = index.Index.entry
    monkeypatch.setattr(index.Index, "entry", lambda self, i: parsed.append(i) or real(self, i))
    with nncodec.open(indexed, framework="np") as f:
        assert parsed == []
        assert "blocks.7.w" in f and "nope" not in f
        f.get_tensor("blocks.7.w")
        assert set(parsed) == {names.index("blocks.7.w"), names.index("tied.b")}


def test_names_inside_other_names_are_found(tmp_path):
    names = [f"t{i}" for i in range(200)] + ["", "t1.t1", "1"]
    tensors = {n: np.full(2, i, np.float32) for i, n in enumerate(names)}
    path = tmp_path / "m.nnc"
    nncodec.save_file(tensors, path)
    with nncodec.open(path, framework="np") as f:  # a mapped file
        assert f.keys() == names
        for n in ["t1", "t10", "t199", "", "1", "t1.t1", "t19"]:
            assert f.get_tensor(n)[0] == names.index(n)
        with pytest.raises(KeyError):
            f.get_tensor("t200")


# ---------------------------------------------------------------- malformed entries, lazily


def test_a_malformed_entry_raises_when_used_and_in_verify_info_load():
    sections = [np.float32([1, 2]).tobytes() for _ in range(3)]
    tensors = {"a": copy_entry(0), "bad": {"dtype": "float99", "shape": [2], "raw": {"s": 1, "codec": "copy"}},
               "c": copy_entry(2)}
    data = indexed_file(tensors, sections)
    with nncodec.open(data, framework="np") as f:
        assert f.get_tensor("a").tolist() == [1, 2]  # the others stay readable
        with pytest.raises(nncodec.UnsupportedVersionError):
            f.get_tensor("bad")
        for whole in (f.verify, f.info):
            with pytest.raises(nncodec.UnsupportedVersionError):
                whole()
    with pytest.raises(nncodec.UnsupportedVersionError):
        nncodec.load(data)


@pytest.mark.parametrize("case", ["shared", "orphan", "alias_missing", "not_json", "deep", "limit"])
def test_whole_file_rules_hold_for_indexed_headers(case):
    sections = [np.float32([1, 2]).tobytes() for _ in range(3)]
    tensors = {"a": copy_entry(0), "b": copy_entry(1), "c": copy_entry(2)}
    expected: type[Exception] = FormatError
    if case == "shared":
        tensors["c"] = copy_entry(1)
        sections = sections[:2]
    elif case == "orphan":
        del tensors["c"]
    elif case == "alias_missing":
        tensors["c"] = {"alias": "zzz"}
        sections = sections[:2]
    elif case == "deep":
        tensors["c"]["x-deep"] = [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]
        expected = LimitExceededError
    elif case == "limit":
        tensors["c"] = copy_entry(2, 2**40)
        expected = LimitExceededError
    data = indexed_file(tensors, sections)
    if case == "not_json":  # entry "c" is the last text of the header: break it
        data = wrap(index.pack({"tensors": tensors}, [[8, zlib.crc32(s)] for s in sections])[:-1] + b"!", sections)
        expected = FormatError
    with pytest.raises(expected):
        nncodec.load(data)
    with nncodec.open(data, framework="np") as f, pytest.raises(expected):
        f.verify()
    with nncodec.open(data, framework="np") as f:
        if case not in ("orphan",):
            with pytest.raises(expected):
                [f.get_tensor(n) for n in f.keys()]
        else:
            assert f.get_tensor("a").tolist() == [1, 2]


def _stored(entries: dict, payloads: list[bytes], **top) -> bytearray:
    return bytearray(index.pack({**top, "tensors": entries}, [[len(p), zlib.crc32(p)] for p in payloads]))


def test_malformed_indexes_raise_typed_errors_at_open():
    sections = [np.float32([1, 2]).tobytes(), np.float32([3, 4]).tobytes()]
    good = _stored({"a": copy_entry(0), "b": copy_entry(1)}, sections)
    cases: list[tuple[type[Exception], bytes]] = []
    huge = bytearray(good)
    struct.pack_into("<Q", huge, 0, 2**40)  # section count
    cases.append((LimitExceededError, huge))
    huge = bytearray(good)
    struct.pack_into("<Q", huge, 8, 2**40)  # tensor count
    cases.append((LimitExceededError, huge))
    cases.append((CorruptFileError, good[:-1]))  # parts do not add up
    cases.append((CorruptFileError, good[:20]))
    back = bytearray(good)
    struct.pack_into("<Q", back, 40 + 12 * 2, 9)  # name end 0 beyond name end 1
    cases.append((FormatError, back))
    cases.append((FormatError, _stored({"a": copy_entry(0), "b": copy_entry(1)}, sections, sections=[])))
    cases.append((FormatError, _stored({"a": copy_entry(0), "b": copy_entry(1)}, sections, kinds=[[5, "x-a"]])))
    cases.append((FormatError, _stored({"a": copy_entry(0), "b": copy_entry(1)}, sections, kinds=[[0, "data"]])))
    for expected, stored in cases:
        with pytest.raises(expected):
            nncodec.open(wrap(bytes(stored), sections))
    past = bytearray(good)
    struct.pack_into("<Q", past, 40, 9)  # section 0 longer than the file holds
    with pytest.raises(CorruptFileError):
        nncodec.open(wrap(bytes(past), sections))
    with pytest.raises(nncodec.UnsupportedVersionError):
        nncodec.open(wrap(bytes(_stored({"a": copy_entry(0), "b": copy_entry(1)}, sections, kinds=[[1, "zz"]])),
                          sections))


def test_duplicate_and_invalid_names_are_refused():
    sections = [np.float32([1, 2]).tobytes(), np.float32([3, 4]).tobytes()]
    stored = _stored({"ab": copy_entry(0), "cd": copy_entry(1)}, sections)
    names_at = len(stored) - sum(len(index.strict_json.dumps(copy_entry(i))) for i in range(2)) - 4
    dup = bytearray(stored)
    dup[names_at:names_at + 4] = b"abab"
    with nncodec.open(wrap(bytes(dup), sections), framework="np") as f:
        with pytest.raises(FormatError, match="twice"):
            f.get_tensor("ab")
        with pytest.raises(FormatError, match="twice"):
            f.keys()
    bad = bytearray(stored)
    bad[names_at:names_at + 2] = b"\xff\xfe"
    with nncodec.open(wrap(bytes(bad), sections), framework="np") as f:
        assert f.get_tensor("cd").tolist() == [3, 4]
        with pytest.raises(FormatError, match="UTF-8"):
            f.keys()


# ------------------------------------------------------------------------------- get_slice


def _chunked(shape: tuple[int, ...], dtype: str, chunk_bytes: int) -> tuple[np.ndarray, bytes]:
    rng = np.random.default_rng(sum(shape) + chunk_bytes)
    w = (rng.standard_normal(shape) * 0.1).astype(dtype)
    data = encode_file({"w": nncodec.RawTensor(DTYPES[dtype], shape, w.reshape(-1).view(DTYPES[dtype].storage))},
                       options=EncodeOptions(chunk_bytes=chunk_bytes, threads=1))
    return w, data


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 40), cols=st.integers(1, 9), chunk_rows=st.integers(1, 12), data=st.data())
def test_get_slice_equals_slicing_the_whole_tensor(rows, cols, chunk_rows, data):
    w, blob = _chunked((rows, cols), "float32", chunk_rows * cols * 4)
    a = data.draw(st.integers(-rows - 2, rows + 2))
    b = data.draw(st.integers(-rows - 2, rows + 2))
    c = data.draw(st.integers(0, cols))
    step = data.draw(st.sampled_from([None, 1, 2, -1]))
    with nncodec.open(blob, framework="np") as f:
        s = f.get_slice("w")
        assert s.get_shape() == [rows, cols] and s.get_dtype() == "float32"
        for index in [slice(a, b), (slice(a, b), slice(None)), (slice(a, b, step), slice(c, None)),
                      a % rows, (a % rows, c % cols)]:
            got = s[index]
            assert np.array_equal(got, w[index]) and got.shape == w[index].shape, index


def test_get_slice_reads_only_the_chunks_of_its_rows(monkeypatch):
    w, blob = _chunked((64, 16), "float32", 8 * 16 * 4)  # 8 chunks of 8 rows
    read = []
    real = Container.read_range
    monkeypatch.setattr(Container, "read_range", lambda self, o, n: read.append(n) or real(self, o, n))
    with nncodec.open(blob, framework="np") as f:
        assert np.array_equal(f.get_slice("w")[17:23], w[17:23])
    assert len(read) == 1


def test_get_slice_of_quantized_bf16_and_torch_tensors():
    import torch

    q = quantize_uniform(W, DTYPES["float32"], 0.02, mask=W > 0)
    bf = torch.from_numpy(W).to(torch.bfloat16)
    data = nncodec.save({"q": q, "bf": bf, "s": np.float32(3)})
    with nncodec.open(data) as f:
        whole = f.get_tensor("q")
        assert torch.equal(f.get_slice("q")[2:5, 1:], whole[2:5, 1:])
        assert torch.equal(f.get_slice("bf")[3], bf[3]) and f.get_slice("bf").get_dtype() == "bfloat16"
        assert float(f.get_slice("s")[()]) == 3.0
        with pytest.raises(KeyError):
            f.get_slice("nope")


def test_a_closed_file_raises_closed_file_error(indexed):
    with nncodec.open(indexed, framework="np") as f:
        s = f.get_slice("blocks.3.w")
    with pytest.raises(ClosedFileError):
        s[0:1]
    with pytest.raises(ClosedFileError):
        f.get_slice("blocks.3.w")
    with pytest.raises(ClosedFileError):
        f.get_tensor("blocks.3.w")


def test_the_indexed_vector_reads_as_spec_4_5_says():
    """An independent reading of §4.5 from the spec's table alone: the header object it denotes is
    the one the reader serves, and the sections tile the file."""
    import json
    from pathlib import Path

    data = (Path(__file__).resolve().parent.parent / "spec" / "vectors" / "indexed_header.nnc").read_bytes()
    import zstandard

    major, minor, encoding, h = struct.unpack_from("<HHB3xQ", data, 8)
    assert major == 2 and encoding in (2, 3) and minor >= 1
    stored = data[40:40 + h]
    if encoding == 3:  # a zstd frame of the indexed header (§4.1)
        stored = zstandard.ZstdDecompressor().decompress(stored)
    n, m, j, nn, ne = struct.unpack_from("<5Q", stored)
    assert 40 + 12 * n + 16 * m + j + nn + ne == len(stored)
    lengths = struct.unpack_from(f"<{n}Q", stored, 40)
    crcs = struct.unpack_from(f"<{n}I", stored, 40 + 8 * n)
    name_end = struct.unpack_from(f"<{m}Q", stored, 40 + 12 * n)
    entry_end = struct.unpack_from(f"<{m}Q", stored, 40 + 12 * n + 8 * m)
    at = 40 + 12 * n + 16 * m
    top = json.loads(stored[at:at + j])
    names, entries = stored[at + j:at + j + nn], stored[at + j + nn:]
    tensors = {names[a:b].decode(): json.loads(entries[c:d])
               for a, b, c, d in zip((0,) + name_end[:-1], name_end, (0,) + entry_end[:-1], entry_end, strict=True)}
    offset, align = 40 + h, top.get("align", 1)
    for length, crc in zip(lengths, crcs, strict=True):
        offset = -(-offset // align) * align
        assert zlib.crc32(data[offset:offset + length]) == crc
        offset += length
    assert offset == len(data) and len(tensors) == 130
    with Container(data) as c:
        assert c.index.header_object() == {**top, "tensors": tensors, "sections": [list(x) for x in zip(lengths, crcs, strict=True)]}


def test_tensors_from_a_mapped_file_are_writable_copies(tmp_path):
    path = tmp_path / "m.nnc"
    nncodec.save_file({"w": W, "q": quantize_uniform(W, DTYPES["float32"], 0.02)}, path)
    with nncodec.open(path, framework="np") as f:
        a = f.get_tensor("w")
        assert a.flags.writeable
        a[:] = 0
        assert np.array_equal(f.get_tensor("w"), W)
        f._tf.container.release()  # the mapping's pages dropped: reads fault them back in
        assert np.array_equal(f.get_tensor("w"), W)
        assert f.get_slice("w")[1:3].flags.writeable
    assert path.read_bytes() == nncodec.save({"w": W, "q": quantize_uniform(W, DTYPES["float32"], 0.02)})
