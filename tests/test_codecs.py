"""Every codec round-trips bit-exactly on every candidate path, and refuses what it must.

Each component kind is tested through its public `encode` (for every `EncodeOptions.prefer`) and
through each candidate forced on its own, so a candidate the encoder rarely picks is still proven.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nncodec.codecs import ans, binary, levels, mask, quantizer, raw, zstd
from nncodec.codecs.base import PREFER_CHOICES, DecodeContext, Encoded, EncodeOptions, smallest
from nncodec.dtypes import DTYPES
from nncodec.errors import BadArgumentError, CorruptFileError, LimitExceededError, UnsupportedVersionError
from nncodec.limits import Limits

CTX = DecodeContext()
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
OPTIONS = [EncodeOptions(prefer=p) for p in PREFER_CHOICES]

shapes = st.lists(st.integers(0, 6), min_size=0, max_size=4).map(tuple)
nonempty_shapes = st.lists(st.integers(1, 6), min_size=1, max_size=4).map(tuple)


def numel(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64))


@st.composite
def storage_words(draw, dt_name: str | None = None) -> tuple:
    """(dtype, flat storage words): random bits, constants, or weight-like floats with specials."""
    dt = DTYPES[draw(st.sampled_from(sorted(DTYPES)))] if dt_name is None else DTYPES[dt_name]
    n = numel(draw(shapes))
    style = draw(st.sampled_from(["bits", "constant", "weights", "specials"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if style == "bits" or (style in ("weights", "specials") and dt.kind != "f"):
        words = rng.integers(0, 256, size=n * dt.itemsize, dtype=np.uint8).view(dt.storage)
    elif style == "constant":
        words = np.full(n, rng.integers(0, 256, size=dt.itemsize, dtype=np.uint8).view(dt.storage)[0], dtype=dt.storage)
    else:
        words = _float_words(rng.normal(0, 0.05, size=n), dt)
        if style == "specials" and n:
            specials = _specials(dt)
            idx = rng.integers(0, n, size=min(n, 8))
            words[idx] = specials[rng.integers(0, specials.size, size=idx.size)]
    if dt.kind == "b":
        words = (words & 1).astype(dt.storage)
    return dt, np.ascontiguousarray(words, dtype=dt.storage)


def _float_words(x: np.ndarray, dt) -> np.ndarray:
    if dt.name == "bfloat16":
        return (x.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    return x.astype(dt.name).view(dt.storage)


def _specials(dt) -> np.ndarray:
    """NaN with payloads and signs, infinities, signed zeros, subnormals, extremes (storage words)."""
    bits, e, m = dt.bits, dt.exponent_bits, dt.mantissa_bits
    exp_all = ((1 << e) - 1) << m
    sign = 1 << (bits - 1)
    vals = [0, sign, exp_all, exp_all | sign, exp_all | 1, exp_all | (1 << (m - 1)) | 5, sign | exp_all | 3,
            1, sign | 1, exp_all - 1, (1 << m) - 1]
    return np.array([v % (1 << bits) for v in vals], dtype=np.uint64).astype(dt.storage)


def decode_raw(enc: Encoded, dt, count: int) -> np.ndarray:
    return raw.decode(enc.codec, enc.params, memoryview(enc.payload), dt, count, CTX)


def assert_same_words(got: np.ndarray, want: np.ndarray, dt) -> None:
    assert got.dtype == dt.storage
    assert got.shape == (want.size,)
    assert got.tobytes() == want.tobytes()


# ------------------------------------------------------------------------------------------ raw


@FAST
@given(storage_words(), st.sampled_from(OPTIONS))
def test_raw_round_trip_every_dtype_and_preference(dw, options):
    dt, words = dw
    enc = raw.encode(words, dt, options)
    assert enc.codec in ("copy", "zstd", "planes")
    if options.prefer == "speed":
        assert not enc.slow and "ans" not in str(enc.params)
    assert_same_words(decode_raw(enc, dt, words.size), words, dt)


@pytest.mark.parametrize("dt_name", sorted(DTYPES))
def test_raw_special_values_every_dtype(dt_name):
    dt = DTYPES[dt_name]
    if dt.kind in ("f", "f8"):
        words = np.tile(_specials(dt), 7)
    elif dt.kind == "b":
        words = np.array([0, 1, 1, 0, 1], dtype=dt.storage)
    else:
        info = np.iinfo(np.dtype(dt_name))
        words = np.array([info.min, info.max, 0, -1 if info.min else 1, 1], dtype=dt_name).view(dt.storage)
    for options in OPTIONS:
        assert_same_words(decode_raw(raw.encode(words, dt, options), dt, words.size), words, dt)


def _forced_planes(words: np.ndarray, dt, methods: list[str]) -> Encoded:
    """A planes payload with the given method for each stream, bypassing the encoder's choice."""
    split, streams = raw._split(words, dt)
    parts = []
    for stream, method in zip(streams, methods, strict=True):
        data = stream.astype(stream.dtype.newbyteorder("<")).tobytes()
        if method == "zstd":
            data = zstd.compress(data)
        elif method == "zstd-literal":
            data, method = zstd.compress_literal_heavy(data), "zstd"
        elif method == "ans":
            data = ans.encode_with_table(stream.astype(np.int64))
        parts.append((method, data))
    params = {"split": split, "streams": [[m, len(p)] for m, p in parts]}
    return Encoded("planes", b"".join(p for _, p in parts), params)


@FAST
@given(st.data())
def test_raw_every_forced_candidate_round_trips(data):
    dt, words = data.draw(storage_words())
    raw_bytes = words.tobytes()
    assert_same_words(decode_raw(Encoded("copy", raw_bytes), dt, words.size), words, dt)
    assert_same_words(decode_raw(Encoded("zstd", zstd.compress(raw_bytes, 3)), dt, words.size), words, dt)
    n_streams = len(raw._stream_widths(dt)[1])
    methods = data.draw(st.lists(st.sampled_from(["copy", "zstd", "zstd-literal", "ans"]),
                                 min_size=n_streams, max_size=n_streams))
    assert_same_words(decode_raw(_forced_planes(words, dt, methods), dt, words.size), words, dt)


@FAST
@given(st.data(), st.sampled_from(OPTIONS))
def test_raw_stream_encoder_choices_decode(data, options):
    """Each stream the planes encoder emits decodes (whatever method it chose)."""
    width = data.draw(st.sampled_from([1, 2]))
    n = data.draw(st.integers(0, 300))
    hi = data.draw(st.sampled_from([1, 4, 256 ** width]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    stream = rng.integers(0, hi, size=n).astype(np.uint8 if width == 1 else np.uint16)
    (enc,) = raw.encode_streams([stream], options)
    assert enc.codec != "ans" or options.prefer != "speed"
    got = raw._decode_stream(enc.codec, memoryview(enc.payload), n, width, CTX, "test")
    assert got.tobytes() == stream.tobytes()


def test_raw_weights_pick_planes_and_round_trip():
    """Trained-weight-like float32 data is where the exponent split pays: it must be chosen."""
    words = np.random.default_rng(0).normal(0, 0.02, size=4096).astype(np.float32).view(np.uint32)
    dt = DTYPES["float32"]
    for options in OPTIONS:
        enc = raw.encode(words, dt, options)
        assert enc.codec == "planes"
        assert len(enc.payload) < words.nbytes
        assert_same_words(decode_raw(enc, dt, words.size), words, dt)
    assert raw.encode(words, dt, EncodeOptions(prefer="size")).slow  # ANS on the exponent stream


def test_raw_refuses_bool_values_other_than_0_and_1():
    dt = DTYPES["bool"]
    with pytest.raises(CorruptFileError):
        raw.decode("copy", {}, memoryview(bytes([0, 1, 2])), dt, 3, CTX)


F32_PLANES = [["copy", 1]] * 4


@pytest.mark.parametrize("codec, params, payload, count", [
    ("copy", {}, b"\0" * 7, 2),
    ("copy", {"x": 1}, b"\0" * 8, 2),
    ("zstd", {}, zstd.compress(b"\0" * 12), 2),
    ("zstd", {}, zstd.compress(b"\0" * 8) + b"\0", 2),
    ("planes", {"split": "bytes", "streams": F32_PLANES}, b"\0" * 4, 1),
    ("planes", {"split": "float"}, b"", 0),
    ("planes", {"split": "float", "streams": F32_PLANES[:3]}, b"\0" * 3, 1),
    ("planes", {"split": "float", "streams": [["copy", 2]] * 4}, b"\0" * 4, 1),  # runs past the end
    ("planes", {"split": "float", "streams": F32_PLANES}, b"\0" * 5, 1),  # trailing byte
    ("planes", {"split": "float", "streams": [["copy", True]] * 4}, b"\0" * 4, 1),
    ("planes", {"split": "float", "streams": [["copy", -1]] * 4}, b"\0" * 4, 1),
    ("planes", {"split": "float", "streams": F32_PLANES[:3] + [["copy", 1, 2]]}, b"\0" * 4, 1),
    ("planes", {"split": "float", "streams": F32_PLANES[:3] + [{"copy": 1}]}, b"\0" * 4, 1),
    ("planes", {"split": "float", "streams": F32_PLANES, "x-more": 1}, b"\0" * 4, 1),
])
def test_raw_refuses_bad_payloads(codec, params, payload, count):
    with pytest.raises(CorruptFileError):
        raw.decode(codec, params, memoryview(payload), DTYPES["float32"], count, CTX)


@pytest.mark.parametrize("codec, params", [
    ("nope", {}),
    ("planes", {"split": "float", "streams": [["what", 1]] * 4}),
])
def test_raw_refuses_codecs_from_a_newer_version(codec, params):
    with pytest.raises(UnsupportedVersionError):
        raw.decode(codec, params, memoryview(b"\0" * 4), DTYPES["float32"], 1, CTX)


def test_raw_planes_minimal_payload_decodes():
    dt = DTYPES["float32"]
    assert decode_raw(Encoded("planes", b"\0\0\0\x80", {"split": "float", "streams": F32_PLANES}), dt, 1).tolist() == [2**31]


def test_raw_planes_refuses_mantissa_beyond_width():
    dt = DTYPES["float16"]  # sign + 10 mantissa bits in two byte planes: the top 5 bits must be zero
    with pytest.raises(CorruptFileError):
        raw.decode("planes", {"split": "float", "streams": [["copy", 1]] * 3}, memoryview(bytes([0, 0, 0x08])), dt, 1, CTX)


def test_raw_planes_refuses_exponent_beyond_width():
    dt = DTYPES["float16"]  # 5 exponent bits
    payload = bytes([0x20, 0, 0])  # exponent 32 does not fit in 5 bits
    with pytest.raises(CorruptFileError):
        raw.decode("planes", {"split": "float", "streams": [["copy", 1], ["copy", 1], ["copy", 1]]},
                   memoryview(payload), dt, 1, CTX)


# ----------------------------------------------------------------------------------------- mask


@st.composite
def masks(draw) -> np.ndarray:
    shape = draw(shapes)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    style = draw(st.sampled_from(["zeros", "ones", "random", "rows"]))
    n = numel(shape)
    if style == "zeros":
        return np.zeros(shape, dtype=bool)
    if style == "ones":
        return np.ones(shape, dtype=bool)
    if style == "random":
        return rng.random(shape) < draw(st.floats(0, 1))
    rows = shape[0] if len(shape) >= 2 else 1
    density = rng.choice([0.0, 1.0, 0.1, 0.5, 0.9], size=rows)
    per_row = rng.random((rows, n // rows if rows else 0)) < density[:, None]
    return per_row.reshape(shape)


def decode_mask(enc: Encoded, shape) -> np.ndarray:
    return mask.decode(enc.codec, enc.params, memoryview(enc.payload), shape, CTX)


def assert_same_mask(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == bool and got.shape == want.shape
    assert np.array_equal(got, want)


@FAST
@given(masks(), st.sampled_from(OPTIONS))
def test_mask_round_trip(m, options):
    enc = mask.encode(m, options)
    if options.prefer == "speed":
        assert enc.codec == "zstd"
    assert_same_mask(decode_mask(enc, m.shape), m)


@FAST
@given(masks())
def test_mask_every_forced_candidate_round_trips(m):
    bits = m.reshape(-1)
    forced = [Encoded("zstd", zstd.compress(np.packbits(bits, bitorder="little").tobytes()))]
    if bits.size:
        forced.append(Encoded("ans", ans.encode_with_table(bits.astype(np.int64), coarsen=())))
    if m.ndim > 1 and bits.size:
        forced.append(Encoded("ans-rows", mask._encode_rows(bits, mask._rows(m.shape))))
    for enc in forced:
        assert_same_mask(decode_mask(enc, m.shape), m)


def test_mask_sparse_rows_pick_ans_rows():
    rng = np.random.default_rng(1)
    density = np.where(np.arange(64) % 2, 0.02, 0.6)  # pruning density varies between output units
    m = rng.random((64, 256)) < density[:, None]
    enc = mask.encode(m, EncodeOptions(prefer="size"))
    assert enc.codec == "ans-rows"
    assert_same_mask(decode_mask(enc, m.shape), m)


def test_mask_refuses_bad_payloads():
    shape = (3, 5)
    ones = np.ones(15, dtype=bool)
    packed = np.packbits(ones, bitorder="little").tobytes()
    bad_padding = bytes([packed[0], packed[1] | 0x80])
    with pytest.raises(CorruptFileError):
        mask.decode("zstd", {}, memoryview(zstd.compress(bad_padding)), shape, CTX)
    with pytest.raises(CorruptFileError):
        mask.decode("zstd", {}, memoryview(zstd.compress(packed + b"\0")), shape, CTX)
    with pytest.raises(CorruptFileError):
        mask.decode("zstd", {"level": 3}, memoryview(zstd.compress(packed)), shape, CTX)
    with pytest.raises(UnsupportedVersionError):
        mask.decode("bits", {}, memoryview(b""), shape, CTX)
    # ans: symbols outside {0, 1}
    table = ans.CountTable(5, np.array([1, 1], dtype=np.uint64))
    with pytest.raises(CorruptFileError):
        mask.decode("ans", {}, memoryview(table.to_bytes() + ans.encode(np.full(15, 5), table)), shape, CTX)
    # ans: a table with more than two symbols is corrupt (not a resource limit)
    three = ans.CountTable(0, np.array([1, 1, 1], dtype=np.uint64))
    with pytest.raises(CorruptFileError):
        mask.decode("ans", {}, memoryview(three.to_bytes() + ans.encode(np.zeros(15), three)), shape, CTX)
    # ans-rows: a row with more ones than elements; extra words after the last row
    with pytest.raises(CorruptFileError):
        mask.decode("ans-rows", {}, memoryview(binary.encode_uvarints(np.array([6, 0, 0]))), shape, CTX)
    good = mask._encode_rows(np.tile([True, False, True, True, False], 3), 3)
    with pytest.raises(CorruptFileError):
        mask.decode("ans-rows", {}, memoryview(good + b"\x01\0\0\0"), shape, CTX)
    with pytest.raises(CorruptFileError):
        mask.decode("ans-rows", {}, memoryview(good[:-1]), shape, CTX)


# --------------------------------------------------------------------------------------- levels

INT32 = (-(2**31), 2**31 - 1)


@st.composite
def level_arrays(draw) -> np.ndarray:
    n = draw(st.integers(0, 300))
    style = draw(st.sampled_from(["empty", "constant", "small", "negative", "wide", "extremes"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if style == "empty":
        return np.zeros(0, dtype=np.int64)
    if style == "constant":
        return np.full(n, draw(st.integers(*INT32)), dtype=np.int64)
    if style == "small":
        return np.round(rng.laplace(0, draw(st.floats(0.1, 20)), size=n)).astype(np.int64)
    if style == "negative":
        return -rng.integers(1, 100, size=n).astype(np.int64)
    if style == "wide":
        return rng.integers(INT32[0], INT32[1], size=n, endpoint=True).astype(np.int64)
    return np.array(draw(st.lists(st.sampled_from([INT32[0], INT32[1], 0, -1, 1]), max_size=20)), dtype=np.int64)


def decode_levels(enc: Encoded, count: int, ctx: DecodeContext = CTX) -> np.ndarray:
    return levels.decode(enc.codec, enc.params, memoryview(enc.payload), count, ctx)


@FAST
@given(level_arrays(), st.sampled_from(OPTIONS))
def test_levels_round_trip(lv, options):
    enc = levels.encode(lv, options)
    if options.prefer == "speed":
        assert enc.codec == "zstd"
    got = decode_levels(enc, lv.size)
    assert got.dtype == np.int32 and np.array_equal(got, lv)  # decoded levels are int32 (spec: within int32)


@FAST
@given(level_arrays(), st.sampled_from([(), (15,), (255,), (15, 255, 4095)]))
def test_levels_every_forced_candidate_round_trips(lv, coarsen):
    forced = []
    if lv.size and int(lv.max()) - int(lv.min()) < 2**16:
        forced.append(Encoded("ans", ans.encode_with_table(lv, coarsen=coarsen)))
    z = levels._zigzag(lv)
    for width in (1, 2, 4):
        if lv.size == 0 or int(z.max()) < 256**width:
            forced.append(Encoded("zstd", zstd.compress(z.astype(levels._WIDTHS[width]).tobytes()), {"width": width}))
    assert forced
    for enc in forced:
        assert np.array_equal(decode_levels(enc, lv.size), lv)


def test_levels_wide_range_never_needs_a_large_alphabet():
    """An encoded file must be readable under the default limits: ANS tables stay within max_alphabet."""
    lv = np.array([0, 2**21, -(2**31), 2**31 - 1] * 50, dtype=np.int64)
    for options in OPTIONS:
        enc = levels.encode(lv, options)
        assert enc.codec == "zstd"
        assert np.array_equal(decode_levels(enc, lv.size), lv)


def test_levels_refuse_bad_payloads():
    ok = levels.encode(np.arange(10), EncodeOptions(prefer="speed"))
    for params in ({}, {"width": 3}, {"width": "1"}, {"width": True}, {"width": 1, "x": 0}):
        with pytest.raises(CorruptFileError):
            levels.decode("zstd", params, memoryview(ok.payload), 10, CTX)
    with pytest.raises(CorruptFileError):
        levels.decode("zstd", ok.params, memoryview(ok.payload), 11, CTX)
    with pytest.raises(UnsupportedVersionError):
        levels.decode("huffman", {}, memoryview(b""), 0, CTX)
    table = ans.CountTable(0, np.ones(300, dtype=np.uint64))
    with pytest.raises(LimitExceededError):
        levels.decode("ans", {}, memoryview(table.to_bytes()), 0, DecodeContext(Limits(max_alphabet=256)))


# ------------------------------------------------------------------------------------ quantizer


@FAST
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), max_size=40))
def test_quantizer_round_trip(values):
    v = np.array(values, dtype=np.float32)
    enc = quantizer.encode(v, EncodeOptions())
    got = quantizer.decode(enc.codec, enc.params, memoryview(enc.payload), v.size, CTX)
    assert got.dtype == np.float32 and got.tobytes() == v.tobytes()


def test_quantizer_refuses_bad_payloads():
    with pytest.raises(CorruptFileError):
        quantizer.decode("f32", {}, memoryview(b"\0" * 7), 2, CTX)
    with pytest.raises(UnsupportedVersionError):
        quantizer.decode("f16", {}, memoryview(b"\0" * 4), 2, CTX)
    with pytest.raises(CorruptFileError):
        quantizer.decode("f32", {"x": 1}, memoryview(b"\0" * 4), 1, CTX)
    for bad in (np.nan, np.inf, -np.inf):
        with pytest.raises(CorruptFileError):
            quantizer.decode("f32", {}, memoryview(np.array([1, bad], dtype="<f4").tobytes()), 2, CTX)


# ------------------------------------------------------------------------------------------ ans


@st.composite
def symbols_and_table(draw) -> tuple[np.ndarray, ans.CountTable]:
    alphabet = draw(st.integers(1, 40))
    lo = draw(st.integers(-(2**31), 2**31 - alphabet))
    counts = np.array(draw(st.lists(st.sampled_from([0, 1, 2, 7, 1000, 2**20, 2**40]),
                                    min_size=alphabet, max_size=alphabet)), dtype=np.uint64)
    if not counts.any():
        counts[draw(st.integers(0, alphabet - 1))] = 1
    support = np.flatnonzero(counts)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    sym = lo + rng.choice(support, size=draw(st.integers(0, 200)))
    return sym.astype(np.int64), ans.CountTable(lo, counts)


@FAST
@given(symbols_and_table())
def test_ans_round_trip_under_any_valid_table(st_pair):
    sym, table = st_pair
    payload = ans.encode(sym, table)
    if table.alphabet == 1 or sym.size == 0:
        assert payload == b""
    assert len(payload) % 4 == 0
    assert np.array_equal(ans.decode(payload, table, sym.size, "t"), sym)
    # the table's own serialisation round-trips
    reader = binary.Reader(table.to_bytes(), "t")
    back = ans.CountTable.read(reader, 2**20)
    reader.end()
    assert back.lo == table.lo and np.array_equal(back.counts, table.counts)


@FAST
@given(st.lists(st.integers(-5, 300), max_size=300), st.sampled_from([(), (1,), (3,), (255,), (255, 4095)]))
def test_ans_with_table_exact_and_coarsened(values, coarsen):
    sym = np.array(values, dtype=np.int64)
    blob = ans.encode_with_table(sym, coarsen=coarsen)
    assert np.array_equal(ans.decode_with_table(blob, sym.size, "t", 2**20), sym)
    if sym.size:
        exact = ans.histogram(sym)
        for m in coarsen:
            table = ans.coarsened(exact, m)
            assert ((table.counts > 0) == (exact.counts > 0)).all()
            assert np.array_equal(ans.decode(ans.encode(sym, table), table, sym.size, "t"), sym)


def test_ans_alphabet_one_is_free():
    table = ans.CountTable(-7, np.array([3], dtype=np.uint64))
    assert ans.encode(np.full(50, -7), table) == b""
    assert ans.decode(b"", table, 50, "t").tolist() == [-7] * 50
    with pytest.raises(CorruptFileError):
        ans.decode(b"\1\0\0\0", table, 50, "t")


def test_ans_refuses_extra_words_and_zero_last_word():
    sym = np.array([0, 1, 1, 0, 2, 1] * 20, dtype=np.int64)
    table = ans.histogram(sym)
    payload = ans.encode(sym, table)
    with pytest.raises(CorruptFileError):
        ans.decode(payload + b"\x07\0\0\0", table, sym.size, "t")
    with pytest.raises(CorruptFileError):
        ans.decode(payload + b"\0\0\0\0", table, sym.size, "t")
    with pytest.raises(CorruptFileError):
        ans.decode(payload + b"\1", table, sym.size, "t")
    with pytest.raises(CorruptFileError):  # fewer symbols than encoded: data left over
        ans.decode(payload, table, sym.size - 5, "t")


@FAST
@given(st.binary(max_size=64), st.integers(0, 50))
def test_ans_garbage_payload_is_corrupt_or_decodes(payload, count):
    table = ans.CountTable(0, np.array([5, 0, 3, 1], dtype=np.uint64))
    try:
        sym = ans.decode(payload, table, count, "t")
    except CorruptFileError:
        return
    assert sym.size == count and (table.counts[sym] > 0).all()


def test_ans_count_table_refusals():
    def read(data: bytes, max_alphabet: int = 100) -> ans.CountTable:
        return ans.CountTable.read(binary.Reader(data, "t"), max_alphabet)

    u = binary.write_uvarint
    with pytest.raises(CorruptFileError):  # all zero
        read(u(0) + u(3) + u(0) * 3)
    with pytest.raises(CorruptFileError):  # empty alphabet
        read(u(0) + u(0))
    with pytest.raises(CorruptFileError):  # counts summing to over 2**53: not exact in float64
        read(u(0) + u(2) + u(2**52) + u(2**52 + 1))
    with pytest.raises(LimitExceededError):
        read(u(0) + u(101) + u(1) * 101)
    with pytest.raises(CorruptFileError):  # more counts than bytes
        read(u(0) + u(50) + u(1) * 3)
    for lo, alphabet in [(2**31, 1), (2**62, 1), (-(2**31) - 1, 2), (2**31 - 1, 2)]:
        with pytest.raises(CorruptFileError):  # alphabet outside int32
            read(u(binary.zigzag(lo)) + u(alphabet) + u(1) * alphabet)
    assert read(u(binary.zigzag(2**31 - 2)) + u(2) + u(1) * 2).lo == 2**31 - 2


# --------------------------------------------------------------------------------------- binary


@FAST
@given(st.lists(st.integers(0, 2**64 - 1), max_size=30))
def test_uvarint_round_trip(values):
    blob = b"".join(binary.write_uvarint(v) for v in values)
    if all(v < 2**63 for v in values):
        assert binary.encode_uvarints(np.array(values, dtype=np.uint64)) == blob
    reader = binary.Reader(blob, "t")
    assert [reader.uvarint() for _ in values] == values
    reader.end()
    if values:
        reader = binary.Reader(blob, "t")
        assert reader.uvarints(len(values)).tolist() == values


@FAST
@given(st.integers(-(2**63), 2**63 - 1))
def test_zigzag_round_trip(v):
    z = binary.zigzag(v)
    assert 0 <= z < 2**64
    assert binary.unzigzag(z) == v
    assert binary.Reader(binary.write_uvarint(z)).svarint() == v
    if -(2**31) <= v < 2**31:  # levels are int32 (zstd widths <= 4 bytes): the decoder's unzigzag is int32
        assert levels._unzigzag(levels._zigzag(np.array([v], dtype=np.int64)))[0] == v


@pytest.mark.parametrize("blob", [
    b"\x80\x00",  # 0 in two bytes
    b"\x81\x00",
    b"\xff\x80\x00",
    b"\x80" * 9 + b"\x00",
    b"\xff" * 9 + b"\x02",  # 2**64
    b"\xff" * 10 + b"\x01",  # longer than 10 bytes
    b"\x80",  # truncated
    b"",
])
def test_uvarint_refuses_non_minimal_oversized_and_truncated(blob):
    with pytest.raises(CorruptFileError):
        binary.Reader(blob, "t").uvarint()


def test_reader_bounds():
    r = binary.Reader(b"\1\2\3\4\5", "t")
    with pytest.raises(CorruptFileError):
        r.take(6)
    with pytest.raises(CorruptFileError):
        r.take(-1)
    with pytest.raises(CorruptFileError):
        r.words_le(5)
    with pytest.raises(CorruptFileError):
        r.uvarints(6)
    assert r.words_le(4).tolist() == [0x04030201]
    with pytest.raises(CorruptFileError):
        r.end()


# ----------------------------------------------------------------------------------------- zstd


def test_zstd_refusals():
    frame = zstd.compress(b"abc" * 10)
    assert zstd.decompress(frame, 30, "t") == b"abc" * 10
    import zstandard

    no_size = zstandard.ZstdCompressor(write_content_size=False).compress(b"abc")
    skippable = b"\x50\x2a\x4d\x18" + (4).to_bytes(4, "little") + b"abcd"
    for bad, size in [(frame, 29), (frame, 31), (frame + b"\0", 30), (frame + frame, 30), (frame[:-1], 30),
                      (b"", 0), (b"junk", 4), (no_size, 3), (skippable, 4), (skippable, 0),
                      (frame[:-4] + bytes(4), 30)]:  # bad checksum
        with pytest.raises(CorruptFileError):
            zstd.decompress(bad, size, "t")
    assert zstd.decompress(zstd.compress(b""), 0, "t") == b""


# ----------------------------------------------------------------------------------------- base


def test_smallest_preferences():
    fast = lambda: Encoded("zstd", b"x" * 100)  # noqa: E731
    slow_small = lambda: Encoded("ans", b"x" * 99, slow=True)  # noqa: E731
    slow_much = lambda: Encoded("ans", b"x" * 50, slow=True)  # noqa: E731
    assert smallest([fast, slow_small], EncodeOptions(prefer="size")).codec == "ans"
    assert smallest([fast, slow_small], EncodeOptions(prefer="balanced")).codec == "zstd"
    assert smallest([fast, slow_much], EncodeOptions(prefer="balanced")).codec == "ans"
    assert smallest([fast, slow_much], EncodeOptions(prefer="speed")).codec == "zstd"
    assert smallest([lambda: None, fast], EncodeOptions()).codec == "zstd"
    with pytest.raises(BadArgumentError):
        smallest([lambda: None], EncodeOptions())
    with pytest.raises(BadArgumentError):
        EncodeOptions(prefer="fastest")
