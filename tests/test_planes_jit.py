"""The compiled planes loops (planes_jit.py: the C extension nncodec/codecs/_planes_c.c, and numba, the optional
extra `jit`) must give exactly the streams, words and payloads of the numpy code, and everything must work the
same when either is missing or switched off."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nncodec
from nncodec.codecs import pairs, planes_jit, raw, raw_streams, zstd
from nncodec.codecs.binary import write_uvarint
from nncodec.dtypes import DTYPES
from nncodec.errors import CorruptFileError

FLOATS = ["float32", "bfloat16"]
PROVIDERS = ["native", "numba"]


def _use(provider: str) -> None:
    """Switch to the loops of `provider` (skip the test when they are not there)."""
    if provider == "native":
        if planes_jit.NATIVE is None:
            pytest.skip("the C extension is not built")
        planes_jit.set_mode("native")
    else:
        pytest.importorskip("numba")
        planes_jit.set_mode("numba")


@pytest.fixture(autouse=True)
def _restore_mode():
    before = planes_jit.mode()
    yield
    planes_jit.set_mode(before)


def _words(name: str, n: int, seed: int) -> np.ndarray:
    """Random storage words with every special pattern (zeros, signs, NaN/inf exponents, all ones) mixed in."""
    dt = DTYPES[name]
    rng = np.random.default_rng(seed)
    w = rng.integers(0, 2**dt.bits, n, dtype=np.uint64)
    special = np.array([0, 1 << (dt.bits - 1), (1 << dt.bits) - 1, ((1 << dt.exponent_bits) - 1) << dt.mantissa_bits,
                        1, (1 << dt.mantissa_bits) - 1], dtype=np.uint64)
    w[rng.integers(0, n, special.size * 4)] = np.tile(special, 4)
    return w.astype(dt.storage)


def _numpy_split_join(words: np.ndarray, name: str) -> tuple[list[bytes], bytes]:
    planes_jit.set_mode("off")
    split, streams = raw._split(words, DTYPES[name])
    return [s.tobytes() for s in streams], raw._join(split, streams, DTYPES[name]).tobytes()


@pytest.mark.parametrize("provider", PROVIDERS)
@settings(max_examples=25, deadline=None)
@given(name=st.sampled_from(FLOATS), n=st.integers(planes_jit.MIN_WORDS, 3 * planes_jit.MIN_WORDS), seed=st.integers(0, 2**32 - 1))
def test_compiled_split_and_join_equal_numpy(provider: str, name: str, n: int, seed: int) -> None:
    words = _words(name, n, seed)
    want_streams, want_words = _numpy_split_join(words, name)
    _use(provider)
    assert planes_jit.split_float(words) is not None  # the loops are really used here
    split, streams = raw._split(words, DTYPES[name])
    assert [s.tobytes() for s in streams] == want_streams
    out = np.full(n, 7, dtype=DTYPES[name].storage)
    assert planes_jit.join_float(streams, out)
    assert out.tobytes() == want_words == words.tobytes()
    assert raw._join(split, streams, DTYPES[name]).tobytes() == want_words
    # read-only inputs (zstd output and copy streams are views of bytes or of a read-only mapping)
    ro = [np.frombuffer(s.tobytes(), np.uint8) for s in streams]
    assert raw._join(split, ro, DTYPES[name]).tobytes() == want_words


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("name", FLOATS)
def test_files_are_identical_with_and_without_the_loops(name: str, provider: str) -> None:
    _use(provider)
    rng = np.random.default_rng(5)
    values = {"w": rng.normal(0, 0.05, 3 * planes_jit.MIN_WORDS).astype(np.float32)}
    if name == "bfloat16":
        values = {"w": (values["w"].view(np.uint32) >> 16).astype(np.uint16)}
    import torch

    t = {"w": torch.from_numpy(values["w"]).view(torch.bfloat16) if name == "bfloat16" else torch.from_numpy(values["w"])}
    files = {}
    for mode in ("off", provider):
        planes_jit.set_mode(mode)
        files[mode] = nncodec.save(t)
        back = nncodec.load(files[mode])
        assert back["w"].view(torch.int16 if name == "bfloat16" else torch.int32).equal(
            t["w"].view(torch.int16 if name == "bfloat16" else torch.int32))
    assert files[provider] == files["off"]


def test_without_numba_numpy_does_the_work(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(planes_jit, "NATIVE", None)  # nor the C extension
    monkeypatch.setitem(planes_jit._state, "kernels", None)
    monkeypatch.setattr(planes_jit, "_load", lambda: False)  # as when `import numba` fails
    planes_jit.set_mode("on")
    words = _words("float32", 2 * planes_jit.MIN_WORDS, 1)
    assert planes_jit.split_float(words) is None
    split, streams = raw._split(words, DTYPES["float32"])
    assert raw._join(split, streams, DTYPES["float32"]).tobytes() == words.tobytes()
    assert planes_jit._state["kernels"] is False  # tried once, then numpy for good


def test_auto_mode_loads_only_after_enough_numpy_work(monkeypatch: pytest.MonkeyPatch) -> None:
    loads = []
    monkeypatch.setattr(planes_jit, "NATIVE", None)
    monkeypatch.setitem(planes_jit._state, "kernels", None)
    monkeypatch.setitem(planes_jit._state, "numpy_words", 0)
    monkeypatch.setattr(planes_jit, "_load", lambda: loads.append(1) or False)
    planes_jit.set_mode("auto")
    words = _words("bfloat16", planes_jit.MIN_WORDS, 2)
    assert planes_jit.split_float(words[: planes_jit.MIN_WORDS - 1]) is None and not loads  # small: not counted
    monkeypatch.setitem(planes_jit._state, "numpy_words", planes_jit.AUTO_WORDS - 2 * words.size)
    assert planes_jit.split_float(words) is None and not loads
    assert planes_jit.split_float(words) is None and loads == [1]
    planes_jit.set_mode("off")
    monkeypatch.setitem(planes_jit._state, "kernels", {"split16": None})
    assert planes_jit.split_float(words) is None  # off wins over loaded loops
    with pytest.raises(ValueError):
        planes_jit.set_mode("fast")


@pytest.fixture(params=PROVIDERS)
def loops_everywhere(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The compiled loops of each provider for calls of any size (the mode to switch back to after "off")."""
    monkeypatch.setattr(planes_jit, "MIN_WORDS", 1)
    _use(request.param)
    return planes_jit.mode()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_compiled_pairs_decode_equals_numpy(loops_everywhere: str, data: st.DataObject) -> None:
    planes_jit.set_mode(loops_everywhere)  # (each example ends with "off")
    alphabet = data.draw(st.integers(2, 256))
    n = data.draw(st.integers(1, 3000))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    stream = (rng.integers(0, alphabet, n) >> data.draw(st.integers(0, 4))).astype(np.uint8)
    counts = None if data.draw(st.booleans()) else rng.integers(0, 5, 256)  # a table from another histogram: escapes
    payload = pairs.encode(stream, counts)
    if payload is None:
        return
    assert planes_jit.kernels(n) is not None
    got = pairs.decode(payload, n, "t")
    planes_jit.set_mode("off")
    assert np.array_equal(got, stream) and np.array_equal(pairs.decode(payload, n, "t"), stream)
    assert pairs.encode(stream, counts) == payload  # the compiled packing wrote the numpy path's bytes


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 200_000), top=st.integers(0, 255), seed=st.integers(0, 2**32 - 1))
def test_compiled_sample_counts_equal_bincount(loops_everywhere: str, n: int, top: int, seed: int) -> None:
    planes_jit.set_mode(loops_everywhere)
    stream = np.random.default_rng(seed).integers(0, top + 1, n).astype(np.uint8)
    got = raw_streams._sample_counts(stream)
    assert got.dtype == np.int64 and np.array_equal(got, np.bincount(raw_streams._sample(stream)))


def _unpairs_reference(packed: bytes, table: bytes, k: int, escapes: bytes, n: int) -> tuple[int, bytes]:
    """The plain symbol-by-symbol loop unpairs stands for: (escapes used or -1 / -2, the symbols)."""
    out, e = bytearray(n), 0
    for i in range(n):
        c = packed[i >> 1] & 15 if i & 1 else packed[i >> 1] >> 4
        if c < k:
            out[i] = table[c]
        elif c != 15:
            return -1, bytes(out)
        elif e >= len(escapes):
            return -2, bytes(out)
        else:
            out[i] = escapes[e]
            e += 1
    return e, bytes(out)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_compiled_unpairs_equals_the_plain_loop_on_any_codes(loops_everywhere: str, data: st.DataObject) -> None:
    """unpairs (the C one: 16 packed bytes per SIMD step, blocks holding an escape or a bad code redone symbol
    by symbol) returns what the plain loop returns for any codes, escapes and table size, valid or not, and the
    same symbols when it succeeds."""
    n = data.draw(st.integers(0, 400))
    k = data.draw(st.integers(1, 15))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    rare = data.draw(st.sampled_from([0.0, 0.002, 0.02, 0.3]))  # share of codes >= k (escapes, bad codes)
    codes = np.where(rng.random(n + 1) < rare, rng.integers(k, 16, n + 1), rng.integers(0, k, n + 1)).astype(np.uint8)
    if n % 2 and data.draw(st.booleans()):
        codes[n] = 0
    packed = ((codes[0::2][: (n + 1) // 2] << 4) | np.resize(codes[1::2], (n + 1) // 2)).astype(np.uint8)
    table = rng.integers(0, 256, 15, dtype=np.uint8).tobytes()
    want_escapes = int(np.count_nonzero(codes[:n] == 15))
    escapes = rng.integers(0, 256, max(0, want_escapes + data.draw(st.integers(-2, 2))), dtype=np.uint8).tobytes()
    want, symbols = _unpairs_reference(packed.tobytes(), table, k, escapes, n)
    out = np.zeros(n, np.uint8)
    got = planes_jit.kernels(max(n, 1))["unpairs"](packed, np.frombuffer(table, np.uint8), k,
                                                    np.frombuffer(escapes, np.uint8), out)
    assert got == want
    if got >= 0:
        assert out.tobytes() == symbols


def _pairs_payload(k: int, table: bytes, packed: bytes, escapes: bytes = b"") -> bytes:
    frame = zstd.compress_fast(packed)
    return bytes([k]) + table + write_uvarint(len(frame)) + frame + escapes


@pytest.mark.parametrize(("payload", "count", "message"), [
    (_pairs_payload(2, b"\x05\x06", b"\x02"), 2, "outside the table"),
    (_pairs_payload(2, b"\x05\x06", b"\x0e\xf0"), 4, "outside the table"),
    (_pairs_payload(2, b"\x05\x06", b"\xf0"), 2, "escape bytes"),  # an escape code, no escape byte
    (_pairs_payload(2, b"\x05\x06", b"\xff", b"\x07"), 2, "escape bytes"),  # two codes, one byte
    (_pairs_payload(2, b"\x05\x06", b"\x01", b"\x07"), 2, "escape bytes"),  # a byte no code calls for
    (_pairs_payload(2, b"\x05\x06", b"\x11"), 1, "unused last pairs code"),
])
def test_compiled_pairs_decode_refuses_what_numpy_refuses(loops_everywhere: str, payload: bytes, count: int,
                                                           message: str) -> None:
    with pytest.raises(CorruptFileError, match=message):
        pairs.decode(payload, count, "t")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(["float32", "bfloat16", "int16", "uint8"]), n=st.integers(1000, 5000), seed=st.integers(0, 2**32 - 1))
def test_planes_with_reused_stream_buffers_round_trip(loops_everywhere: str, name: str, n: int, seed: int) -> None:
    """Decoded pairs streams go to per-thread scratch buffers (raw._stream_scratch): two tensors decoded one
    after the other, each with several pairs streams (skewed int16: both byte planes), must both be exact."""
    planes_jit.set_mode(loops_everywhere)
    from nncodec.codecs.base import DecodeContext, EncodeOptions

    dt = DTYPES[name]
    rng = np.random.default_rng(seed)
    if dt.kind == "f":
        values = (rng.standard_normal(n) * 0.05).astype(np.float32)
        words = values.view(np.uint32) if name == "float32" else (values.view(np.uint32) >> 16).astype(np.uint16)
    else:
        lo, hi = rng.choice(3, n, p=[0.7, 0.2, 0.1]), rng.choice(3, n, p=[0.6, 0.3, 0.1])  # skewed: pairs in both planes
        words = (lo + 3 + (256 * (hi + 5) if dt.itemsize == 2 else 0)).astype(dt.storage)
    first, second = words, words[::-1].copy()
    coded = [raw.encode(w, dt, EncodeOptions(prefer="speed")) for w in (first, second)]  # (speed: no ANS)
    if dt.kind != "f":
        assert all(m == "pairs" for m, _ in coded[0].params["streams"])
    ctx = DecodeContext()
    back = [raw.decode(e.codec, e.params, memoryview(e.payload), dt, w.size, ctx) for e, w in zip(coded, (first, second), strict=True)]
    assert back[0].tobytes() == first.tobytes() and back[1].tobytes() == second.tobytes()


def test_a_numba_that_does_not_import_leaves_numpy_in_charge(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    import nncodec.codecs

    monkeypatch.setattr(planes_jit, "NATIVE", None)
    monkeypatch.setitem(sys.modules, "nncodec.codecs.planes_loops", None)  # `import` of it raises ImportError
    monkeypatch.delattr(nncodec.codecs, "planes_loops", raising=False)
    monkeypatch.setitem(planes_jit._state, "kernels", None)
    planes_jit.set_mode("on")
    assert planes_jit.kernels(1 << 20) is None and planes_jit._state["kernels"] is False


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 10**7))
def test_sample_size_is_the_length_of_the_sample(n: int) -> None:
    assert raw_streams._sample_size(n) == len(range(0, n, 1 if n <= raw_streams._SAMPLE else n // raw_streams._SAMPLE))


def test_the_c_loops_refuse_buffers_of_the_wrong_size() -> None:
    """The C loops index raw memory: every length is checked first (a ValueError, never a write out of bounds)."""
    c = planes_jit.NATIVE
    if c is None:
        pytest.skip("the C extension is not built")
    b = np.zeros(8, np.uint8)
    with pytest.raises(ValueError):
        c["join32"](b, b, b, b, np.zeros(7, np.uint32))
    with pytest.raises(ValueError):
        c["join16"](b, b[:7], np.zeros(8, np.uint16))
    with pytest.raises(ValueError):
        c["split32"](np.zeros(9, np.uint32), b, b, b, b)
    with pytest.raises(ValueError):
        c["split16"](np.zeros(8, np.uint16), b, b[:4])
    with pytest.raises(ValueError):
        c["unpairs"](b[:3], b, 2, b, np.zeros(8, np.uint8))  # 3 packed bytes for 8 symbols
    with pytest.raises(ValueError):
        c["unpairs"](b, b[:1], 2, b, np.zeros(8, np.uint8))  # a table shorter than k
    with pytest.raises(ValueError):
        c["pairs"](b, np.zeros(255, np.uint8), b[:4], b)
    with pytest.raises(ValueError):
        c["count_bytes"](b, 0, np.zeros(256, np.int64))
    with pytest.raises((ValueError, TypeError, BufferError)):
        c["join32"](b, b, b, b, np.zeros(2, np.uint32)[::1].view(np.uint8)[::2])  # not contiguous
    with pytest.raises(TypeError):
        c["join16"](b, b, np.zeros(8, np.uint16).tobytes())  # not writable


def test_the_c_loops_are_the_default_when_built(monkeypatch: pytest.MonkeyPatch) -> None:
    planes_jit.set_mode("native")
    if planes_jit.NATIVE is None:
        assert planes_jit.kernels(1 << 20) is None and planes_jit.provider() == "numpy"
    else:
        assert planes_jit.kernels(1) is planes_jit.NATIVE and planes_jit.provider() == "native"
    monkeypatch.setattr(planes_jit, "NATIVE", None)
    assert planes_jit.kernels(1 << 20) is None and planes_jit.provider() == "numpy"  # native mode never loads numba


def test_ci_builds_the_c_extension() -> None:
    """CI installs with a C compiler: the C loops (the default provider) must be the ones tested there; an
    install without a compiler still works, on numpy (the other tests here)."""
    import os

    if os.environ.get("CI") and planes_jit.NATIVE is None:
        pytest.fail("nncodec/codecs/_planes_c.c was not built (setup.py, optional extension): see the pip install log")
