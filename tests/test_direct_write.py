"""Decoding to .safetensors with chunked tensors written chunk by chunk by the decoding workers
(chunk_reads.write_chunks, safetensors_out): the file must be byte for byte the one the in-memory path
writes, for any dtype, chunk size, thread count and mix of chunked and whole tensors, and a damaged chunk
must be refused without leaving a file behind."""

from __future__ import annotations

import io

import numpy as np
import pytest
import safetensors.numpy
from hypothesis import given, settings
from hypothesis import strategies as st

import nncodec
from nncodec import chunk_reads, safetensors_out
from nncodec.api import compress_tensors
from nncodec.codecs.base import EncodeOptions
from nncodec.errors import CorruptFileError
from nncodec.tensorwriter import Alias, encode_file


def _values(dtype: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype in ("float32", "float16", "float64"):
        return rng.normal(0, 0.05, n).astype(dtype)
    return rng.integers(-50, 50, n).astype(dtype)


def _in_memory(data: bytes, threads: int) -> bytes:
    out = io.BytesIO()  # not a regular file: every tensor decoded whole (the path before direct writes)
    with nncodec.open(data, framework="np", threads=threads) as f:
        safetensors_out.write_safetensors(f, list(f.keys()), out, {"k": "v"})
    return out.getvalue()


@settings(max_examples=30, deadline=None)
@given(dtypes=st.lists(st.sampled_from(["float32", "float16", "int8", "int64", "float64"]), min_size=1, max_size=6),
       sizes=st.lists(st.integers(0, 3000), min_size=6, max_size=6), chunk=st.sampled_from([64, 1000, 5000]),
       threads=st.sampled_from([1, 2, 3]), tie=st.booleans())
def test_direct_writes_give_the_in_memory_bytes(tmp_path_factory: pytest.TempPathFactory, dtypes: list[str],
                                                sizes: list[int], chunk: int, threads: int, tie: bool) -> None:
    tensors = {f"t{i}": _values(d, sizes[i], i) for i, d in enumerate(dtypes)}
    comps: dict = dict(compress_tensors(tensors))
    if tie:
        comps["tied"] = Alias("t0")
    data = encode_file(comps, metadata={"k": "v"}, options=EncodeOptions(chunk_bytes=chunk))
    path = tmp_path_factory.mktemp("direct") / "out.safetensors"
    with nncodec.open(data, framework="np", threads=threads) as f:
        chunked = [n for n in f.keys() if safetensors_out._chunked(f, n) is not None]
        written = safetensors_out.write_file(f, path)
    assert chunked or all(v.nbytes <= chunk for v in tensors.values())  # (the direct path is taken wherever it can be)
    got = path.read_bytes()
    assert written == len(got) and got == _in_memory(data, threads)
    back = safetensors.numpy.load(got)
    for name, value in tensors.items():
        assert back[name].tobytes() == value.tobytes()
    if tie:
        assert back["tied"].tobytes() == tensors["t0"].tobytes()


def test_a_damaged_chunk_is_refused_and_leaves_no_file(tmp_path) -> None:
    tensors = {"w": _values("float32", 5000, 1)}
    data = bytearray(encode_file(dict(compress_tensors(tensors)), options=EncodeOptions(chunk_bytes=4000)))
    with nncodec.open(bytes(data), framework="np") as f:
        tf = f._open_file()
        e = tf.resolve("w")
        table = tf.chunk_table(e)
        assert table is not None and table.count > 2
        at = tf.container.sections[e.parts["raw"].section].offset + table.offsets[2] + 3
    data[at] ^= 0x40
    path = tmp_path / "out.safetensors"
    with nncodec.open(bytes(data), framework="np", threads=2) as f, pytest.raises(CorruptFileError, match="chunk 2"):
        safetensors_out.write_file(f, path)
    assert list(tmp_path.iterdir()) == []


def test_write_chunks_refuses_a_tensor_that_is_not_chunked() -> None:
    data = encode_file(dict(compress_tensors({"w": _values("float32", 10, 1)})))
    with nncodec.open(data, framework="np") as f:
        tf = f._open_file()
        with pytest.raises(ValueError, match="not chunked"):
            chunk_reads.write_chunks(tf, tf.resolve("w"), 0, 0)


@settings(max_examples=40, deadline=None)
@given(pieces=st.lists(st.binary(max_size=300), max_size=8), nest=st.integers(0, 8))
def test_parts_are_their_joined_bytes(pieces: list[bytes], nest: int) -> None:
    import zlib

    from nncodec.codecs.base import Parts, payload_crc32

    views = [memoryview(p) if i % 2 else p for i, p in enumerate(pieces)]
    parts = Parts([Parts(views[:nest]), *views[nest:]])  # nested Parts are flattened
    want = b"".join(pieces)
    assert len(parts) == len(want) and bytes(parts.joined()) == want and parts.joined().readonly
    assert parts.crc32() == payload_crc32(parts) == zlib.crc32(want) == payload_crc32(want)


@settings(max_examples=15, deadline=None)
@given(sizes=st.lists(st.integers(0, 4000), min_size=1, max_size=5), chunk=st.sampled_from([256, 1000, 6000]),
       threads=st.sampled_from([1, 2]))
def test_streamed_files_with_chunk_pieces_equal_the_in_memory_file(tmp_path_factory: pytest.TempPathFactory,
                                                                   sizes: list[int], chunk: int, threads: int) -> None:
    """A chunked tensor's payload reaches the streaming writer in pieces (base.Parts, written one by one to the
    spool): the file must be byte for byte encode_file's, which joins them."""
    from nncodec.tensorwriter import encode_to_path

    tensors = {f"t{i}": _values("float32" if i % 2 else "int64", n, i) for i, n in enumerate(sizes)}
    options = EncodeOptions(threads=threads, chunk_bytes=chunk)
    path = tmp_path_factory.mktemp("parts") / "a.nnc"
    encode_to_path(iter(compress_tensors(tensors).items()), path, None, options)
    assert path.read_bytes() == encode_file(dict(compress_tensors(tensors)), None, options)
    with nncodec.open(str(path), framework="np") as f:
        assert all(f.get_tensor(n).tobytes() == v.tobytes() for n, v in tensors.items())


@settings(max_examples=30, deadline=None)
@given(payloads=st.lists(st.binary(max_size=5000), max_size=12), ahead=st.sampled_from([1, 3000, 2**20]),
       split=st.booleans())
def test_the_spool_writer_thread_keeps_every_section(payloads: list[bytes], ahead: int, split: bool) -> None:
    """Sections spooled by the writer thread (at most `ahead` bytes waiting) read back exactly, in order."""
    import tempfile

    from nncodec.codecs.base import Parts
    from nncodec.container import writer

    saved = writer.SPOOL_AHEAD_BYTES
    writer.SPOOL_AHEAD_BYTES = ahead
    try:
        with tempfile.TemporaryFile() as spool:
            store = writer.Sections(spool)
            for p in payloads:
                store.add(Parts([p[: len(p) // 2], memoryview(p)[len(p) // 2 :]]) if split else p)
            got = [bytes(store.read(i, 0, len(p))) for i, p in enumerate(payloads)]
            store.close()
    finally:
        writer.SPOOL_AHEAD_BYTES = saved
    assert got == payloads


def test_a_failed_spool_write_is_raised_and_the_writer_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    from nncodec.container import writer

    def fail(fd: int, pieces: list, offset: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer, "_pwrite_pieces", fail)
    with tempfile.TemporaryFile() as spool:
        store = writer.Sections(spool)
        store.add(b"abc")
        with pytest.raises(OSError, match="No space"):
            store.drain()
        store.close()
        assert store._writer is None


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 5000), chunk=st.sampled_from([64, 1000, 6000]), threads=st.sampled_from([1, 2]),
       rows=st.tuples(st.integers(0, 60), st.integers(0, 60)))
def test_chunks_of_a_mapped_file_are_read_by_pread(tmp_path_factory: pytest.TempPathFactory, n: int, chunk: int,
                                                   threads: int, rows: tuple[int, int]) -> None:
    """From a file on disk each chunk is copied into the worker's reused buffer (Container.read_range_into), not
    read through the mapping: whole tensors, row slices and .safetensors output must be exact, and a damaged
    chunk still refused."""
    values = _values("float32", n * 4, 3).reshape(n, 4)
    data = encode_file(dict(compress_tensors({"w": values})), options=EncodeOptions(chunk_bytes=chunk))
    folder = tmp_path_factory.mktemp("mapped")
    (folder / "w.nnc").write_bytes(data)
    a, b = min(rows), max(rows)
    with nncodec.open(folder / "w.nnc", framework="np", threads=threads) as f:
        assert f.get_tensor("w").tobytes() == values.tobytes()
        assert f.get_slice("w")[a:b].tobytes() == values[a:b].tobytes()
        safetensors_out.write_file(f, folder / "w.safetensors")
    assert safetensors.numpy.load_file(str(folder / "w.safetensors"))["w"].tobytes() == values.tobytes()
    with nncodec.open(data, framework="np") as f:
        tf = f._open_file()
        e = tf.resolve("w")
        table = tf.chunk_table(e)
        at = None if table is None else tf.container.sections[e.parts["raw"].section].offset + table.offsets[-2]
    if at is not None and table.offsets[-1] > table.offsets[-2]:
        bad = bytearray(data)
        bad[at] ^= 1
        (folder / "bad.nnc").write_bytes(bytes(bad))
        with nncodec.open(folder / "bad.nnc", framework="np", threads=threads) as f, pytest.raises(CorruptFileError):
            f.get_tensor("w")
