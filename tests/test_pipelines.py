"""The throughput paths of issue 13: large tensors coded ahead of the one being written (tensorwriter),
the next tensor decoded while the last is written (safetensors_out), and balanced's ANS floor. Whatever
the threads and look-ahead, the bytes and the order are those of a single-threaded run."""

from __future__ import annotations

import io

import numpy as np
import pytest
import safetensors.numpy
from hypothesis import given, settings
from hypothesis import strategies as st

import nncodec
from nncodec import safetensors_out, tensorwriter
from nncodec.api import compress_tensors
from nncodec.codecs import raw, raw_streams
from nncodec.codecs.base import EncodeOptions
from nncodec.dtypes import DTYPES
from nncodec.tensorwriter import Alias, encode_file

CHUNK = 1000  # chunk_bytes: tensors over it are "large" (chunked, coded ahead)


def _weights(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.05, n).astype(np.float32)


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.sampled_from([3, 40, 200, 300, 700, 2000]), min_size=1, max_size=12),
       alias_at=st.integers(0, 12), ahead=st.sampled_from([1, 1500, 64 * 2**20]))
def test_coding_ahead_keeps_order_and_bytes(sizes: list[int], alias_at: int, ahead: int) -> None:
    tensors = {f"t{i}": _weights(n, i) for i, n in enumerate(sizes)}
    comps: dict = dict(compress_tensors(tensors))
    if alias_at < len(sizes):  # an alias in the middle makes the writer drain what it coded ahead
        items = list(comps.items())
        items.insert(alias_at, ("tied", Alias("t0")))
        comps = dict(items)
    saved = tensorwriter._AHEAD_BYTES
    try:
        tensorwriter._AHEAD_BYTES = ahead
        files = [encode_file(comps, options=EncodeOptions(threads=t, chunk_bytes=CHUNK)) for t in (1, 2, 3)]
    finally:
        tensorwriter._AHEAD_BYTES = saved
    assert files[0] == files[1] == files[2]
    got = nncodec.load(files[1], framework="np", threads=2)
    assert list(got) == list(comps)
    for name, value in tensors.items():
        assert got[name].tobytes() == value.tobytes()


@pytest.mark.parametrize("ahead", [1, 3000, 64 * 2**20])
def test_safetensors_output_is_the_same_when_decoding_ahead(tmp_path, monkeypatch, ahead: int) -> None:
    tensors = {"a": _weights(2000, 1), "b": _weights(5, 2), "c": _weights(700, 3),
               "d": np.arange(600, dtype=np.int64).reshape(20, 30)}
    data = encode_file(compress_tensors(tensors), options=EncodeOptions(chunk_bytes=CHUNK))
    monkeypatch.setattr(safetensors_out, "_AHEAD_BYTES", ahead)
    outputs = []
    for threads in (1, 2):
        out = io.BytesIO()
        with nncodec.open(data, framework="np", threads=threads) as f:
            safetensors_out.write_safetensors(f, list(f.keys()), out, None)
        outputs.append(out.getvalue())
    assert outputs[0] == outputs[1]
    back = safetensors.numpy.load(outputs[0])
    for name, value in tensors.items():
        assert back[name].tobytes() == value.tobytes()


def _stream_methods(enc) -> list[str]:
    return [m for m, _ in enc.params["streams"]] if enc.codec == "planes" else []


def test_balanced_takes_ans_only_where_it_saves_the_floor(monkeypatch) -> None:
    """60 bfloat16 weights: ANS saves ~10 bytes on the exponents, more than 1/64 of the tensor but under
    ANS_MIN_SAVING, so balanced keeps a fast coding (without the floor it takes ANS); size is not larger."""
    words = (_weights(60, 7) * 20).view(np.uint32) >> np.uint32(16)
    words = words.astype(np.uint16)
    dt = DTYPES["bfloat16"]
    balanced = raw.encode(words, dt, EncodeOptions(threads=1))
    assert "ans" not in _stream_methods(balanced)
    assert len(raw.encode(words, dt, EncodeOptions(prefer="size", threads=1)).payload) <= len(balanced.payload)
    monkeypatch.setattr(raw_streams, "ANS_MIN_SAVING", 0)  # without the floor, the relative margin alone takes ANS
    unfloored = raw.encode(words, dt, EncodeOptions(threads=1))
    assert "ans" in _stream_methods(unfloored) and len(unfloored.payload) < len(balanced.payload)
