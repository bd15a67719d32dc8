"""Issue 9, finding 3: every ANS stream proves it was consumed exactly (spec/FORMAT.md §8.6).

In format 1 an exhausted ANS stream kept yielding the alphabet's first symbol, so a stream with
words dropped (checksums recomputed) decoded "successfully" to other tensors. Each class the review
found is rebuilt here with correct CRCs, and every variant with ANS words dropped or added must be
refused with CorruptFileError. The words are located from the end of each payload (where every
ANS payload keeps them), the head (count tables, row counts) is parsed with the codecs' own reader.
"""

from __future__ import annotations

import numpy as np
import pytest

import nncodec
from nncodec.codecs import ans, levels_ctx, mask, mask_ctx, raw, zstd
from nncodec.codecs.binary import Reader
from nncodec.container.writer import assemble
from nncodec.dtypes import DTYPES

BIG = 2**20


def _head_table(payload: bytes) -> int:
    r = Reader(payload)
    ans.CountTable.read(r, BIG)
    return r.pos


def _head_rows(rows: int):
    def head(payload: bytes) -> int:
        r = Reader(payload)
        r.uvarints(rows)
        return r.pos
    return head


def _head_classes(payload: bytes) -> int:
    r = Reader(payload)
    kr, kc = r.uvarint(), r.uvarint()
    for k in (kr, kc):
        if k > 1:
            ans.CountTable.read(r, k)
    r.uvarints(2 * kr * kc)
    return r.pos


def _head_rowclass(payload: bytes) -> int:
    r = Reader(payload)
    k = r.uvarint()
    for _ in range(k + 1):
        ans.CountTable.read(r, BIG)
    return r.pos


def word_edits(payload: bytes, head: int) -> list[tuple[str, bytes]]:
    """Variants of an ANS payload with words dropped (first, last, all) or added."""
    words = [payload[i : i + 4] for i in range(head, len(payload), 4)]
    assert b"".join(words) == payload[head:]
    out = []
    for j in range(1, min(3, len(words)) + 1):
        out.append((f"drop first {j}", words[j:]))
        out.append((f"drop last {j}", words[:-j]))
    out.append(("drop all", []))
    out.append(("add zero word first", [b"\0\0\0\0"] + words))
    out.append(("add word last", words + [b"\x07\0\0\0"]))
    out.append(("duplicate last", words + words[-1:]))
    return [(name, payload[:head] + b"".join(w)) for name, w in out
            if b"".join(w) != payload[head:] and (not w or w[-1] != b"\0\0\0\0")]


def _quant_file(shape, mask_part, levels_part, steps=(0.5,)) -> bytes:
    sections, entry = [], {"dtype": "float32", "shape": list(shape), "q": {"mode": "uniform"}}
    for kind, part in (("mask", mask_part), ("levels", levels_part)):
        if part is not None:
            codec, payload, params = part
            entry[kind] = {"s": len(sections), "codec": codec, **({"p": params} if params else {})}
            sections.append(payload)
    entry["quantizer"] = {"s": len(sections), "codec": "f32"}
    sections.append(np.array(steps, "<f4").tobytes())
    return assemble({"tensors": {"t": entry}}, sections)


def _decode(data: bytes) -> np.ndarray:
    with nncodec.open(data, framework="np") as f:
        f.verify()
        f.info()
        f.components("t")
        return f.get_tensor("t")


def _all_refused(valid: bytes, rebuild, payload: bytes, head: int) -> None:
    _decode(valid)
    edits = word_edits(payload, head)
    assert edits
    silent = []
    for name, bad in edits:
        try:
            _decode(rebuild(bad))
        except nncodec.CorruptFileError:
            continue
        silent.append(name)
    assert not silent, f"silently accepted: {silent}"


rng = np.random.default_rng(99)


def test_levels_ans_stream_cut_short_is_refused():
    lv = rng.integers(-3, 4, 200)
    lv[-60:] = -3  # the trailing lowest symbols cost no words in format 1
    payload = ans.encode_with_table(lv, coarsen=())
    make = lambda p: _quant_file((200,), None, ("ans", p, None))  # noqa: E731
    _all_refused(make(payload), make, payload, _head_table(payload))


def test_mask_ans_stream_cut_short_is_refused():
    m = rng.random(300) < 0.3
    m[-100:] = False
    payload = ans.encode_with_table(m.astype(np.int64), coarsen=())
    lv = zstd.compress(np.ones(int(m.sum()), np.uint8).tobytes())
    make = lambda p: _quant_file((300,), ("ans", p, None), ("zstd", lv, {"width": 1}))  # noqa: E731
    _all_refused(make(payload), make, payload, _head_table(payload))


def test_mask_ans_rows_stream_edits_are_refused():
    m = rng.random((6, 40)) < 0.3
    payload = mask._encode_rows(m.reshape(-1), 6)
    lv = zstd.compress(np.ones(int(m.sum()), np.uint8).tobytes())
    make = lambda p: _quant_file((6, 40), ("ans-rows", p, None), ("zstd", lv, {"width": 1}))  # noqa: E731
    _all_refused(make(payload), make, payload, _head_rows(6)(payload))


def test_mask_ans_classes_with_no_words_is_refused():
    """All survivors pruned: in format 1 the payload needed no words at all."""
    m = np.zeros((8, 16), dtype=bool)
    m[:, :3] = rng.random((8, 3)) < 0.5
    payload = mask_ctx.encode(m)
    lv = zstd.compress(np.ones(int(m.sum()), np.uint8).tobytes())
    make = lambda p: _quant_file((8, 16), ("ans-classes", p, None), ("zstd", lv, {"width": 1}))  # noqa: E731
    _all_refused(make(payload), make, payload, _head_classes(payload))


def test_levels_ans_rowclass_with_no_words_is_refused():
    lv = rng.integers(-4, 5, (10, 12))
    lv[5:] = 0
    lv[5:, 0] = 1  # half of the rows have a one-symbol class table
    payload = levels_ctx.encode(lv.reshape(-1), np.full(10, 12))
    assert payload is not None
    make = lambda p: _quant_file((10, 12), None, ("ans-rowclass", p, None))  # noqa: E731
    _all_refused(make(payload), make, payload, _head_rowclass(payload))


def test_lossless_planes_with_a_short_exponent_stream_is_refused():
    words = (rng.standard_normal(1024) * 0.05).astype(np.float32).view(np.uint32)
    bf = (words >> 16).astype(np.uint16)
    _, streams = raw._split(bf, DTYPES["bfloat16"])
    exp = ans.encode_with_table(streams[0].astype(np.int64), coarsen=())
    rest = streams[1].tobytes()

    def make(e: bytes) -> bytes:
        part = {"s": 0, "codec": "planes", "p": {"split": "float", "streams": [["ans", len(e)], ["copy", len(rest)]]}}
        return assemble({"tensors": {"t": {"dtype": "bfloat16", "shape": [1024], "raw": part}}}, [e + rest])

    assert np.array_equal(_decode(make(exp)), bf)
    _all_refused(make(exp), make, exp, _head_table(exp))


def test_a_stream_ending_early_but_asked_for_more_symbols_is_refused():
    """The header (shape) asks for more symbols than were coded: the decoder moves off the final state."""
    lv = rng.integers(0, 3, 50)
    payload = ans.encode_with_table(lv, coarsen=())
    with pytest.raises(nncodec.CorruptFileError):
        _decode(_quant_file((51,), None, ("ans", payload, None)))
    with pytest.raises(nncodec.CorruptFileError):
        _decode(_quant_file((49,), None, ("ans", payload, None)))
