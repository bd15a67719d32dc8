"""Whole files: save/load round trips through the public API, determinism, exact byte accounting,
lazy access, alignment, and the critical/optional rule for unknown header keys and section kinds."""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nncodec
from nncodec.components import Quantizer, QuantTensor, dequantize
from nncodec.compress import quantize_uniform
from nncodec.container import polyglot
from nncodec.container.format import PREAMBLE_SIZE
from nncodec.container.reader import Container
from nncodec.container.writer import assemble
from nncodec.dtypes import DTYPES, numpy_value_dtype

FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
shapes = st.lists(st.integers(0, 5), min_size=0, max_size=4).map(tuple)
names = st.text(min_size=0, max_size=12)


def numel(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64))


# ----------------------------------------------------------------------------------- helpers


@st.composite
def words_for(draw, dt, shape) -> np.ndarray:
    """Storage words: random bits (NaN payloads included), a constant, or specials for floats."""
    n = numel(shape)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    style = draw(st.sampled_from(["bits", "constant", "weights"]))
    if style == "bits":
        words = rng.integers(0, 256, size=n * dt.itemsize, dtype=np.uint8).view(dt.storage)
    elif style == "constant":
        words = np.full(n, rng.integers(0, 256, size=dt.itemsize, dtype=np.uint8).view(dt.storage)[0], dtype=dt.storage)
    elif dt.kind == "f":
        x = rng.normal(0, 0.05, size=n).astype(np.float32)
        x[: min(n, 4)] = [np.nan, np.inf, -0.0, -np.inf][: min(n, 4)]
        words = (x.view(np.uint32) >> 16).astype(np.uint16) if dt.name == "bfloat16" else x.astype(dt.name).view(dt.storage)
    else:
        words = rng.integers(0, 4, size=n).astype(dt.storage)
    if dt.kind == "b":
        words = (words & 1).astype(dt.storage)
    return np.ascontiguousarray(words, dtype=dt.storage).reshape(shape)


def as_input(dt, words: np.ndarray, framework: str):
    """The user-facing tensor for storage words: a torch tensor or a numpy array."""
    if framework == "torch":
        if dt.words_only:  # bfloat16, float8: torch views the storage words
            return torch.from_numpy(words.view(np.int16 if dt.itemsize == 2 else np.uint8).copy()).view(getattr(torch, dt.name))
        return torch.from_numpy(words.view(numpy_value_dtype(dt)).copy())
    return words.view(numpy_value_dtype(dt)).copy()


def storage_bytes(value) -> bytes:
    """The exact little-endian bytes of a loaded tensor (torch or numpy), for bit-exact comparison."""
    if isinstance(value, torch.Tensor):
        if value.dtype in (torch.bfloat16, torch.float8_e4m3fn, torch.float8_e5m2):
            value = value.view(torch.int16 if value.element_size() == 2 else torch.uint8)
        value = value.numpy()
    arr = np.ascontiguousarray(value)
    return arr.astype(arr.dtype.newbyteorder("<")).tobytes()


def dtype_name(value) -> str:
    if isinstance(value, torch.Tensor):
        return str(value.dtype).removeprefix("torch.")
    return value.dtype.name


@st.composite
def tensor_dicts(draw) -> tuple[dict, dict]:
    """({name: user tensor}, {name: (dtype, shape, words)}) with every dtype and both frameworks."""
    tensors, expected = {}, {}
    for name in draw(st.lists(names, min_size=0, max_size=5, unique=True)):
        framework = draw(st.sampled_from(["torch", "numpy"]))
        choices = sorted(DTYPES) if framework == "torch" else sorted(n for n, d in DTYPES.items() if not d.words_only)
        dt = DTYPES[draw(st.sampled_from(choices))]
        shape = draw(shapes)
        words = draw(words_for(dt, shape))
        tensors[name] = as_input(dt, words, framework)
        expected[name] = (dt, shape, words)
    return tensors, expected


def check_loaded(loaded: dict, expected: dict, framework: str) -> None:
    assert list(loaded) == list(expected)
    for name, (dt, shape, words) in expected.items():
        value = loaded[name]
        assert tuple(value.shape) == shape
        if framework == "np" and dt.words_only:
            assert value.dtype == dt.storage
        else:
            assert dtype_name(value) == dt.name
        assert storage_bytes(value) == words.tobytes(), name


def check_accounting(report: dict, size: int) -> None:
    """Every byte attributed exactly once: the parts add up to the file size."""
    assert report["file_bytes"] == size
    for t in report["tensors"]:
        assert t["bytes"] == sum(c["bytes"] for c in t["components"])
    total = (report["preamble_bytes"] + report["header_bytes"] + report["padding_bytes"]
             + report["optional_section_bytes"] + sum(t["bytes"] for t in report["tensors"]))
    assert total == size


def explode(data: bytes) -> tuple[dict, list[bytes], int, dict[int, str]]:
    """(header body, section payloads, align, optional kinds) of a valid file."""
    with Container(data) as c:
        body = {k: v for k, v in c.header.items() if k not in ("sections", "align")}
        return body, [c.read_section(s.index) for s in c.sections], c.align, \
            {s.index: s.kind for s in c.sections if s.kind != "data"}


# ------------------------------------------------------------------------------ round trips


@FAST
@given(tensor_dicts(), st.sampled_from(["size", "balanced", "speed"]))
def test_save_load_round_trip(td, prefer):
    tensors, expected = td
    data = nncodec.save(tensors, prefer=prefer)
    check_loaded(nncodec.load(data), expected, "pt")
    check_loaded(nncodec.load(data, framework="np"), expected, "np")
    with nncodec.open(data) as f:
        assert f.keys() == list(expected)
        check_accounting(f.info(), len(data))
        f.verify()
    assert nncodec.save(tensors, prefer=prefer) == data  # deterministic


@settings(max_examples=10, deadline=None)
@given(tensor_dicts(), st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=4))
def test_save_file_load_file_open_round_trip(tmp_path_factory, td, metadata):
    tensors, expected = td
    path = tmp_path_factory.mktemp("rt") / "model.nnc"
    size = nncodec.save_file(tensors, path, metadata=metadata)
    assert size == os.path.getsize(path)
    assert path.read_bytes() == nncodec.save(tensors, metadata)
    check_loaded(nncodec.load_file(path), expected, "pt")
    with nncodec.open(path, framework="np") as f:
        assert f.metadata() == metadata
        assert len(f) == len(expected) and all(name in f for name in expected)
        check_loaded({name: f.get_tensor(name) for name in f}, expected, "np")
        check_accounting(f.info(), size)
    with open(path, "rb") as fh, nncodec.open(fh) as f:  # a binary file object works too
        check_loaded({name: f.get_tensor(name) for name in f}, expected, "pt")
    assert not [p for p in os.listdir(path.parent) if p != "model.nnc"]  # no temporary left behind


def test_special_values_and_layouts():
    """NaN payloads, infinities, -0.0, scalars, 0-size, non-contiguous and big-endian inputs."""
    nan_payload = np.array([0x7FC00001, 0xFFC12345, 0x7F800001, 0x80000000, 0x7F800000, 0xFF800000], dtype=np.uint32)
    x = np.arange(24, dtype=np.float64).reshape(4, 6)
    tensors = {
        "nan": nan_payload.view(np.float32),
        "f64_nan": np.array([np.nan, -np.nan, -0.0, np.inf], dtype=np.float64),
        "f16": np.array([-0.0, np.inf, np.nan, 65504], dtype=np.float16),
        "bf16": torch.tensor([-0.0, float("inf"), float("nan"), 1e38], dtype=torch.bfloat16),
        "scalar": torch.tensor(-0.0),
        "np_scalar": np.float64(-0.0),
        "empty": torch.zeros(3, 0, 2),
        "bool": torch.tensor([True, False, True]),
        "transposed": x.T,
        "strided": torch.arange(20, dtype=torch.int16)[::3],
        "big_endian": np.array([1.5, -2.25, np.nan], dtype=">f4"),
        "u64": np.array([0, 2**64 - 1, 2**63], dtype=np.uint64),
    }
    out = nncodec.load(nncodec.save(tensors), framework="np")
    assert out["nan"].view(np.uint32).tolist() == nan_payload.tolist()
    assert out["f64_nan"].tobytes() == tensors["f64_nan"].tobytes()
    assert out["f16"].tobytes() == tensors["f16"].tobytes()
    assert out["bf16"].tobytes() == tensors["bf16"].view(torch.int16).numpy().tobytes()
    assert out["scalar"].shape == () and out["scalar"].tobytes() == np.float32(-0.0).tobytes()
    assert out["np_scalar"].shape == () and np.signbit(out["np_scalar"])
    assert out["empty"].shape == (3, 0, 2) and out["empty"].dtype == np.float32
    assert out["bool"].dtype == bool and out["bool"].tolist() == [True, False, True]
    assert np.array_equal(out["transposed"], x.T)
    assert out["strided"].tolist() == list(range(0, 20, 3))
    assert out["big_endian"].tobytes() == tensors["big_endian"].astype("<f4").tobytes()
    assert out["u64"].tolist() == [0, 2**64 - 1, 2**63]


# ------------------------------------------------------------------------------ quantized


@st.composite
def quant_tensors(draw) -> QuantTensor:
    dt = DTYPES[draw(st.sampled_from(["float32", "float16", "bfloat16", "float64"]))]
    shape = draw(shapes)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    mask_style = draw(st.sampled_from(["none", "zeros", "ones", "random", "rows"]))
    mask = None
    if mask_style == "zeros":
        mask = np.zeros(shape, dtype=bool)
    elif mask_style == "ones":
        mask = np.ones(shape, dtype=bool)
    elif mask_style == "random":
        mask = rng.random(shape) < draw(st.floats(0, 1))
    elif mask_style == "rows":
        mask = np.zeros(shape, dtype=bool)
        if len(shape) >= 2:
            mask[: shape[0] // 2] = True
    survivors = numel(shape) if mask is None else int(mask.sum())
    mode = draw(st.sampled_from(["uniform", "channel", "codebook"]))
    if mode == "codebook":
        k = draw(st.integers(1 if survivors else 0, 16))
        values = rng.normal(0, 1, size=k).astype(np.float32)
        levels = rng.integers(0, max(k, 1), size=survivors)
        quantizer = Quantizer("codebook", values)
    elif mode == "channel" and shape:
        axis = draw(st.integers(0, len(shape) - 1))
        quantizer = Quantizer("uniform", rng.uniform(0.001, 1, size=shape[axis]).astype(np.float32), axis)
        levels = np.round(rng.laplace(0, 3, size=survivors))
    else:
        quantizer = Quantizer("uniform", np.array([draw(st.floats(1e-4, 10))], dtype=np.float32))
        spread = draw(st.sampled_from([0, 1, 100, 2**31 - 1]))
        levels = rng.integers(-spread, spread, size=survivors, endpoint=True)
    return QuantTensor(dt, shape, np.asarray(levels, dtype=np.int64), quantizer, mask)


@FAST
@given(st.lists(quant_tensors(), min_size=1, max_size=3), st.sampled_from(["size", "balanced", "speed"]))
def test_quant_tensor_round_trip(qts, prefer):
    tensors = {f"q{i}": t for i, t in enumerate(qts)}
    data = nncodec.save(tensors, prefer=prefer)
    with nncodec.open(data, framework="np") as f:
        check_accounting(f.info(), len(data))
        for name, t in tensors.items():
            comp = f.components(name)
            assert isinstance(comp, QuantTensor)
            assert comp.dtype == t.dtype and comp.shape == t.shape
            assert comp.levels.dtype == np.int64 and np.array_equal(comp.levels, t.levels)
            assert comp.quantizer.mode == t.quantizer.mode and comp.quantizer.axis == t.quantizer.axis
            assert comp.quantizer.values.tobytes() == t.quantizer.values.tobytes()
            assert (comp.mask is None) == (t.mask is None)
            if t.mask is not None:
                assert comp.mask.shape == t.mask.shape and np.array_equal(comp.mask, t.mask)
            value = f.get_tensor(name)
            assert value.shape == t.shape
            assert storage_bytes(value) == dequantize(t).tobytes()
    assert nncodec.save(tensors, prefer=prefer) == data


def test_quantize_uniform_through_compressor_callback():
    rng = np.random.default_rng(3)
    w = rng.normal(0, 0.1, size=(8, 16)).astype(np.float32)
    keep = np.abs(w) > 0.05

    def compressor(name, value):
        if name != "w":
            return None
        return quantize_uniform(value.numpy(), DTYPES["float32"], 0.01, mask=keep)

    data = nncodec.save({"w": torch.from_numpy(w), "b": torch.ones(3)}, compressor=compressor)
    out = nncodec.load(data, framework="np")
    assert np.all(out["w"][~keep] == 0)
    assert np.max(np.abs(out["w"][keep] - w[keep])) <= 0.005 + 1e-6
    assert out["b"].tolist() == [1, 1, 1]
    with nncodec.open(data) as f:
        kinds = {c["kind"] for t in f.info()["tensors"] if t["name"] == "w" for c in t["components"]}
        assert kinds == {"mask", "levels", "quantizer"}


# ----------------------------------------------------------------------- ties and metadata


def test_tied_tensors_are_stored_once():
    w = torch.randn(64, 32)
    arr = np.random.default_rng(0).normal(size=100)
    tied = nncodec.save({"emb": w, "head": w, "x": arr, "y": arr})
    single = nncodec.save({"emb": w, "x": arr})
    assert len(tied) - len(single) < 100  # only two small alias entries more
    out = nncodec.load(tied)
    assert torch.equal(out["emb"], w) and torch.equal(out["head"], w)
    assert out["head"] is out["emb"]  # still tied after loading
    with nncodec.open(tied) as f:
        report = f.info()
        check_accounting(report, len(tied))
        by_name = {t["name"]: t for t in report["tensors"]}
        assert by_name["head"]["alias"] == "emb" and by_name["head"]["bytes"] == 0
        assert by_name["y"]["alias"] == "x"
        assert np.array_equal(f.get_tensor("y").numpy(), arr)
    # different views of one storage are distinct tensors, not aliases
    out = nncodec.load(nncodec.save({"a": w, "row": w[1], "t": w.T}))
    assert torch.equal(out["row"], w[1]) and torch.equal(out["t"], w.T)


@settings(max_examples=20, deadline=None)
@given(st.dictionaries(st.text(max_size=20), st.text(max_size=40), max_size=6))
def test_metadata_round_trip(metadata):
    data = nncodec.save({"x": np.zeros(2, dtype=np.float32)}, metadata)
    with nncodec.open(data) as f:
        assert f.metadata() == metadata
        check_accounting(f.info(), len(data))


def test_metadata_must_be_strings():
    for bad in ({"a": 1}, {1: "a"}, ["a"]):
        with pytest.raises(nncodec.BadArgumentError):
            nncodec.save({}, bad)


F32, BOOL = DTYPES["float32"], DTYPES["bool"]


def _quiet(make):
    """Build an input whose torch constructor warns (prototype or deprecated API) without the noise."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return make()


def _uniform(values, axis=None) -> Quantizer:
    return Quantizer("uniform", values, axis)


@pytest.mark.parametrize("tensors, metadata, error", [
    ({"\ud800": np.zeros(1)}, None, nncodec.BadArgumentError),  # a lone surrogate: no reader could accept it
    ({"a": np.zeros(1)}, {"k": "\udc00"}, nncodec.BadArgumentError),
    ({1: np.zeros(1)}, None, nncodec.BadArgumentError),
    ([np.zeros(1)], None, nncodec.BadArgumentError),
    ({"a": [1.0, 2.0]}, None, nncodec.UnsupportedInputError),
    ({"a": np.zeros(2, dtype=complex)}, None, nncodec.UnsupportedInputError),
    ({"a": np.array(["text"])}, None, nncodec.UnsupportedInputError),
    ({"a": np.zeros(2, dtype=object)}, None, nncodec.UnsupportedInputError),
    ({"a": torch.zeros(2, dtype=torch.complex64)}, None, nncodec.UnsupportedInputError),
    ({"a": torch.zeros(2, dtype=torch.float8_e4m3fnuz)}, None, nncodec.UnsupportedInputError),  # (e4m3fn, e5m2: format 2.1)
    ({"a": torch.zeros(2, 2).to_sparse()}, None, nncodec.UnsupportedInputError),
    ({"a": torch.empty(3, device="meta")}, None, nncodec.UnsupportedInputError),
    ({"a": _quiet(lambda: torch.nested.nested_tensor([torch.zeros(2), torch.zeros(3)]))}, None,
     nncodec.UnsupportedInputError),
    ({"a": _quiet(lambda: torch.quantize_per_tensor(torch.zeros(2), 0.1, 0, torch.qint8))}, None,
     nncodec.UnsupportedInputError),
    # component sets that would make a file no reader accepts, or that decodes to other values
    ({"a": nncodec.RawTensor(F32, (2,), np.zeros(3, np.uint32))}, None, nncodec.BadArgumentError),
    ({"a": nncodec.RawTensor(F32, (2,), np.array([1.5, 2.5]))}, None, nncodec.BadArgumentError),
    ({"a": nncodec.RawTensor(F32, (-1,), np.zeros(0, np.uint32))}, None, nncodec.BadArgumentError),
    ({"a": nncodec.RawTensor(F32, (1,) * 17, np.zeros(1, np.uint32))}, None, nncodec.BadArgumentError),
    ({"a": nncodec.RawTensor(BOOL, (2,), np.array([0, 2], np.uint8))}, None, nncodec.BadArgumentError),
    ({"a": QuantTensor(F32, (2,), np.array([0.5, 1.7]), _uniform(np.ones(1, np.float32)))}, None, nncodec.BadArgumentError),
    ({"a": QuantTensor(F32, (2,), np.array([1, 1]), _uniform([0.1]))}, None, nncodec.BadArgumentError),
    ({"a": QuantTensor(F32, (2,), np.array([1, 1, 1]), _uniform(np.ones(1, np.float32)))}, None, nncodec.BadArgumentError),
    ({"a": QuantTensor(F32, (2,), np.array([2**31, 1]), _uniform(np.ones(1, np.float32)))}, None, nncodec.BadArgumentError),
    ({"a": QuantTensor(F32, (2, 3), np.zeros(6, np.int64), _uniform(np.ones(2, np.float32), 1))}, None,
     nncodec.BadArgumentError),
    ({"a": QuantTensor(F32, (2,), np.zeros(2, np.int64), _uniform(np.zeros(1, np.float32)))}, None, nncodec.BadArgumentError),
    ({"a": QuantTensor(F32, (2,), np.array([0, 3]), Quantizer("codebook", np.ones(3, np.float32)))}, None,
     nncodec.BadArgumentError),
    ({"a": QuantTensor(DTYPES["int32"], (2,), np.zeros(2, np.int64), _uniform(np.ones(1, np.float32)))}, None,
     nncodec.BadArgumentError),
    ({"a": QuantTensor(F32, (3,), np.zeros(2, np.int64), _uniform(np.ones(1, np.float32)), np.ones(2, bool))}, None,
     nncodec.BadArgumentError),
])
def test_save_refuses_what_it_cannot_write(tensors, metadata, error):
    with pytest.raises(error):
        nncodec.save(tensors, metadata)


def test_compressor_must_return_components():
    with pytest.raises(nncodec.BadArgumentError):
        nncodec.save({"a": np.zeros(2)}, compressor=lambda name, value: 5)
    with pytest.raises(nncodec.BadArgumentError):
        nncodec.save({"a": np.zeros(2)}, prefer="fastest")


def test_numpy_integer_shapes_and_axes_are_accepted():
    t = QuantTensor(F32, (np.int64(2), 3), np.arange(6), Quantizer("uniform", np.ones(2, np.float32), np.int64(0)))
    out = nncodec.load(nncodec.save({"a": t}), framework="np")
    assert out["a"].tolist() == [[0, 1, 2], [3, 4, 5]]


def test_empty_file_round_trips():
    data = nncodec.save({})
    assert nncodec.load(data) == {}
    with nncodec.open(data) as f:
        check_accounting(f.info(), len(data))


def test_load_into_module():
    src, dst = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    blob = nncodec.save(src.state_dict())
    path = io.BytesIO(blob)
    with nncodec.open(path) as f:
        assert sorted(f.keys()) == ["bias", "weight"]
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "m.nnc")
        nncodec.save_file(src.state_dict(), p)
        nncodec.load_into(dst, p)
    assert torch.equal(dst.weight, src.weight) and torch.equal(dst.bias, src.bias)


# --------------------------------------------------------------------------------- lazy access


class RecordingFile(io.BytesIO):
    """A file object that records every (offset, length) read."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reads: list[tuple[int, int]] = []

    def read(self, n: int | None = -1) -> bytes:
        pos = self.tell()
        out = super().read(n)
        self.reads.append((pos, len(out)))
        return out


def test_open_reads_only_header_and_get_tensor_only_its_sections():
    """Opening reads the preamble and header plus a bounded probe (the polyglot check: the first 1 KiB
    and the last 64 KiB), never the bulk of the data; get_tensor reads exactly that tensor's sections."""
    rng = np.random.default_rng(5)
    tensors = {f"t{i}": rng.integers(0, 2**32, size=(64, 64), dtype=np.uint32).view(np.float32) for i in range(12)}
    w = rng.normal(0, 0.1, size=(8, 8)).astype(np.float32)
    tensors["q"] = quantize_uniform(w, DTYPES["float32"], 0.02, mask=np.abs(w) > 0.1)
    data = nncodec.save(tensors)
    probe = polyglot.PDF_HEAD + polyglot.ZIP_TAIL
    assert len(data) > 2 * probe  # big enough that opening cannot touch everything
    with Container(data) as c:
        header_end = PREAMBLE_SIZE + c.preamble.header_length
        spans = {name: [(c.sections[p["s"]].offset, c.sections[p["s"]].length)
                        for key, p in entry.items() if isinstance(p, dict) and "s" in p]
                 for name, entry in c.header["tensors"].items()}
    fh = RecordingFile(data)
    with nncodec.open(fh, framework="np") as f:
        allowed = max(header_end, polyglot.PDF_HEAD)
        for off, n in fh.reads:
            assert off + n <= allowed or off >= len(data) - polyglot.ZIP_TAIL, (off, n)
        assert sum(n for _, n in fh.reads) <= header_end + probe
        for name in ["t2", "q", "t0", "t11"]:
            fh.reads.clear()
            f.get_tensor(name)
            assert fh.reads, name
            for off, n in fh.reads:  # every read lies inside one of this tensor's own sections
                assert any(s <= off and off + n <= s + ln for s, ln in spans[name]), (name, off, n)
            assert sum(n for _, n in fh.reads) == sum(ln for _, ln in spans[name])


# ---------------------------------------------------------------------------------- alignment


@settings(max_examples=15, deadline=None)
@given(tensor_dicts(), st.sampled_from([2, 8, 64, 4096]))
def test_alignment_round_trip_with_zero_padding(td, align):
    tensors, expected = td
    data = nncodec.save(tensors, align=align)
    check_loaded(nncodec.load(data), expected, "pt")
    with Container(data) as c:
        assert c.align == align
        for s in c.sections:
            assert s.offset % align == 0
        for start, n in c.padding:
            assert data[start : start + n] == bytes(n)
    with nncodec.open(data) as f:
        check_accounting(f.info(), len(data))
    assert nncodec.save(tensors, align=align) == data


def test_bad_alignment_argument():
    for align in (0, 3, 2**17, 2.0, "4", True):
        with pytest.raises(nncodec.NNCodecError):
            nncodec.save({"a": np.zeros(2)}, align=align)


# ------------------------------------------------------------------------ critical vs optional


def _sample_file() -> bytes:
    return nncodec.save({"w": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.ones(3, dtype=np.int8)},
                        {"k": "v"})


def test_explode_rebuild_is_identity():
    data = _sample_file()
    body, sections, align, kinds = explode(data)
    assert assemble(body, sections, align=align, kinds=kinds) == data


def test_unknown_optional_keys_and_section_kinds_are_skipped():
    data = _sample_file()
    body, sections, align, kinds = explode(data)
    body["x-vendor"] = {"anything": [1, 2, {"deep": None}]}
    body["tensors"]["w"]["x-note"] = "skip me"
    body["tensors"]["w"]["raw"]["x-hint"] = 3
    sections.append(b"thumbnail bytes")
    kinds[len(sections) - 1] = "x-thumbnail"
    modified = assemble(body, sections, align=4, kinds=kinds)
    out = nncodec.load(modified, framework="np")
    assert out["w"].tolist() == np.arange(12, dtype=np.float32).reshape(3, 4).tolist()
    with nncodec.open(modified) as f:
        report = f.info()
        check_accounting(report, len(modified))
        assert report["optional_section_bytes"] == len(b"thumbnail bytes")
        assert f.metadata() == {"k": "v"}
        f.verify()


@pytest.mark.parametrize("where", ["header", "tensor", "part", "q"])
def test_unknown_critical_keys_are_refused(where):
    tensors = {"w": np.arange(12, dtype=np.float32),
               "q": quantize_uniform(np.ones(4, dtype=np.float32), DTYPES["float32"], 0.5)}
    body, sections, align, kinds = explode(nncodec.save(tensors))
    target = {"header": body, "tensor": body["tensors"]["w"], "part": body["tensors"]["w"]["raw"],
              "q": body["tensors"]["q"]["q"]}[where]
    target["future"] = 1
    with pytest.raises(nncodec.UnsupportedVersionError):
        nncodec.load(assemble(body, sections, align=align, kinds=kinds))


def test_unknown_critical_section_kind_is_refused():
    body, sections, align, _ = explode(_sample_file())
    sections.append(b"new stuff")
    with pytest.raises(nncodec.UnsupportedVersionError):
        nncodec.load(assemble(body, sections, align=align, kinds={len(sections) - 1: "index"}))
