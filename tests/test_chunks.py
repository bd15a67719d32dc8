"""Chunked raw tensors (spec §23, format 2.1), threads, and the dtypes of format 2.1 (§6.1 float8).

What users rely on: a chunked tensor decodes bit-exactly, whole or by element range (reading only its
chunks); the bytes written do not depend on the number of threads; a damaged or hand-made chunk table is
refused with a typed error before anything is allocated; every torch dtype goes through safetensors and
torch checkpoints losslessly.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nncodec
from nncodec.api import compress_tensors
from nncodec.codecs import chunks, raw
from nncodec.codecs.base import DecodeContext, EncodeOptions
from nncodec.container.writer import assemble
from nncodec.dtypes import DTYPES
from nncodec.io import checkpoint_bytes, read_checkpoint
from nncodec.tensorwriter import encode_file

FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SMALL = 1000  # chunk_bytes that make tiny test tensors chunked


def _save(tensors: dict, threads: int | None = None, prefer: str = "balanced", chunk_bytes: int = SMALL) -> bytes:
    return encode_file(compress_tensors(tensors), options=EncodeOptions(prefer=prefer, threads=threads, chunk_bytes=chunk_bytes))


def _weights(shape: tuple[int, ...], seed: int = 0, dtype=np.float32) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(shape) * 0.05).astype(dtype)


# ------------------------------------------------------------------------------------------ round trips


@FAST
@given(st.sampled_from(sorted(DTYPES)), st.integers(0, 3000), st.integers(1, 3000), st.sampled_from(["balanced", "speed", "size"]),
       st.integers(0, 2**32 - 1))
def test_chunked_raw_round_trips_every_dtype(dt_name, n, chunk_bytes, prefer, seed):
    """raw.encode chunks anything over chunk_bytes; decode gives the same words, whatever the chunk size."""
    dt = DTYPES[dt_name]
    words = np.random.default_rng(seed).integers(0, 256, n * dt.itemsize, dtype=np.uint8).view(dt.storage)
    if dt.kind == "b":
        words = words & 1
    enc = raw.encode(words, dt, EncodeOptions(prefer=prefer, chunk_bytes=chunk_bytes, threads=2), row=7)
    assert (enc.codec == "chunks") == (words.nbytes > chunk_bytes)
    got = raw.decode(enc.codec, enc.params, memoryview(enc.payload), dt, n, DecodeContext(threads=2))
    assert got.tobytes() == words.tobytes()


def test_chunks_hold_whole_rows_when_a_row_fits():
    w = _weights((40, 30))
    with nncodec.open(_save({"w": w}), framework="np") as f:
        table = f._tf.chunk_table(f._tf.resolve("w"))
        assert table.n % 30 == 0 and table.n * 4 <= SMALL and table.count == -(-1200 // table.n)
        assert np.array_equal(f.get_tensor("w"), w)


def test_bytes_do_not_depend_on_the_thread_count():
    tensors = {"a": _weights((64, 50), 1), "b": _weights((300,), 2, np.float16), "c": _weights((7, 9), 3),
               "ids": np.arange(2000, dtype=np.int64), **{f"s{i}": _weights((5, 4), 10 + i) for i in range(20)}}
    files = {t: _save(tensors, threads=t) for t in (1, 2, 3)}
    assert files[1] == files[2] == files[3]
    assert nncodec.save(tensors, threads=1) == nncodec.save(tensors, threads=2)
    one, two = nncodec.load(files[1], framework="np", threads=1), nncodec.load(files[1], framework="np", threads=2)
    for name, value in tensors.items():
        assert one[name].tobytes() == two[name].tobytes() == value.tobytes()


def test_element_ranges_decode_only_their_chunks():
    w = _weights((50, 20))
    data = bytearray(_save({"w": w}))
    flat = w.reshape(-1).view(np.uint32)
    with nncodec.open(bytes(data), framework="np") as f:
        tf, e = f._tf, f._tf.resolve("w")
        table = tf.chunk_table(e)
        for start, stop in ((0, 1000), (0, 0), (17, 18), (table.n - 1, table.n + 1), (999, 1000), (200, 741)):
            assert np.array_equal(tf.decode_elements(e, start, stop), flat[start:stop])
        with pytest.raises(IndexError):
            tf.decode_elements(e, 5, 1001)
        section = tf.container.sections[e.parts["raw"].section]
    # damage the last chunk: ranges elsewhere still decode (their own CRCs), the last one is refused
    data[section.offset + table.offsets[-2]] ^= 0xFF
    with nncodec.open(bytes(data), framework="np") as f:
        tf, e = f._tf, f._tf.resolve("w")
        assert np.array_equal(tf.decode_elements(e, 0, table.n), flat[: table.n])
        with pytest.raises(nncodec.CorruptFileError, match="chunk"):
            tf.decode_elements(e, 999, 1000)
        with pytest.raises(nncodec.CorruptFileError):
            f.get_tensor("w")


def test_version_is_2_1_only_with_chunks_or_float8():
    small = {"w": _weights((4, 4))}
    assert nncodec.open(nncodec.save(small)).info()["version"] == "2.0"
    assert nncodec.open(_save({"w": _weights((40, 30))})).info()["version"] == "2.1"
    f8 = {"x": torch.zeros(3, dtype=torch.float8_e5m2)}
    assert nncodec.open(nncodec.save(f8)).info()["version"] == "2.1"


def test_info_counts_chunks_and_adds_up():
    data = _save({"w": _weights((40, 30)), "v": _weights((3,))})
    report = nncodec.open(data).info()
    (comp,) = report["tensors"][0]["components"]
    assert comp["codec"] == "chunks" and comp["chunks"] == sum(comp["chunk_codecs"].values()) > 1
    assert "chunks" not in report["tensors"][1]["components"][0]


# ------------------------------------------------------------------------------------------ malformed tables


def _chunked_file(params: dict, payload: bytes, shape: list[int], dtype: str = "float32") -> bytes:
    entry = {"dtype": dtype, "shape": shape, "raw": {"s": 0, "codec": "chunks", "p": params}}
    return assemble({"tensors": {"t": entry}}, [payload])


def _good() -> tuple[dict, bytes, list[int]]:
    words = np.arange(10, dtype=np.float32).view(np.uint32)
    a, b = words[:4].tobytes(), words[4:8].tobytes()
    c = words[8:].tobytes()
    return {"n": 4, "chunks": [[16, zlib.crc32(a), "copy"], [16, zlib.crc32(b), "copy", {}], [8, zlib.crc32(c), "copy"]]}, a + b + c, [10]


def _decode(data: bytes) -> np.ndarray:
    with nncodec.open(data, framework="np") as f:
        return f.get_tensor("t")


def test_a_hand_made_chunk_table_decodes():
    params, payload, shape = _good()
    assert np.array_equal(_decode(_chunked_file(params, payload, shape)), np.arange(10, dtype=np.float32))


def _mutated(change):
    params, payload, shape = _good()
    change(params)
    return _chunked_file(params, payload, shape)


MALFORMED = {
    "n zero": (lambda p: p.update(n=0), nncodec.CorruptFileError),
    "n bool": (lambda p: p.update(n=True), nncodec.CorruptFileError),
    "n missing": (lambda p: p.pop("n"), nncodec.CorruptFileError),
    "extra member": (lambda p: p.update(x=1), nncodec.CorruptFileError),
    "missing chunk": (lambda p: p["chunks"].pop(), nncodec.CorruptFileError),
    "extra chunk": (lambda p: p["chunks"].append([0, 0, "copy"]), nncodec.CorruptFileError),
    "n disagrees with the count": (lambda p: p.update(n=5), nncodec.CorruptFileError),
    "lengths short of the section": (lambda p: p["chunks"][2].__setitem__(0, 4), nncodec.CorruptFileError),
    "length past the section": (lambda p: p["chunks"][0].__setitem__(0, 100), nncodec.CorruptFileError),
    "negative length": (lambda p: p["chunks"][0].__setitem__(0, -1), nncodec.CorruptFileError),
    "crc out of range": (lambda p: p["chunks"][0].__setitem__(1, 2**32), nncodec.CorruptFileError),
    "entry not a list": (lambda p: p["chunks"].__setitem__(0, {"len": 16}), nncodec.CorruptFileError),
    "entry too long": (lambda p: p["chunks"][1].append(0), nncodec.CorruptFileError),
    "nested chunks": (lambda p: p["chunks"][0].__setitem__(2, "chunks"), nncodec.CorruptFileError),
    "unknown chunk codec": (lambda p: p["chunks"][0].__setitem__(2, "lz77"), nncodec.UnsupportedVersionError),
    "params of another codec": (lambda p: p["chunks"][0].append({"split": "float", "streams": []}), nncodec.CorruptFileError),
    "chunks not a list": (lambda p: p.update(chunks={}), nncodec.CorruptFileError),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_chunk_tables_are_refused(name):
    change, error = MALFORMED[name]
    with pytest.raises(error):
        _decode(_mutated(change))


def test_a_chunk_that_decodes_to_the_wrong_size_is_refused():
    params, payload, shape = _good()
    params["chunks"][0][2] = "zstd"  # 16 bytes that are no zstd frame
    with pytest.raises(nncodec.CorruptFileError):
        _decode(_chunked_file(params, payload, shape))


def test_absurd_chunk_counts_are_a_limit_before_allocation():
    """2**33 declared elements in chunks of 1: refused from the numbers alone (no list, no output)."""
    data = _chunked_file({"n": 1, "chunks": [[0, 0, "copy"]]}, b"\0" * 64, [2**33], "uint8")
    with nncodec.open(data) as f:
        with pytest.raises(nncodec.LimitExceededError, match="chunks"):
            f.info()
        with pytest.raises(nncodec.LimitExceededError):
            f._tf.decode_elements(f._tf.resolve("t"), 0, 1)
    lower = nncodec.Limits(max_chunks_per_tensor=2)
    with nncodec.open(_chunked_file(*_good()), limits=lower) as f, pytest.raises(nncodec.LimitExceededError):
        f.get_tensor("t")


def test_parse_checks_the_section_length():
    params, payload, _ = _good()
    with pytest.raises(nncodec.CorruptFileError):
        chunks.parse(params, 10, len(payload) + 1, nncodec.DEFAULT_LIMITS)
    assert chunks.parse(params, 10, len(payload), nncodec.DEFAULT_LIMITS).covering(3, 9) == range(0, 3)


# ------------------------------------------------------------------------------------------ dtypes (§6.1)

TORCH_DTYPES = ["float8_e4m3fn", "float8_e5m2", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                "uint64", "bool", "float16", "bfloat16", "float32", "float64"]


@FAST
@given(st.sampled_from(TORCH_DTYPES), st.lists(st.integers(0, 5), max_size=3), st.integers(0, 2**32 - 1),
       st.sampled_from(["safetensors", "pt"]))
def test_every_torch_dtype_round_trips_through_checkpoints(tmp_path_factory, dtype, shape, seed, fmt):
    """Random bits of every dtype torch has (NaNs and all), through a .safetensors / .pt checkpoint,
    nncodec.save and nncodec.load: the same bits come back, as the same torch dtype."""
    tdt = getattr(torch, dtype)
    size = torch.empty((), dtype=tdt).element_size()
    n = int(np.prod(shape, dtype=np.int64))
    bits = np.random.default_rng(seed).integers(0, 256, n * size, dtype=np.uint8)
    if dtype == "bool":
        bits &= 1
    t = torch.from_numpy(bits).view(tdt).reshape(shape) if n else torch.empty(shape, dtype=tdt)
    path = tmp_path_factory.mktemp("ck") / f"m.{'safetensors' if fmt == 'safetensors' else 'pt'}"
    path.write_bytes(checkpoint_bytes({"t": t}, fmt))
    tensors, _, _ = read_checkpoint(path)
    back = nncodec.load(nncodec.save(tensors))["t"]
    assert back.dtype == tdt and tuple(back.shape) == tuple(shape)
    got = back.reshape(-1).view(torch.uint8).numpy().tobytes() if n else b""
    assert got == bits.tobytes()


def test_float8_is_lossless_only():
    """A quantized float8 entry is refused by the reader (§6.5), and lossy compressors leave float8 alone."""
    entry = {"dtype": "float8_e4m3fn", "shape": [2], "q": {"mode": "uniform"}, "levels": {"s": 0, "codec": "zstd", "p": {"width": 1}},
             "quantizer": {"s": 1, "codec": "f32"}}
    import zstandard

    data = assemble({"tensors": {"t": entry}}, [zstandard.ZstdCompressor().compress(b"\0\0"), np.float32(1).tobytes()])
    with pytest.raises(nncodec.FormatError, match="float dtype"):
        nncodec.open(data)


def test_a_reader_without_chunks_refuses_only_the_chunked_tensor(monkeypatch):
    """§23's version argument, replayed: with the chunk path taken away, the reader is a 2.0 reader (its raw
    decoder is `decode_whole`, whose codecs are 2.0's): the file opens, the small tensor decodes, and the
    chunked one is refused as needing a newer reader."""
    from nncodec import tensorfile

    data = _save({"w": _weights((40, 30)), "v": _weights((3,))})
    monkeypatch.setattr(tensorfile.codecs.chunks, "CODEC", "(not known)")
    monkeypatch.setattr(tensorfile.codecs.raw, "decode", tensorfile.codecs.raw.decode_whole)
    with nncodec.open(data, framework="np") as f:
        assert np.array_equal(f.get_tensor("v"), _weights((3,)))
        with pytest.raises(nncodec.UnsupportedVersionError, match="chunks"):
            f.get_tensor("w")


def test_map_sized_keeps_order_and_leaves_small_items_to_the_caller():
    """Large items may go to worker threads, small ones run in the calling thread (pooling tiny tasks
    made 2 threads slower than 1); results come back in input order either way."""
    import threading

    from nncodec import parallel

    caller = threading.get_ident()
    sizes = [10, parallel.MIN_BYTES, 5, parallel.MIN_BYTES * 2, 1]
    seen = parallel.map_sized(lambda i: (i, threading.get_ident()), list(range(5)), sizes, 2)
    assert [i for i, _ in seen] == [0, 1, 2, 3, 4]
    assert all(ident == caller for i, ident in seen if sizes[i] < parallel.MIN_BYTES)
    one_large = parallel.map_sized(lambda i: threading.get_ident(), [0, 1], [parallel.MIN_BYTES, 1], 2)
    assert one_large == [caller, caller]  # fewer than two large items: no pool at all
