"""The fast paths of opening a file of many tensors must give what the plain paths give: the bulk parse of
an indexed header's entries (strict_json.loads_each) equals `loads` record by record, including the error
of the first bad record, and entries built without the dataclass constructor equal constructed ones."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nncodec
from nncodec.codecs import ans, pairs, zstd
from nncodec.codecs import raw_streams as rs
from nncodec.codecs.base import Encoded, EncodeOptions
from nncodec.container import strict_json
from nncodec.dtypes import DTYPES
from nncodec.entries import Part, TensorEntry, _new_part, _new_raw_entry
from nncodec.errors import NNCodecError

_scalars = st.none() | st.booleans() | st.integers(-2**60, 2**60) | st.text(max_size=6)
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=12)
# what a hostile or damaged index may hold instead of a canonical entry
_MUTATIONS = [b" ", b"\n", b"{", b"}", b"[", b"]", b'"', b"\\", b",", b"1", b"NaN", b"-Infinity", b'"\\ud800"',
              b'{"a":1,"a":2}', b"\xc3\xa9", b"\xff", b'"\\u00e9"', b"[" * 40 + b"]" * 40, b"tru", b"1e400"]


def _outcome(records: list[bytes], use_bulk: bool, depth: int) -> list:
    """The parsed records up to the first error, then that error's type and message."""
    got: list = []
    try:
        if use_bulk:
            ends = np.cumsum([len(r) for r in records]).tolist() if records else []
            for obj in strict_json.loads_each(b"".join(records), ends, depth):
                got.append(obj)
        else:
            for i, r in enumerate(records):
                got.append(strict_json.loads(r, depth, f"tensor entry {i}"))
    except NNCodecError as exc:
        got.append((type(exc).__name__, str(exc)))
    return got


@settings(max_examples=400, deadline=None)
@given(values=st.lists(_values, max_size=8), data=st.data())
def test_bulk_entry_parse_equals_loads_record_by_record(values: list, data: st.DataObject) -> None:
    records = [json.dumps(v, separators=(",", ":")).encode() for v in values]
    for _ in range(data.draw(st.integers(0, 3))):  # damage: insert, cut or move a boundary
        if not records:
            break
        i = data.draw(st.integers(0, len(records) - 1))
        r = records[i]
        at = data.draw(st.integers(0, len(r)))
        how = data.draw(st.sampled_from(["insert", "cut", "split"]))
        if how == "insert":
            records[i] = r[:at] + data.draw(st.sampled_from(_MUTATIONS)) + r[at:]
        elif how == "cut":
            records[i] = r[:at]
        elif i + 1 < len(records):  # the boundary between two records moves
            records[i], records[i + 1] = r[:at], r[at:] + records[i + 1]
    depth = data.draw(st.sampled_from([0, 1, 3, 30]))
    assert _outcome(records, True, depth) == _outcome(records, False, depth)


def test_bulk_entry_parse_refuses_a_deep_record_like_loads() -> None:
    records = [b'{"a":1}', b"[" * 50 + b"]" * 50]
    assert _outcome(records, True, 30) == _outcome(records, False, 30)
    assert _outcome(records, True, 30)[-1][0] == "LimitExceededError"


def test_fast_entries_equal_constructed_ones() -> None:
    dt = DTYPES["bfloat16"]
    part = _new_part("raw", 3, "planes", {"split": "float"})
    assert part == Part("raw", 3, "planes", {"split": "float"})
    e = _new_raw_entry("w", dt, (4, 0, 5), 0, part)
    ref = TensorEntry("w", dt, (4, 0, 5), {"raw": part})
    assert e == ref and (e.numel, e.nbytes) == (ref.numel, ref.nbytes)
    e = _new_raw_entry("w", dt, (4, 5), 20, part)
    assert (e.numel, e.nbytes, e.quant_mode, e.vae_group) == (20, 40, None, None)
    with pytest.raises(AttributeError):
        e.name = "x"  # still frozen


def test_a_file_of_many_tensors_opens_and_loads_exactly() -> None:
    """Over index.MIN_TENSORS tensors (an indexed header: the bulk parse) of mixed sizes and dtypes."""
    import torch

    rng = np.random.default_rng(0)
    tensors = {f"t{i}": torch.from_numpy((rng.standard_normal(int(rng.integers(1, 3000))) * 0.05).astype(np.float32))
               for i in range(200)}
    tensors["b"] = tensors["t0"].to(torch.bfloat16)
    tensors["i"] = torch.arange(7, dtype=torch.int16)
    out = nncodec.load(nncodec.save(tensors))
    assert list(out) == list(tensors)
    for k, v in tensors.items():
        assert out[k].dtype == v.dtype and torch.equal(out[k].view(-1).view(torch.uint8), v.view(-1).view(torch.uint8))


@settings(max_examples=500, deadline=None)
@given(text=st.lists(st.sampled_from([b"[", b"]", b"{", b"}", b'"', b"\\", b"a", b",", b":", b"1"]), max_size=80))
def test_nesting_depth_short_path_equals_the_chunked_scan(text: list) -> None:
    blob = b"".join(text)
    assert strict_json.nesting_depth(blob) == strict_json._nesting_depth_chunked(blob)
    plain = blob.replace(b"\\", b"")  # (the short path: no backslash)
    assert strict_json.nesting_depth(plain) == strict_json._nesting_depth_chunked(plain)


def _payloads(coded: list) -> list:
    return [(e.codec, bytes(e.payload), e.params, e.slow) for e in coded]


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_lazy_stream_statistics_choose_what_the_eager_ones_chose(data: st.DataObject) -> None:
    """raw_streams.encode_streams (entropies only where a choice needs them; short streams by their distinct-symbol
    count) codes every stream as the eager reference does, in every mode: the file bytes do not change."""
    from nncodec.codecs.base import EncodeOptions

    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    streams = []
    for _ in range(data.draw(st.integers(1, 4))):
        n = data.draw(st.sampled_from([0, 1, 5, 100, 249, 250, 251, 255, 256, 300, 1000, 5000]))
        kind = data.draw(st.sampled_from(["uniform", "skewed", "few", "wide16"]))
        if kind == "uniform":
            s = rng.integers(0, 256, n).astype(np.uint8)
        elif kind == "skewed":
            s = np.clip(rng.normal(120, data.draw(st.sampled_from([0.5, 2.0, 20.0])), n), 0, 255).astype(np.uint8)
        elif kind == "few":
            s = rng.choice(np.arange(data.draw(st.integers(1, 20)), dtype=np.uint8), n)
        else:
            s = rng.integers(0, data.draw(st.sampled_from([3, 300, 65536])), n).astype(np.uint16)
        streams.append(s)
    prefer = data.draw(st.sampled_from(["balanced", "speed", "size"]))
    pairs_ok = data.draw(st.booleans())
    opts = EncodeOptions(prefer=prefer)
    assert _payloads(rs.encode_streams(streams, opts, pairs_ok)) == \
        _payloads(_encode_streams_eager(streams, opts, pairs_ok))


def test_short_streams_are_never_pairs_candidates() -> None:
    """The short-stream path skips `pairs`, which is only tried from PAIRS_MIN_STREAM symbols on."""

    assert rs._FEW_SYMBOLS < rs.PAIRS_MIN_STREAM


@pytest.mark.parametrize("name", ["float32", "bfloat16"])
def test_planes_with_a_constant_ans_stream_decode_like_numpy(name: str) -> None:
    """A constant stream decodes to a broadcast (not contiguous) array: the C join, which takes the copy
    streams as slices of the payload, must hand over to the numpy join with the same words."""
    from nncodec.codecs import ans, planes_jit, raw
    from nncodec.codecs.base import DecodeContext

    dt, n = DTYPES[name], 300
    rng = np.random.default_rng(1)
    const = ans.encode_with_table(np.full(n, 0x3F, dtype=np.int64))  # (the last stream: sign + top mantissa)
    rest = [rng.integers(100, 130, n, dtype=np.uint8).tobytes() for _ in range(dt.itemsize - 1)]
    params = {"split": "float", "streams": [["copy", n]] * len(rest) + [["ans", len(const)]]}
    payload = memoryview(b"".join(rest) + const)
    before = planes_jit.mode()
    try:
        got = raw.decode_whole("planes", params, payload, dt, n, DecodeContext())
        planes_jit.set_mode("off")
        want = raw.decode_whole("planes", params, payload, dt, n, DecodeContext())
    finally:
        planes_jit.set_mode(before)
    assert got.dtype == want.dtype and np.array_equal(got, want)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 70_000), step=st.integers(1, 40), top=st.integers(0, 255), seed=st.integers(0, 2**32 - 1))
def test_c_count_bytes_adds_the_histogram_of_every_step_th_byte(n: int, step: int, top: int, seed: int) -> None:
    """count_bytes (four interleaved histograms from 4096 samples on) adds np.bincount(stream[::step]) to the
    counts it is given, for any length and step."""
    from nncodec.codecs import planes_jit

    if planes_jit.NATIVE is None:
        pytest.skip("the C extension is not built")
    rng = np.random.default_rng(seed)
    stream = rng.integers(0, top + 1, n).astype(np.uint8)
    counts = rng.integers(0, 1000, 256).astype(np.int64)
    want = counts + np.bincount(stream[::step], minlength=256)
    planes_jit.NATIVE["count_bytes"](stream, step, counts)
    assert np.array_equal(counts, want)
    k = planes_jit.NATIVE["distinct_bytes"](stream)
    assert k == np.count_nonzero(np.bincount(stream, minlength=256))



@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16", "int8", "bool", "float8_e4m3fn", "uint16"])
@pytest.mark.parametrize("shape", [(), (0,), (3, 0), (5,), (2, 3, 4)])
def test_the_load_converter_equals_words_to_torch(dtype: str, shape: tuple) -> None:
    import torch

    from nncodec.convert import torch_converter, words_to_torch

    if not hasattr(torch, dtype):
        pytest.skip(f"this torch has no {dtype}")
    dt = DTYPES[dtype]
    n = int(np.prod(shape))
    words = np.random.default_rng(0).integers(0, 2, n).astype(dt.storage)
    for w in (words, words.copy()[::1], np.frombuffer(words.tobytes(), dtype=dt.storage)):  # (the last: read-only)
        a, b = torch_converter("cpu")(dt, shape, w), words_to_torch(dt, shape, w)
        assert a.dtype == b.dtype and a.shape == b.shape and a.stride() == b.stride()
        if n:
            assert torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8))


# --- the eager stream coding of the session start (the reference the lazy one must equal) -------------------------
def _encode_streams_eager(streams: list[np.ndarray], options: EncodeOptions, try_pairs: bool = True) -> list[Encoded]:
    """raw_streams.encode_streams as it was before session 8: every stream's entropy estimate computed."""
    if options.prefer == "size":
        return rs._choose_streams([rs._encode_stream_exhaustive(s, options) for s in streams], options)
    cheap = [_encode_stream_cheap(s, try_pairs) for s in streams]
    fast = [f for f, _ in cheap]
    if options.prefer == "speed":
        return fast
    fast_total = sum(len(f.payload) for f in fast)
    gains = [len(f.payload) - est for f, est in cheap]
    if sum(g for g in gains if g > 0) < max(rs.BALANCED_MARGIN * fast_total, rs.ANS_MIN_SAVING):
        return fast
    coded = [(f, Encoded("ans", ans.encode_with_table(s.astype(np.int64)), slow=True) if g > 0 else None)
             for s, (f, _), g in zip(streams, cheap, gains, strict=True)]
    return rs._choose_streams(coded, options)


def _encode_stream_cheap(stream: np.ndarray, try_pairs: bool = True) -> tuple[Encoded, float]:
    """balanced / speed: (the coding chosen from the histogram of a sample instead of trying every coder,
    the estimated size of its ANS coding: n H / 8 plus a count table). A near-random stream is copied;
    any other is zstd with Huffman literals and (almost) no matches, zstd.compress_fast (or copied, if
    that is not smaller; a 1-byte stream whose 15 commonest symbols hold rs._PAIRS_MASS of the sample also
    tries `pairs`). Few numpy calls: this runs for every stream of every tensor."""
    raw = rs._le_bytes(stream)
    n = stream.size
    if not n:
        return Encoded("copy", raw), 0.0
    counts = rs._sample_counts(stream)
    used = rs._nonzero(counts)
    m = rs._sample_size(n)
    bits = rs._entropy_bits(used)
    estimate = n * bits / 8 + 2 * used.size + 8
    if bits >= rs._NEAR_RANDOM_BITS and stream.itemsize == 1:
        return Encoded("copy", raw), estimate
    z = Encoded("zstd", zstd.compress_fast(raw))
    if try_pairs and stream.itemsize == 1 and n >= rs.PAIRS_MIN_STREAM and (used.size <= pairs.MAX_TABLE
                                 or np.sort(used)[-pairs.MAX_TABLE:].sum() >= rs._PAIRS_MASS * m):
        p = rs._pairs(stream, counts)
        z = p if p is not None and len(p.payload) < len(z.payload) - rs.PAIRS_MIN_SAVING else z
    return (z if len(z.payload) < len(raw) else Encoded("copy", raw)), estimate
