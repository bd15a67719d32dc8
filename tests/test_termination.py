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
from nncodec.codecs import levels as levels_module
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


# ------------------------------------------------------------------ property: random files, word edits

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

MASK_CODECS = {"ans": lambda m: ans.encode_with_table(m.reshape(-1).astype(np.int64), coarsen=()),
               "ans-rows": lambda m: mask._encode_rows(m.reshape(-1), m.shape[0]),
               "ans-classes": mask_ctx.encode}
MASK_HEADS = {"ans": _head_table, "ans-rows": lambda m: _head_rows(m.shape[0]), "ans-classes": lambda m: _head_classes}


@st.composite
def ans_files(draw):
    """(file maker taking a replacement payload, the valid ANS payload, its head length): one
    randomly shaped quantized or lossless tensor whose chosen component is ANS-coded."""
    seed = draw(st.integers(0, 2**32 - 1))
    r = np.random.default_rng(seed)
    rows, cols = draw(st.integers(2, 12)), draw(st.integers(2, 40))
    kind = draw(st.sampled_from(["mask/ans", "mask/ans-rows", "mask/ans-classes", "levels/ans",
                                 "levels/ans-rowclass", "raw/planes"]))
    if kind == "raw/planes":
        bf = (r.standard_normal(rows * cols).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
        _, streams = raw._split(bf, DTYPES["bfloat16"])
        which = draw(st.integers(0, 1))
        coded = [ans.encode_with_table(s.astype(np.int64), coarsen=()) for s in streams]

        def make(p: bytes) -> bytes:
            parts = [p if k == which else c for k, c in enumerate(coded)]
            part = {"s": 0, "codec": "planes", "p": {"split": "float", "streams": [["ans", len(c)] for c in parts]}}
            return assemble({"tensors": {"t": {"dtype": "bfloat16", "shape": [rows, cols], "raw": part}}}, [b"".join(parts)])
        return make, coded[which], _head_table(coded[which])
    m = r.random((rows, cols)) < draw(st.floats(0.05, 0.95))
    m[0, 0] = m[1, 0] = True  # two rows with survivors (the row-class codec needs them)
    lv = np.round(r.laplace(0, draw(st.floats(0.3, 6.0)), int(m.sum()))).astype(np.int64)
    lv[0] = lv[0] + 1 if lv.min() == lv.max() else lv[0]  # two distinct levels: a stream exists
    comp, codec = kind.split("/")
    if comp == "mask":
        payload = MASK_CODECS[codec](m)
        head = (MASK_HEADS[codec](payload) if codec == "ans" else MASK_HEADS[codec](m)(payload))
        lvz = zstd.compress(levels_module._zigzag(lv).astype(np.uint8).tobytes()) if np.abs(lv).max() < 128 else None
        lpart = ("zstd", lvz, {"width": 1}) if lvz is not None else ("ans", ans.encode_with_table(lv), None)
        return (lambda p: _quant_file((rows, cols), (codec, p, None), lpart)), payload, head
    mz = zstd.compress(np.packbits(m.reshape(-1), bitorder="little").tobytes())
    if codec == "ans":
        payload = ans.encode_with_table(lv, coarsen=())
        head = _head_table(payload)
    else:
        payload = levels_ctx.encode(lv, levels_ctx.row_counts((rows, cols), m))
        head = _head_rowclass(payload)
    return (lambda p: _quant_file((rows, cols), ("zstd", mz, None), (codec, p, None))), payload, head


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ans_files(), st.data())
def test_dropping_or_adding_ans_words_is_never_silent(case, data):
    make, payload, head = case
    _decode(make(payload))  # the unedited file is valid
    words = [payload[i : i + 4] for i in range(head, len(payload), 4)]
    op = data.draw(st.sampled_from(["drop", "add"]))
    if op == "drop":
        if not words:
            return
        at = data.draw(st.integers(0, len(words) - 1))
        n = data.draw(st.integers(1, len(words) - at))
        edited = words[:at] + words[at + n :]
    else:
        at = data.draw(st.integers(0, len(words)))
        new = [data.draw(st.binary(min_size=4, max_size=4)) for _ in range(data.draw(st.integers(1, 3)))]
        edited = words[:at] + new + words[at:]
    bad = payload[:head] + b"".join(edited)
    if bad == payload:
        return
    try:
        _decode(make(bad))
    except nncodec.CorruptFileError:
        return
    # anything else: a silent success (or, if another exception escaped, pytest reports it)
    raise AssertionError(f"{op} at word {at} of {len(words)} decoded without error")


# ------------------------------------------------------------------ format 1 files (spec §12.1)

import hashlib  # noqa: E402
import json  # noqa: E402
import struct  # noqa: E402
import zlib  # noqa: E402
from pathlib import Path  # noqa: E402

FORMAT1 = Path(__file__).resolve().parent / "data" / "format1"  # the golden vectors as format 1 wrote them
FORMAT1_MANIFEST = json.loads((FORMAT1 / "manifest.json").read_text(encoding="utf-8"))


def _with_major(data: bytes, major: int) -> bytes:
    head = data[:8] + struct.pack("<H", major) + data[10:36]
    return head + struct.pack("<I", zlib.crc32(head)) + data[40:]


@pytest.mark.parametrize("entry", FORMAT1_MANIFEST["vectors"], ids=lambda e: e["file"])
def test_format_1_files_are_read_with_their_own_ans_rule(entry):
    data = (FORMAT1 / entry["file"]).read_bytes()
    assert data[8:10] == b"\x01\x00"
    with nncodec.open(data, framework="np") as f:
        f.verify()
        assert f.info()["version"] == "1.0"
        for name, want in entry["tensors"].items():
            arr = np.ascontiguousarray(f.get_tensor(name))
            assert hashlib.sha256(arr.astype(arr.dtype.newbyteorder("<")).tobytes()).hexdigest() == want["sha256"]


def test_the_version_decides_the_rule():
    """A format 1 file relabelled as format 2 fails the termination proof, and the reverse."""
    # (metadata.nnc's ANS streams all have one-symbol tables: no words in either format)
    uses_ans = [e["file"] for e in FORMAT1_MANIFEST["vectors"]
                if any("ans" in c for c in e["codecs"]) and e["file"] != "metadata.nnc"]
    assert len(uses_ans) >= 8
    vectors = Path(__file__).resolve().parent.parent / "spec" / "vectors"
    refused = 0
    for name in uses_ans:
        with pytest.raises(nncodec.CorruptFileError, match="final state"):
            nncodec.load(_with_major((FORMAT1 / name).read_bytes(), 2), framework="np")
        data = (vectors / name).read_bytes()
        try:
            relabelled = nncodec.load(_with_major(data, 1), framework="np")
        except nncodec.CorruptFileError:
            refused += 1
            continue
        # accepted under format 1's rule only if no ANS stream of the format 2 file has words (every
        # table has one symbol, as int64_lossless's do since the cheaper coder choice of issue 13):
        # then both rules read the same tensors
        want = nncodec.load(data, framework="np")
        assert all(np.array_equal(relabelled[k], want[k]) for k in want), name
    assert refused, "no format 2 vector has an ANS stream with words to check the reverse with"


def test_a_future_major_is_refused_naming_the_version():
    data = _with_major((FORMAT1 / "minimal.nnc").read_bytes(), 3)
    with pytest.raises(nncodec.UnsupportedVersionError, match=r"3\.0 needs a newer nncodec.*1\.x, 2\.x"):
        nncodec.open(data)
