"""Golden vectors (spec/vectors): what every decoder must produce, and what our encoder must write.

- Decoding each vector gives the per-tensor sha256 recorded in the manifest. This must never change:
  a failure here means old files now decode differently.
- Encoding the same inputs (rebuilt by spec/make_vectors.py) gives the same file bytes, and so does
  re-encoding a vector's decoded components. These pin the encoder's choices; they hold for the
  library versions recorded in the manifest's `generator` (libzstd output can change between versions).
- A few rules of spec/FORMAT.md that no valid vector can show are checked on hand-built files.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import zstandard
from script_modules import load_script

import nncodec
from nncodec.codecs import ans, zstd
from nncodec.codecs import raw as raw_codec
from nncodec.codecs.base import EncodeOptions
from nncodec.codecs.binary import Reader, encode_uvarints, write_uvarint, zigzag
from nncodec.container.writer import assemble
from nncodec.dtypes import DTYPES
from nncodec.tensorfile import open_tensor_file
from nncodec.tensorwriter import Alias, encode_file

ROOT = Path(__file__).resolve().parent.parent
VECTOR_DIR = ROOT / "spec" / "vectors"
MANIFEST = json.loads((VECTOR_DIR / "manifest.json").read_text(encoding="utf-8"))
ENTRIES = {e["file"]: e for e in MANIFEST["vectors"]}


mv = load_script("spec/make_vectors.py")
VECTORS = {f"{make.__name__}.nnc": make for make in mv.VECTORS}


def _versions_note() -> str:
    return f"(vectors made with {MANIFEST['generator']}; installed: {mv._versions()})"


def test_manifest_lists_every_vector_file():
    on_disk = {p.name for p in VECTOR_DIR.glob("*.nnc")}
    assert on_disk == set(ENTRIES) == set(VECTORS)
    assert len(on_disk) >= 6


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_vector_file_matches_manifest(name):
    data = (VECTOR_DIR / name).read_bytes()
    assert len(data) == ENTRIES[name]["bytes"]
    assert hashlib.sha256(data).hexdigest() == ENTRIES[name]["sha256"]


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_decoded_tensors_match_manifest(name):
    """The normative check: every tensor decodes to the recorded dtype, shape and bytes."""
    data = (VECTOR_DIR / name).read_bytes()
    expected = ENTRIES[name]["tensors"]
    with nncodec.open(data, framework="np") as f:
        assert f.keys() == list(expected)
        assert f.metadata() == ENTRIES[name]["metadata"]
        f.verify()
        for tname, want in expected.items():
            arr = f.get_tensor(tname)
            le = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"), copy=False)
            dt = DTYPES[want["dtype"]]  # bfloat16 and float8 come back as their storage words
            assert arr.dtype.name == (dt.storage.name if dt.words_only else want["dtype"]), tname
            assert list(arr.shape) == want["shape"], tname
            assert hashlib.sha256(le.tobytes()).hexdigest() == want["sha256"], tname
        report = f.info()
    assert report["file_bytes"] == len(data)


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_decoded_tensors_match_through_torch(name):
    """The torch path (what load_file returns) gives the same bytes, bfloat16 included."""
    import torch

    data = (VECTOR_DIR / name).read_bytes()
    for tname, t in nncodec.load(data).items():
        want = ENTRIES[name]["tensors"][tname]
        assert str(t.dtype) == f"torch.{want['dtype']}"
        raw = t.contiguous().view(torch.uint8) if t.dim() else t.reshape(1).view(torch.uint8)
        assert hashlib.sha256(raw.numpy().tobytes()).hexdigest() == want["sha256"], tname


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_vectors_decode_to_their_inputs(name):
    """What the hashes pin is right: lossless tensors decode to the input bits, quantized ones to
    FORMAT.md §7 computed independently (float64 products, torch casts), metadata as given."""
    mv._check_decodes_to_inputs(VECTORS[name](), (VECTOR_DIR / name).read_bytes())


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_encoding_the_inputs_again_gives_identical_bytes(name):
    v = VECTORS[name]()
    assert mv.encode_vector(v) == (VECTOR_DIR / name).read_bytes(), f"encoder output changed {_versions_note()}"


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_reencoding_decoded_components_gives_identical_bytes(name):
    """Decode to components (not values) and encode them again: the file is a fixed point."""
    data = (VECTOR_DIR / name).read_bytes()
    enc = ENTRIES[name]["encode"]
    tf = open_tensor_file(data, nncodec.DEFAULT_LIMITS)
    try:
        comps = {n: Alias(tf.aliases[n]) if n in tf.aliases else tf.decode_components(n) for n in tf.names}
        options = EncodeOptions(prefer=enc["prefer"], chunk_bytes=enc.get("chunk_bytes", EncodeOptions.chunk_bytes))
        again = encode_file(comps, tf.metadata or None, options, align=tf.container.align)
    finally:
        tf.container.close()
    assert tf.container.align == enc["align"]
    assert again == data, f"re-encoded components differ {_versions_note()}"


def test_vectors_cover_the_format():
    """The set of vectors exercises every codec and container feature the spec defines."""
    codecs = set().union(*(e["codecs"] for e in MANIFEST["vectors"]))
    kinds = {c.split("[")[0] for c in codecs}
    assert kinds >= {"raw/copy", "raw/zstd", "raw/planes", "raw/chunks", "mask/ans", "mask/ans-rows", "mask/zstd",
                     "levels/ans", "levels/zstd", "quantizer/f32"}
    chunk_codecs = {m for c in codecs if c.startswith("raw/chunks[") for m in c[c.index("[") + 1 : -1].split(",")}
    assert chunk_codecs == {"copy", "zstd", "planes"}
    methods = {m for c in codecs if c.startswith("raw/planes[") for m in c[c.index("[") + 1 : -1].split(",")}
    assert methods == {"copy", "zstd", "ans", "pairs"}
    encodings = {e["header_encoding"] for e in MANIFEST["vectors"]}
    assert encodings >= {"json", "zstd"} and encodings & {"indexed", "indexed+zstd"}
    assert any(e["encode"]["align"] > 1 for e in MANIFEST["vectors"])
    tensors = [t for e in MANIFEST["vectors"] for t in e["tensors"].values()]
    assert {t["dtype"] for t in tensors} == set(DTYPES)
    assert any("alias" in t for t in tensors)
    assert any(t["shape"] == [] for t in tensors) and any(0 in t["shape"] for t in tensors)


# ------------------------------------------------------------------ rules of spec/FORMAT.md, one file each


def _file(tensors: dict, sections: list[bytes], meta: dict | None = None) -> bytes:
    return assemble({"tensors": tensors, **({"meta": meta} if meta else {})}, sections)


def _levels_file(levels_payload: bytes, codec: str = "ans", count: int = 3) -> bytes:
    entry = {"dtype": "float32", "shape": [count], "q": {"mode": "uniform"},
             "levels": {"s": 0, "codec": codec}, "quantizer": {"s": 1, "codec": "f32"}}
    return _file({"t": entry}, [levels_payload, np.float32(0.5).tobytes()])


def _decode_all(data: bytes) -> None:
    with nncodec.open(data, framework="np") as f:
        for name in f.keys():
            f.get_tensor(name)


def test_spec_8_3_a_skippable_frame_is_not_a_zstd_frame():
    skippable = struct.pack("<II", 0x184D2A50, 0)
    data = _file({"e": {"dtype": "float32", "shape": [0], "raw": {"s": 0, "codec": "zstd"}}}, [skippable])
    with pytest.raises(nncodec.CorruptFileError):
        _decode_all(data)


def test_spec_8_4_count_tables_summing_over_2_53_are_refused():
    table = write_uvarint(0) + write_uvarint(3) + write_uvarint(2**52) * 2 + write_uvarint(1)
    with pytest.raises(nncodec.CorruptFileError, match="2\\*\\*53"):
        _decode_all(_levels_file(table))


def test_spec_8_4_alphabet_must_fit_int32():
    table = write_uvarint(zigzag(2**31)) + write_uvarint(1) + write_uvarint(3)
    with pytest.raises(nncodec.CorruptFileError, match="int32"):
        _decode_all(_levels_file(table))


def test_spec_4_2_unpaired_surrogates_and_big_integers_are_refused():
    with pytest.raises(nncodec.FormatError, match="surrogate"):
        nncodec.open(_file({}, [], meta={"\ud800": "v"}))
    big = _file({"e": {"dtype": "float32", "shape": [0, 2**53], "raw": {"s": 0, "codec": "copy"}}}, [b""])
    with pytest.raises(nncodec.FormatError, match="2\\d* - 1|9007199254740991"):
        nncodec.open(big)
    wide = _file({"e": {"dtype": "float32", "shape": [0, 2**53 - 1], "raw": {"s": 0, "codec": "copy"}}}, [b""])
    with pytest.raises(nncodec.LimitExceededError, match="non-zero dimensions"):  # §11: every dimension bounded
        nncodec.open(wide)
    ok = _file({"e": {"dtype": "float32", "shape": [0, 2**34], "raw": {"s": 0, "codec": "copy"}}}, [b""])
    with nncodec.open(ok, framework="np") as f:
        assert f.get_tensor("e").shape == (0, 2**34)


def test_spec_9_2_ans_rows_counts_must_match_the_decoded_rows():
    row = np.array([1, 1, 0, 0])  # two ones, but the stored count says one
    words = ans.encode(row, ans.CountTable(0, np.array([3, 1], dtype=np.uint64)))
    payload = encode_uvarints(np.array([1, 0], dtype=np.uint64)) + words
    entry = {"dtype": "float32", "shape": [2, 4], "q": {"mode": "uniform"}, "mask": {"s": 0, "codec": "ans-rows"},
             "levels": {"s": 1, "codec": "zstd", "p": {"width": 1}}, "quantizer": {"s": 2, "codec": "f32"}}
    data = _file({"t": entry}, [payload, zstd.compress(b"\0"), np.float32(1).tobytes()])
    with pytest.raises(nncodec.CorruptFileError, match="row 0"):
        _decode_all(data)


# ------------------------------------------------------------------ an independent ANS decoder (§8.5, §8.6)

X0 = 0x1B873593  # spec §8.6: the final state, written here from the spec, not imported


def _spec_cdf(counts: list[int]) -> list[int]:
    """§8.5 steps 1-5, in plain Python floats (binary64, round-to-nearest-even)."""
    n, total = len(counts), sum(counts)
    p = [c / total for c in counts]
    t = 0.0
    for v in p:
        t += v
    scale = (2**24 - n) / t
    cdf, acc = [], 0.0
    for i in range(n):
        cdf.append(int(acc * scale) + i)  # floor of a non-negative product
        acc += p[i]
    return cdf + [2**24]


class _SpecDecoder:
    """§8.6 step by step: the words are popped from the end; the stream must end in X0."""

    def __init__(self, payload: bytes) -> None:
        assert len(payload) % 4 == 0
        self.w = list(struct.unpack(f"<{len(payload) // 4}I", payload))
        k = len(self.w)
        assert k == 0 or self.w[-1] != 0
        self.x = 0 if k == 0 else (self.w[-1] if k == 1 else (self.w[-1] << 32) | self.w[-2])
        self.next = k - 3

    def symbols(self, cdf: list[int], count: int) -> list[int]:
        out = []
        for _ in range(count):
            q = self.x & 0xFFFFFF
            i = next(j for j in range(len(cdf) - 1) if cdf[j] <= q < cdf[j + 1])
            self.x = (self.x >> 24) * (cdf[i + 1] - cdf[i]) + (q - cdf[i])
            if self.x < 2**32 and self.next >= 0:
                self.x = (self.x << 32) | self.w[self.next]
                self.next -= 1
            out.append(i)
        return out

    def ended(self) -> bool:
        return self.next == -1 and self.x == X0


def _spec_table(payload: bytes) -> tuple[int, list[int], bytes]:
    r = Reader(payload)
    table = ans.CountTable.read(r, 2**24)
    return table.lo, [int(c) for c in table.counts], bytes(r.take(r.remaining))


def _spec_planes(part, payload: bytes, words: np.ndarray) -> list[tuple[dict, bytes, np.ndarray]]:
    """(planes params, planes payload, the words it holds) of a raw part: the part itself, or (§23,
    read from the spec's text) every planes chunk of a chunks part, whose table is checked on the way:
    ceil(numel / n) chunks tiling the section, each with the CRC-32 of its bytes."""
    if part.codec == "planes":
        return [(part.params, payload, words)]
    n, table = part.params["n"], part.params["chunks"]
    assert len(table) == -(-words.size // n)
    out, offset = [], 0
    for k, chunk in enumerate(table):
        length, crc, codec = chunk[:3]
        piece = payload[offset : offset + length]
        assert len(piece) == length and zlib.crc32(piece) == crc
        if codec == "planes":
            out.append((chunk[3], piece, words[k * n : (k + 1) * n]))
        offset += length
    assert offset == len(payload)
    return out


def _spec_pairs(payload: bytes, count: int) -> list[int]:
    """§9.1 `pairs`, from the spec's text: k, the table, a uvarint frame length, the frame of the packed codes
    (first code in the high 4 bits), the escape bytes; code 15 takes the next escape byte."""
    k, table = payload[0], payload[1 : 1 + payload[0]]
    length, shift, i = 0, 0, 1 + k
    while True:
        length |= (payload[i] & 0x7F) << shift
        shift, i = shift + 7, i + 1
        if payload[i - 1] < 0x80:
            break
    packed = zstandard.ZstdDecompressor().decompress(payload[i : i + length])
    assert len(packed) == (count + 1) // 2
    codes = [c for b in packed for c in (b >> 4, b & 15)]
    assert all(c == 0 for c in codes[count:])
    escapes = iter(payload[i + length :])
    out = [next(escapes) if c == 15 else table[c] for c in codes[:count]]
    assert next(escapes, None) is None
    return out


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_an_independent_decoder_of_the_spec_reads_every_ans_and_pairs_stream(name):
    """Every ANS stream of the vectors, decoded by the procedure of §8.5/§8.6 written out above,
    gives nncodec's symbols and ends in the final state X0 with every word consumed; every `pairs`
    stream (§9.1, format 2.2), decoded by `_spec_pairs`, gives nncodec's symbols."""
    data = (VECTOR_DIR / name).read_bytes()
    tf = open_tensor_file(data, nncodec.DEFAULT_LIMITS)
    checked = 0
    try:
        for tname, e in tf.entries.items():
            comps = tf.decode_components(tname)
            for kind, part in e.parts.items():
                payload = tf.container.read_section(part.section)
                if kind == "raw" and part.codec in ("planes", "chunks"):
                    for params, piece, words_in in _spec_planes(part, payload, comps.words.reshape(-1)):
                        _, streams = raw_codec._split(words_in, e.dtype)
                        pos = 0
                        for (method, length), want in zip(params["streams"], streams, strict=True):
                            if method == "ans":
                                lo, counts, words = _spec_table(piece[pos : pos + length])
                                if len(counts) > 1:
                                    dec = _SpecDecoder(words)
                                    got = [lo + s for s in dec.symbols(_spec_cdf(counts), words_in.size)]
                                    assert got == want.astype(np.int64).tolist() and dec.ended(), (tname, name)
                                else:  # §8.7: a one-symbol table has no words; every symbol is lo
                                    assert words == b"" and (want.astype(np.int64) == lo).all(), (tname, name)
                                checked += 1
                            elif method == "pairs":
                                assert _spec_pairs(piece[pos : pos + length], words_in.size) == want.tolist(), (tname, name)
                                checked += 1
                            pos += length
                elif part.codec == "ans" and kind in ("mask", "levels", "pip"):
                    lo, counts, words = _spec_table(payload)
                    want = (comps.mask.reshape(-1).astype(np.int64) if kind == "mask" else
                            comps.pip.codes.astype(np.int64) if kind == "pip" else comps.levels)
                    if len(counts) > 1 and want.size:
                        dec = _SpecDecoder(words)
                        assert [lo + s for s in dec.symbols(_spec_cdf(counts), want.size)] == want.tolist()
                        assert dec.ended(), (tname, name)
                        checked += 1
                elif part.codec == "ans-rows":
                    rows = e.shape[0]
                    r = Reader(payload)
                    ones = [int(k) for k in r.uvarints(rows)]
                    dec = _SpecDecoder(bytes(r.take(r.remaining)))
                    row_len = e.numel // rows
                    mask_rows = comps.mask.reshape(rows, row_len)
                    for k, row in zip(ones, mask_rows, strict=True):
                        if 0 < k < row_len:
                            assert dec.symbols(_spec_cdf([row_len - k, k]), row_len) == row.astype(int).tolist()
                    assert dec.ended(), (tname, name)
                    checked += 1
    finally:
        tf.container.close()
    uses = [c for c in ENTRIES[name]["codecs"] if "ans" in c]
    assert checked or not uses or name == "metadata.nnc", (name, uses)


# ------------------------------------------------------------------ files of older 2.x writers (spec §12)
PRE_2_2 = Path(__file__).resolve().parent / "data" / "format2_1"  # these vectors as the 2.1 writer wrote them


@pytest.mark.parametrize("name", sorted(p.name for p in PRE_2_2.glob("*.nnc")))
def test_files_of_the_2_0_and_2_1_writer_still_decode_to_the_manifest(name):
    """The vectors re-encoded for 2.2 (pairs, 128 KiB zstd blocks, no frame checksums), as the previous
    writer wrote them: same tensors, so they must decode to the same hashes."""
    data = (PRE_2_2 / name).read_bytes()
    assert struct.unpack("<HH", data[8:12]) in ((2, 0), (2, 1))
    assert data != (VECTOR_DIR / name).read_bytes()  # the 2.2 writer's bytes differ
    got = mv.decoded_entries(data)
    for tname, want in ENTRIES[name]["tensors"].items():
        assert got[tname]["sha256"] == want["sha256"], (name, tname)
