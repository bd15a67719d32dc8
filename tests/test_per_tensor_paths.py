"""The per-tensor fast paths of saving and loading files of many tensors (issue 13): each must give
exactly what the general path gives, and refuse what it refuses."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from concurrently import run_concurrently
from hypothesis import given, settings
from hypothesis import strategies as st

import nncodec
from nncodec.container import strict_json
from nncodec.container.format import HEADER_INDEXED
from nncodec.container.writer import Sections, _layout, lay_out
from nncodec.convert import to_numpy
from nncodec.dtypes import DTYPES
from nncodec.entries import TensorEntry
from nncodec.errors import FormatError

TORCH_DTYPES = [d for d in ("float64", "float32", "float16", "bfloat16", "int8", "int16", "int32", "int64",
                            "uint8", "bool", "float8_e4m3fn", "float8_e5m2") if hasattr(torch, d)]
_WORD = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _tensor(dtype: str, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    words = torch.randint(0, 256, (*shape, torch.empty(0, dtype=getattr(torch, dtype)).element_size()),
                          dtype=torch.uint8, generator=g)
    t = words.view(getattr(torch, dtype)).reshape(shape) if shape else words.view(getattr(torch, dtype))[..., 0]
    if dtype == "bool":
        t = t.view(torch.uint8).bitwise_and(1).view(torch.bool)
    return t


@settings(max_examples=60, deadline=None)
@given(dtype=st.sampled_from(TORCH_DTYPES), shape=st.lists(st.integers(0, 5), max_size=3).map(tuple),
       seed=st.integers(0, 2**16), layout=st.sampled_from(["contiguous", "transposed", "strided", "grad", "parameter"]))
def test_to_numpy_gives_the_tensors_words(dtype, shape, seed, layout):
    t = _tensor(dtype, shape, seed)
    if layout == "transposed" and t.dim() >= 2:
        t = t.transpose(0, 1)
    elif layout == "strided" and t.dim() >= 1:
        t = t[::2]
    elif layout in ("grad", "parameter") and t.is_floating_point() and dtype.startswith("float") and "8" not in dtype:
        t = torch.nn.Parameter(t.clone(), requires_grad=True) if layout == "parameter" else t.clone().requires_grad_(True)
    dt, values = to_numpy(t)
    assert dt is DTYPES[dtype]
    assert values.shape == tuple(t.shape)
    expected = t.detach().contiguous().view(_WORD[t.element_size()]).numpy().tobytes()
    assert np.ascontiguousarray(values).tobytes() == expected


def test_to_numpy_refuses_what_it_refused():
    with pytest.raises(nncodec.NNCodecError):
        to_numpy(torch.zeros(2, dtype=torch.complex64))
    with pytest.raises(nncodec.NNCodecError):
        to_numpy(torch.zeros(2, device="meta"))
    with pytest.raises(nncodec.NNCodecError):
        to_numpy(torch.zeros(2).to_sparse())


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**60, 2**60) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=20)


@settings(max_examples=80, deadline=None)
@given(value=json_values)
def test_strict_loads_is_json_loads(value):
    text = json.dumps(value).encode()
    assert strict_json.loads(text, 32) == json.loads(text)


@settings(max_examples=60, deadline=None)
@given(value=st.dictionaries(st.text(max_size=4), json_values, min_size=1, max_size=4), depth=st.integers(0, 3))
def test_strict_loads_refuses_a_key_given_twice_at_any_depth(value, depth):
    key = next(iter(value))
    text = json.dumps(value)
    dup = "{" + json.dumps(key) + ":0," + text[1:]
    for _ in range(depth):
        dup = '{"a":[' + dup + "]}"
    with pytest.raises(FormatError, match="twice"):
        strict_json.loads(dup.encode(), 32)


def test_strict_loads_from_many_threads():
    texts = [json.dumps({"k": list(range(i)), "n": {"x": i}}).encode() for i in range(50)]

    def work() -> None:
        for _ in range(20):
            for i, text in enumerate(texts):
                assert strict_json.loads(text, 32) == {"k": list(range(i)), "n": {"x": i}}
            with pytest.raises(FormatError):
                strict_json.loads(b'{"a":1,"a":2}', 32)

    assert not run_concurrently(work)


@given(shape=st.lists(st.integers(0, 2**20), max_size=4).map(tuple), dtype=st.sampled_from(sorted(DTYPES)))
def test_entry_sizes_are_computed_once_and_right(shape, dtype):
    e = TensorEntry("t", DTYPES[dtype], shape, {})
    assert e.numel == math.prod(shape) and e.nbytes == math.prod(shape) * DTYPES[dtype].itemsize
    assert e == TensorEntry("t", DTYPES[dtype], shape, {})
    r = replace(e, shape=(*shape, 3))
    assert r.numel == 3 * e.numel and r.nbytes == 3 * e.nbytes


@settings(max_examples=40, deadline=None)
@given(lengths=st.lists(st.integers(0, 300), max_size=6), align=st.sampled_from([1, 8, 64]), cut=st.data())
def test_plan_read_of_any_range_is_that_slice_of_the_file(lengths, align, cut):
    store = Sections()
    for i, n in enumerate(lengths):
        store.add(bytes([i + 1]) * n)
    plan = lay_out({"tensors": {}}, store, align=align)
    whole = plan.read(store, 0, plan.file_length)
    assert len(whole) == plan.file_length
    start = cut.draw(st.integers(0, plan.file_length + 5))
    stop = cut.draw(st.integers(start, plan.file_length + 5))
    assert plan.read(store, start, stop) == whole[start:stop]


def _many(n: int = 150) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    out = {f"layer{i}.w": torch.randn(3 + i % 5, generator=g) for i in range(n)}
    out["tied"] = out["layer7.w"]  # stored as an alias
    return out


def test_indexed_file_loads_the_same_after_lazy_reads():
    tensors = _many()
    data = nncodec.save(tensors)
    with nncodec.open(data) as f:
        assert f._tf._index is not None  # (>= 128 tensors: the indexed header)
        first = f.get_tensor("layer100.w")  # one entry validated before the whole file is
        assert torch.equal(first, tensors["layer100.w"])
        got = f._load_all()
    assert list(got) == list(tensors)
    assert all(torch.equal(got[k], v) for k, v in tensors.items())
    assert got["tied"] is got["layer7.w"]


def test_indexed_file_with_a_bad_entry_is_refused_on_load():
    tensors = _many()
    with nncodec.open(nncodec.save(tensors)) as f:
        body = f._tf._index.header_object()
        sections = [f._tf.container.read_section(i) for i in range(len(f._tf.container.sections))]
    body.pop("sections")
    body["tensors"]["layer120.w"]["shape"] = [-1]  # found by the full validation, not by opening
    bad = _layout(body, sections, {}, 1, HEADER_INDEXED)
    with nncodec.open(bad) as f:
        assert torch.equal(f.get_tensor("layer3.w"), tensors["layer3.w"])  # other entries still read lazily
        with pytest.raises(FormatError, match="layer120"):
            f._load_all()
    with pytest.raises(FormatError, match="layer120"):
        nncodec.load(bad)


def test_sections_keep_read_only_views_and_copy_writable_buffers():
    frozen = np.arange(200, dtype=np.uint8)
    frozen.flags.writeable = False
    writable = bytearray(b"abc")
    store = Sections()
    store.add(memoryview(frozen))
    store.add(writable)
    assert isinstance(store._memory[0], memoryview)  # no copy of a chunked tensor's read-only payload
    writable[0] = ord("z")  # a writable buffer was copied: changing it later changes nothing
    plan = lay_out({"tensors": {}}, store)
    assert plan.read(store, 0, plan.file_length).endswith(frozen.tobytes() + b"abc")
