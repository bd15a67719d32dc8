"""The `pairs` stream method (spec §9.1, format 2.2): round-trips for any byte stream, every malformed
payload refused with CorruptFileError, and files that use it are written as version 2.2 and decode."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import nncodec
from nncodec.codecs import pairs, raw, zstd
from nncodec.codecs.base import EncodeOptions
from nncodec.codecs.binary import write_uvarint
from nncodec.container.reader import parse_preamble
from nncodec.dtypes import DTYPES
from nncodec.errors import CorruptFileError


def _stream(data: st.DataObject) -> np.ndarray:
    alphabet = data.draw(st.integers(1, 256))
    values = data.draw(st.lists(st.integers(0, alphabet - 1), max_size=300))
    skew = data.draw(st.integers(0, 3))  # skewed streams: what pairs is for (few dominant symbols)
    return (np.array(values, dtype=np.int64) >> skew).astype(np.uint8)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_pairs_round_trips_any_byte_stream(data: st.DataObject) -> None:
    stream = _stream(data)
    payload = pairs.encode(stream)
    if np.unique(stream).size < 2:
        assert payload is None
        return
    out = pairs.decode(payload, stream.size, "t")
    assert out.dtype == np.uint8 and np.array_equal(out, stream)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_a_table_picked_from_any_histogram_decodes(data: st.DataObject) -> None:
    """The encoder may pick the table from a sample's histogram: symbols outside it escape."""
    stream = _stream(data)
    counts = np.array(data.draw(st.lists(st.integers(0, 50), min_size=1, max_size=256)), dtype=np.int64)
    payload = pairs.encode(stream, counts)
    if np.count_nonzero(counts) < 2:
        assert payload is None
        return
    assert np.array_equal(pairs.decode(payload, stream.size, "t"), stream)


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(["float32", "bfloat16", "float16", "int8", "uint8"]), prefer=st.sampled_from(["balanced", "size"]),
       data=st.data())
def test_planes_with_pairs_round_trip_through_the_raw_codec(name: str, prefer: str, data: st.DataObject) -> None:
    dt = DTYPES[name]
    n = data.draw(st.integers(1, 400))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    values = rng.standard_normal(n) * 10.0 ** data.draw(st.integers(-3, 1))
    words = (torch.from_numpy(values).to(getattr(torch, name)).contiguous().view(-1)
             .view(torch.uint8).numpy().view(dt.storage) if dt.kind == "f" else rng.integers(0, 3, n).astype(dt.storage))
    enc = raw.encode(words, dt, EncodeOptions(prefer=prefer))
    ctx = nncodec.codecs.DecodeContext()
    back = raw.decode(enc.codec, enc.params, memoryview(enc.payload), dt, n, ctx)
    assert back.tobytes() == words.tobytes()


def _weights(n: int = 20_000, seed: int = 0) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(seed)
    # uniform like a freshly initialised nn.Linear: its exponents halve in frequency per binade
    return {"w": torch.from_numpy(rng.uniform(-0.05, 0.05, n).astype(np.float32)).reshape(100, -1),
            "b": torch.from_numpy(rng.standard_normal(7).astype(np.float32))}


def test_default_encoder_uses_pairs_on_float_exponents_and_writes_version_2_2() -> None:
    tensors = _weights()
    data = nncodec.save(tensors)
    info = {t["name"]: t for t in nncodec.open(data).info()["tensors"]}
    streams = info["w"]["components"][0]["params"]["streams"]
    assert streams[0][0] == pairs.METHOD  # the exponent stream: 2.5-3 bits of entropy, a few dominant values
    pre = parse_preamble(data[:40], len(data))
    assert (pre.major, pre.minor) == (2, 2)
    back = nncodec.load(data)
    assert all(torch.equal(back[k], t) for k, t in tensors.items())


def test_files_without_pairs_keep_their_older_version() -> None:
    data = nncodec.save({"i": torch.arange(10, dtype=torch.int32)})
    assert parse_preamble(data[:40], len(data)).minor == 0


def test_pairs_is_smaller_than_plain_zstd_on_float_exponents() -> None:
    w = _weights(200_000)["w"].numpy().view(np.uint32).ravel()
    exponents = ((w >> 23) & 0xFF).astype(np.uint8)
    assert len(pairs.encode(exponents)) < len(zstd.compress_fast(exponents.tobytes()))


def _payload(k: int, table: bytes, packed: bytes, escapes: bytes = b"") -> bytes:
    frame = zstd.compress_fast(packed)
    return bytes([k]) + table + write_uvarint(len(frame)) + frame + escapes


@pytest.mark.parametrize(("payload", "count", "message"), [
    (b"", 2, "needs 1 more bytes"),
    (_payload(0, b"", b"\x00"), 2, "table of 0 symbols"),
    (bytes([16]) + bytes(range(16)), 2, "table of 16 symbols"),
    (_payload(2, b"\x05\x05", b"\x01"), 2, "twice"),
    (_payload(2, b"\x05\x06", b"\x02"), 2, "outside the table"),  # code 2 with a 2-symbol table
    (_payload(2, b"\x05\x06", b"\xe0"), 2, "outside the table"),  # code 14
    (_payload(2, b"\x05\x06", b"\x10\x00"), 1, "expected 1"),  # a frame of 2 bytes where 1 symbol needs 1
    (_payload(2, b"\x05\x06", b"\x01"), 4, "expected 2"),  # frame too short for 4 symbols
    (_payload(2, b"\x05\x06", b"\xf0"), 2, "escape bytes"),  # one escape code, no escape byte
    (_payload(2, b"\x05\x06", b"\x01", b"\x07"), 2, "escape bytes"),  # an escape byte no code calls for
    (bytes([2]) + b"\x05\x06" + write_uvarint(100) + b"\x00", 2, "needs 100 more bytes"),  # frame past the end
    (bytes([2]) + b"\x05\x06" + write_uvarint(1) + b"\x01", 2, "not a zstd frame"),
])
def test_malformed_pairs_payloads_are_refused(payload: bytes, count: int, message: str) -> None:
    with pytest.raises(CorruptFileError, match=message):
        pairs.decode(payload, count, "t")


def test_odd_count_needs_a_zero_padding_code() -> None:
    with pytest.raises(CorruptFileError, match="unused last pairs code"):
        pairs.decode(_payload(2, b"\x05\x06", b"\x11"), 1, "t")
    assert pairs.decode(_payload(2, b"\x05\x06", b"\x10"), 1, "t").tolist() == [6]


def test_escapes_decode_in_order() -> None:
    out = pairs.decode(_payload(1, b"\x09", b"\xf0\x0f\xff", b"\x01\x02\x03\x04"), 6, "t")
    assert out.tolist() == [1, 9, 9, 2, 3, 4]


def test_pairs_on_a_two_byte_stream_is_refused() -> None:
    payload = pairs.encode(np.array([1, 2, 1, 1], dtype=np.uint8))
    with pytest.raises(CorruptFileError, match="1-byte symbols"):
        raw._decode_stream(pairs.METHOD, memoryview(payload), 4, 2, nncodec.codecs.DecodeContext(), "t")


def _exploded_file_with_pairs() -> tuple[dict, list[bytes], int]:
    """(header body, section payloads, index of w's section, whose first stream is pairs) of a saved file."""
    import copy

    from nncodec.container.reader import Container

    data = nncodec.save(_weights())
    with Container(data) as c:
        body = {k: copy.deepcopy(v) for k, v in c.header.items() if k not in ("sections", "align")}
        sections = [bytes(c.read_section(s.index)) for s in c.sections]
    part = body["tensors"]["w"]["raw"]
    assert part["p"]["streams"][0][0] == pairs.METHOD
    return body, sections, part["s"]


def test_a_file_whose_pairs_stream_breaks_a_rule_is_refused_behind_correct_checksums() -> None:
    from nncodec.container.writer import assemble

    body, sections, s = _exploded_file_with_pairs()
    broken = bytearray(sections[s])
    broken[2] = broken[1]  # the table (after the count byte) lists its first symbol twice
    with pytest.raises(CorruptFileError, match="twice"):
        nncodec.load(assemble(body, [*sections[:s], bytes(broken), *sections[s + 1:]]))
    body["tensors"]["w"]["raw"]["p"]["streams"][0][0] = "pairs3"  # a method of a newer format
    with pytest.raises(nncodec.UnsupportedVersionError, match="pairs3"):
        nncodec.load(assemble(body, sections))


def test_balanced_keeps_pairs_out_of_the_chunks_of_a_large_tensor() -> None:
    """Chunked tensors are where decode time adds up: balanced and speed code their exponents with plain
    zstd frames, while the same tensor unchunked uses pairs."""
    words = _weights(40_000)["w"].numpy().reshape(-1).view(np.uint32)
    dt = DTYPES["float32"]
    whole = raw.encode(words, dt, EncodeOptions())
    assert whole.params["streams"][0][0] == pairs.METHOD
    for prefer in ("balanced", "speed"):
        chunked = raw.encode(words, dt, EncodeOptions(prefer=prefer, chunk_bytes=40_000))
        methods = {m for c in chunked.params["chunks"] if c[2] == "planes" for m, _ in c[3]["streams"]}
        assert "zstd" in methods and pairs.METHOD not in methods, prefer
