"""Hardening II (issue 9), container side: header bombs, polyglots, foreign exceptions, writer/reader
agreement. Each attack is crafted here with correct checksums (as test_malformed does), then refused
with the right NNCodecError, within a memory bound that does not grow with what the file declares.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st
from test_malformed import raw_file

import nncodec
from nncodec import BadArgumentError, FormatError, LimitExceededError, NNCodecError
from nncodec.container import polyglot, strict_json
from nncodec.container.format import HEADER_ZSTD
from nncodec.container.writer import _layout
from nncodec.limits import limits_table

SPEC = Path(__file__).resolve().parent.parent / "spec" / "FORMAT.md"


def fast_zstd(text: bytes) -> bytes:
    """A zstd frame made quickly (level 1): the tests build big headers."""
    return zstandard.ZstdCompressor(level=1, write_content_size=True).compress(text)


def peak_traced(fn) -> int:
    """Peak bytes traced (Python and numpy allocations) while fn() runs; fn may raise NNCodecError."""
    tracemalloc.start()
    try:
        fn()
    except NNCodecError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def open_all(data: bytes) -> None:
    with nncodec.open(data, framework="np") as f:
        f.info()
        f.verify()
        for name in f:
            f.get_tensor(name)
            f.components(name)


# ----------------------------------------------------------------------------- header bombs


def test_json_depth_scan_memory_does_not_grow_with_string_length() -> None:
    """The old string regex cost ~118 bytes of stack per character (2 KB header -> 7.6 GiB)."""
    text = b'{"x-a":"' + b"a\\\"" * 700_000 + b'","tensors":{}}'
    assert peak_traced(lambda: nncodec.open(raw_file(text))) < 4 * len(text) + (16 << 20)
    assert strict_json.nesting_depth(text) == 2


_TEXT = st.text(alphabet='[]{}"\\ab\n', max_size=6)
_JSON = st.recursive(st.none() | _TEXT | st.integers(),
                     lambda c: st.lists(c, max_size=3) | st.dictionaries(_TEXT, c, max_size=3), max_leaves=20)


def _depth(obj: object) -> int:
    if isinstance(obj, (list, dict)):
        return 1 + max((_depth(v) for v in (obj.values() if isinstance(obj, dict) else obj)), default=0)
    return 0


@settings(max_examples=150, deadline=None)
@given(_JSON, st.integers(1, 7))
def test_json_depth_scan_matches_the_parsed_depth_across_chunk_borders(obj: object, chunk: int) -> None:
    old = strict_json._CHUNK
    strict_json._CHUNK = chunk
    try:
        assert strict_json.nesting_depth(json.dumps(obj).encode()) == _depth(obj)
    finally:
        strict_json._CHUNK = old


def test_zstd_header_may_not_expand_past_the_ratio() -> None:
    """4 M sections in a 3.8 KB file took 1.5 GiB and 35 s: now refused before decompressing."""
    text = b'{"tensors":{},"sections":[' + b",".join([b"[0,0]"] * 1_000_000) + b"]}"
    data = raw_file(fast_zstd(text), encoding=HEADER_ZSTD)
    assert len(data) < 10_000
    with pytest.raises(LimitExceededError, match="max_header_expansion"):
        nncodec.open(data)
    deep = b'{"x-d":[' + b",".join([b'{"a":{"b":{"c":{}}}}'] * 100_000) + b'],"tensors":{}}'
    with pytest.raises(LimitExceededError, match="max_header_expansion"):
        nncodec.open(raw_file(fast_zstd(deep), encoding=HEADER_ZSTD))


def test_every_section_and_tensor_is_backed_by_file_bytes() -> None:
    """Incompressible CRCs keep the ratio low, but 2,000 sections in a 9 KB file are too many."""
    rng = np.random.default_rng(0)
    table = [[0, int(c)] for c in rng.integers(1, 2**32, 2000)]
    text = json.dumps({"tensors": {}, "sections": table}, separators=(",", ":")).encode()
    data = raw_file(fast_zstd(text), encoding=HEADER_ZSTD)
    with pytest.raises(LimitExceededError, match="min_file_bytes_per_entry"):
        nncodec.open(data)
    names = {f"t{i}": {"alias": "w"} for i in range(8000)}
    junk = rng.integers(0, 2**63, 1500).tolist()  # incompressible: the ratio stays under 16
    text = json.dumps({"x-junk": junk, "tensors": names}, separators=(",", ":")).encode()
    with pytest.raises(LimitExceededError, match="min_file_bytes_per_alias"):
        nncodec.open(raw_file(fast_zstd(text), encoding=HEADER_ZSTD))


def test_the_writer_keeps_many_empty_tensors_readable() -> None:
    """700 k empty tensors compressed 39x; the writer stores such a header as JSON so that every
    entry is backed by file bytes, and the file reads back."""
    tensors = {f"t{i}": np.zeros((0,), np.float32) for i in range(3000)}
    data = nncodec.save(tensors)
    with nncodec.open(data, framework="np") as f:
        assert f.info()["header_encoding"] in ("json", "indexed")  # not zstd
        assert len(f) == 3000 and f.get_tensor("t2999").shape == (0,)


def test_aliases_are_indexed_once() -> None:
    """get_tensor was O(aliases) per call (tensors x aliases: 155 s for a 40 KB file)."""
    import torch

    w = torch.arange(4, dtype=torch.float32)
    data = nncodec.save({"w": w, **{f"a{i}": w for i in range(50)}})

    class Counting(dict):
        calls = 0

        def values(self):  # type: ignore[override]
            Counting.calls += 1
            return super().values()

    with nncodec.open(data, framework="np") as f:
        f._tf._aliases = Counting(f._tf._aliases)
        values = [f.get_tensor(n) for n in f]
    assert Counting.calls <= 1  # the alias targets are gathered once per file, not per call
    assert all(v is values[0] for v in values)


def test_load_refuses_tensors_that_together_exceed_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """4,096 constant tensors asked for 1 TiB through load_file: the total is checked first."""
    from nncodec import decode_memory

    data = nncodec.save({f"c{i}": np.zeros(1 << 22, np.float32) for i in range(32)})  # 32 x 16 MiB constants
    free = decode_memory.WORKING_SET + (100 << 20)  # room for a few of them, not for all 512 MiB
    monkeypatch.setattr(decode_memory, "available_memory_bytes", lambda: free)
    with pytest.raises(LimitExceededError, match="32 tensors"):
        nncodec.load(data)
    with nncodec.open(data) as f:  # one tensor at a time still fits
        assert f.get_tensor("c0").numel() == 1 << 22


# ----------------------------------------------------------------------------- polyglots


def _zip(trailing: bytes = b"") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("evil.txt", "extracted from a .nnc file")
    return buf.getvalue() + trailing


def _zip_readers_fail(data: bytes, tmp_path: Path) -> None:
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(io.BytesIO(data)).namelist()
    if shutil.which("unzip"):
        path = tmp_path / "f.nnc"
        path.write_bytes(data)
        r = subprocess.run(["unzip", "-l", str(path)], capture_output=True, text=True, errors="replace")
        assert r.returncode not in (0, 1) and "evil.txt" not in r.stdout  # 1 = warnings only


@pytest.mark.parametrize("trailing", [b"", b"\0", b"x" * 1000])
def test_the_writer_never_makes_a_zip_even_with_bytes_after_the_record(trailing: bytes, tmp_path: Path) -> None:
    data = nncodec.save({"blob": np.frombuffer(_zip(trailing), np.uint8), "b": np.ones(3, np.float32)})
    _zip_readers_fail(data, tmp_path)
    open_all(data)
    assert not polyglot.zip_eocd_positions(data[-polyglot.ZIP_TAIL:], max(0, len(data) - polyglot.ZIP_TAIL))


@pytest.mark.parametrize("trailing", [b"\0", b"abc" * 100])
def test_a_zip_with_trailing_bytes_in_an_optional_section_is_refused(trailing: bytes, tmp_path: Path) -> None:
    blob = _zip()
    body = {"tensors": {"blob": {"dtype": "uint8", "shape": [len(blob)], "raw": {"s": 0, "codec": "copy"}}}}
    crafted = _layout(body, [blob, trailing], {1: "x-junk"}, 1, None)
    assert zipfile.ZipFile(io.BytesIO(crafted)).namelist() == ["evil.txt"]  # a real polyglot
    with pytest.raises(FormatError, match="polyglot"):
        nncodec.open(crafted)


def test_an_eocd_signature_whose_fields_do_not_fit_is_not_a_zip() -> None:
    tail = b"\0" * 100 + polyglot.ZIP_EOCD + b"\0" * 16 + (60000).to_bytes(2, "little") + b"\0" * 10
    assert polyglot.zip_eocd_positions(tail, 0) == []  # the comment runs past the end
    tail = b"\0" * 100 + polyglot.ZIP_EOCD + b"\0" * 8 + (10_000).to_bytes(4, "little") + b"\0" * 6
    assert polyglot.zip_eocd_positions(tail, 0) == []  # a central directory bigger than what precedes
    assert polyglot.zip_eocd_positions(tail, 20_000) == [20_100]


# ----------------------------------------------------------------------------- foreign exceptions


def test_every_dimension_is_bounded() -> None:
    """[0, 2^53-1, 2^53-1] has no elements but made numpy's reshape raise ValueError."""
    text = json.dumps({"tensors": {"e": {"dtype": "float32", "shape": [0, 2**53 - 1, 2**53 - 1],
                                         "raw": {"s": 0, "codec": "copy"}}}, "sections": [[0, 0]]}).encode()
    data = raw_file(text)
    for attempt in (lambda: nncodec.load(data), lambda: open_all(data)):
        with pytest.raises(LimitExceededError, match="non-zero dimensions"):
            attempt()
    with pytest.raises(BadArgumentError):  # and the writer refuses to make one
        nncodec.save({"e": nncodec.RawTensor(_dt("float32"), (0, 2**40, 2**40), np.zeros(0, np.uint32))})


def _dt(name: str):
    from nncodec.dtypes import DTYPES

    return DTYPES[name]


def test_memory_error_becomes_a_limit_error_in_info_and_components(monkeypatch: pytest.MonkeyPatch) -> None:
    from nncodec.compress import quantize_uniform
    from nncodec.tensorfile import TensorFile

    w = np.linspace(-1, 1, 64, dtype=np.float32)
    data = nncodec.save({"q": quantize_uniform(w, _dt("float32"), 0.1)})

    def boom(self, what):
        raise MemoryError

    monkeypatch.setattr(TensorFile, "decode_components", boom)
    monkeypatch.setattr(TensorFile, "components_of", boom)  # what info() decodes for the sparsity
    with nncodec.open(data) as f:
        with pytest.raises(LimitExceededError):
            f.info()
        with pytest.raises(LimitExceededError):
            f.components("q")


# ----------------------------------------------------------------------------- writer = reader


def test_limits_table_in_the_spec_is_generated_from_the_code() -> None:
    assert limits_table() in SPEC.read_text(encoding="utf-8"), (
        "spec/FORMAT.md §11 must hold nncodec.limits.limits_table() verbatim:\n" + limits_table())


def test_the_writer_refuses_metadata_the_reader_would_refuse() -> None:
    """A .safetensors with 17 MiB of metadata encoded to a file that info and load_file refused."""
    with pytest.raises(BadArgumentError, match="metadata size"):
        nncodec.save({"w": np.ones(2, np.float32)}, {"big": "x" * (17 << 20)})


def test_the_writer_refuses_a_file_the_default_reader_refuses() -> None:
    from nncodec.components import RawTensor

    huge = RawTensor(_dt("float32"), (0, 2**35), np.zeros(0, np.uint32))
    with pytest.raises(BadArgumentError, match="default limits"):
        nncodec.save({"e": huge})


def test_a_symlinked_shard_outside_the_index_folder_is_refused(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    from nncodec.errors import UnsupportedInputError
    from nncodec.io import read_checkpoint

    outside = tmp_path / "secret"
    outside.mkdir()
    save_file({"w": np.ones(2, np.float32)}, str(outside / "real.safetensors"))
    model = tmp_path / "model"
    model.mkdir()
    os.symlink(outside / "real.safetensors", model / "shard.safetensors")
    index = model / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"w": "shard.safetensors"}}))
    with pytest.raises(UnsupportedInputError, match="outside"):
        read_checkpoint(index)
    (model / "shard.safetensors").unlink()
    shutil.copy(outside / "real.safetensors", model / "local.safetensors")
    os.symlink("local.safetensors", model / "shard.safetensors")  # a link inside the folder is fine
    tensors, _, _ = read_checkpoint(index)
    assert list(tensors) == ["w"]


def test_a_deeply_nested_checkpoint_is_refused_cleanly(tmp_path: Path) -> None:
    """A .pt holding a 3,000-deep list raised RecursionError in `nncodec encode`."""
    import torch

    deep: list = []
    for _ in range(3000):
        deep = [deep]
    path = tmp_path / "deep.pt"
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)  # torch.save recurses while writing it; reading must not
    try:
        torch.save({"w": torch.ones(2), "deep": deep}, path)
    finally:
        sys.setrecursionlimit(limit)
    from nncodec.io import read_checkpoint

    try:
        tensors, meta, notes = read_checkpoint(path)
    except NNCodecError:
        return
    assert list(tensors) == ["w"] and "deep" not in meta and any("deep" in n for n in notes)


# ----------------------------------------------------------------------------- terminal injection

EVIL = ["\x1b]0;pwned\x07", "\x1b[2J", "x\nok: forged.nnc: every checksum matches", "\u202egnp.exe", "\x9b31m", "a\rb"]


def _terminal_safe(text: str) -> None:
    for line in text.splitlines():
        assert line.isprintable(), repr(line)
    assert not any(ln.startswith("ok: forged") for ln in text.splitlines())


def test_human_cli_output_escapes_every_non_printable_character(tmp_path: Path) -> None:
    from click.testing import CliRunner
    from nncodec_cli.main import main

    from nncodec.compress import quantize_uniform

    w = np.linspace(-1, 1, 32, dtype=np.float32)
    tensors = {e: np.ones(2, np.float32) for e in EVIL}
    tensors[EVIL[0] + "q"] = quantize_uniform(w, _dt("float32"), 0.1)
    path = tmp_path / "evil.nnc"
    nncodec.save_file(tensors, path, metadata={e: e for e in EVIL})
    runner = CliRunner()
    for args in (["info", path], ["verify", path]):
        result = runner.invoke(main, [str(a) for a in args])
        assert result.exit_code == 0, result.output
        _terminal_safe(result.output)
    info = runner.invoke(main, ["info", str(path)]).output
    assert "\\x1b]0;pwned\\x07" in info and "\\u202egnp.exe" in info and "x\\nok: forged" in info
    as_json = json.loads(runner.invoke(main, ["info", "--json", str(path)]).output)  # JSON stays exact
    assert set(as_json["metadata"]) == set(EVIL) and {t["name"] for t in as_json["tensors"]} >= set(EVIL)
    out = tmp_path / "evil.safetensors"
    result = runner.invoke(main, ["decode", str(path), "-o", str(out)])
    assert result.exit_code == 0
    _terminal_safe(result.output)


def test_cli_errors_escape_names_from_the_file(tmp_path: Path) -> None:
    from click.testing import CliRunner
    from nncodec_cli.main import main

    text = json.dumps({"tensors": {"\x1b[2Jx": {"alias": "\x1b]0;t\x07\nok: forged"}}}).encode()
    path = tmp_path / "bad.nnc"
    path.write_bytes(raw_file(text))
    for command in ("info", "verify", "decode"):
        result = CliRunner().invoke(main, [command, str(path)])
        assert result.exit_code == 1
        _terminal_safe(result.stderr)
        assert result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1


# ----------------------------------------------------------------------------- header-entry mutations


def _decoded(data: bytes) -> dict[str, bytes]:
    with nncodec.open(data, framework="np") as f:
        f.info()
        f.verify()
        return {name: f.get_tensor(name).tobytes() + str(f.get_tensor(name).shape).encode() for name in f}


def _parts(body: dict) -> list[tuple[str, str, dict]]:
    return [(name, kind, part) for name, entry in body["tensors"].items() if "alias" not in entry
            for kind, part in entry.items() if isinstance(part, dict) and "s" in part]


OPS = ("drop_tensor", "drop_part", "drop_section", "orphan_section", "optional_section", "share_section",
       "optional_key", "critical_key", "append_bytes", "drop_bytes")


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(OPS), st.integers(0, 1000), st.integers(1, 9))
def test_header_entry_mutations_never_succeed_silently(op: str, pick: int, n: int) -> None:
    """Random valid files, one header entry or section added or dropped, every CRC recomputed:
    an NNCodecError, or (for optional additions only) exactly the original tensors."""
    import copy

    from test_malformed import rebuild, sample_parts

    body, sections, _ = sample_parts()
    original = _decoded(rebuild(body, sections))
    body, sections, kinds = copy.deepcopy(body), list(sections), {}
    names = list(body["tensors"])
    parts = _parts(body)
    name, kind, part = parts[pick % len(parts)]
    harmless = False
    expected = original
    if op == "drop_tensor":
        dropped = names[pick % len(names)]
        if "alias" in body["tensors"][dropped]:  # a valid file with one name fewer: no bytes go unused
            harmless, expected = True, {k: v for k, v in original.items() if k != dropped}
        del body["tensors"][dropped]
    elif op == "drop_part":
        del body["tensors"][name][kind]
    elif op == "drop_section":
        del sections[pick % len(sections)]
    elif op == "orphan_section":
        sections.append(bytes(n))
    elif op == "optional_section":
        sections.append(bytes(n))
        kinds[len(sections) - 1] = "x-extra"
        harmless = True
    elif op == "share_section":
        body["tensors"][f"copy{n}"] = copy.deepcopy(body["tensors"][name])
    elif op == "optional_key":
        body["tensors"][name][f"x-{n}"] = {"any": [n]}
        harmless = True
    elif op == "critical_key":
        body["tensors"][name][f"k{n}"] = n
    elif op == "append_bytes":
        sections[part["s"]] += bytes(n)
        # a codebook's size is its section's length / 4 (spec §6.5): whole float32 zeros appended are
        # unused codebook entries, a valid file that decodes to exactly the original tensors
        harmless = kind == "quantizer" and body["tensors"][name]["q"]["mode"] == "codebook" and n % 4 == 0
    elif op == "drop_bytes":
        if "ans" in part["codec"] or "ans" in json.dumps(part.get("p", {})) or not sections[part["s"]]:
            return  # exhausted ANS streams are issue 9 finding 3 (the `harden` helper)
        sections[part["s"]] = sections[part["s"]][:-min(n, len(sections[part["s"]]))]
    data = rebuild(body, sections, kinds=kinds)
    try:
        decoded = _decoded(data)
    except NNCodecError:
        assert not harmless, op
        return
    assert harmless and decoded == expected, f"{op} on {name}/{kind} decoded without an error"


def test_encode_refuses_a_checkpoint_whose_metadata_the_reader_would_refuse(tmp_path: Path) -> None:
    """`nncodec encode` of a .safetensors with 17 MiB of metadata: one clear error, no file written."""
    from click.testing import CliRunner
    from nncodec_cli.main import main
    from safetensors.numpy import save_file

    src = tmp_path / "big_meta.safetensors"
    save_file({"w": np.ones(2, np.float32)}, str(src), metadata={"notes": "x" * (17 << 20)})
    result = CliRunner().invoke(main, ["encode", str(src), "-o", str(tmp_path / "out.nnc")])
    assert result.exit_code == 1 and "metadata size in bytes" in result.stderr
    assert not (tmp_path / "out.nnc").exists()


def test_fuzz_valid_crc_mode_lets_mutations_past_every_crc() -> None:
    """fuzz/common.fix_checksums: a mutated file gets correct CRCs, so the mutation reaches a decoder."""
    from script_modules import load_script

    fix_checksums = load_script("fuzz/common.py").fix_checksums  # benchmarks/ has a `common` module too
    from test_malformed import sample_file

    for align in (1, 64):
        data = sample_file(align)
        assert _decoded(fix_checksums(data)) == _decoded(data)
        for i in range(41, len(data), 13):
            mutated = bytearray(data)
            mutated[i] ^= 0x10
            try:
                _decoded(fix_checksums(bytes(mutated)))
            except NNCodecError as e:
                assert "checksum mismatch" not in str(e), (i, e)


def test_fuzz_valid_crc_mode_reaches_sections_behind_a_dictionary_header() -> None:
    """fix_checksums on files whose header is compressed against header dictionary 1 (encoding 5):
    an untouched file comes back byte for byte, and a mutated section gets its CRC recomputed, so
    the fuzzers' valid-CRC mode reaches the dataset decoder behind such a header too."""
    from script_modules import load_script

    from nncodec.container.format import HEADER_DICT, PREAMBLE, PREAMBLE_SIZE
    from nncodec.container.reader import Container

    fix_checksums = load_script("fuzz/common.py").fix_checksums
    folder = Path(__file__).resolve().parent.parent / "spec" / "vectors" / "dataset"
    seen = 0
    for path in sorted(folder.glob("*.nnc")):
        data = path.read_bytes()
        fields = PREAMBLE.unpack(data[:PREAMBLE_SIZE])
        encoding, h_len = fields[3], fields[5]
        if not encoding & HEADER_DICT:
            continue
        seen += 1
        assert fix_checksums(data) == data, path.name
        body = PREAMBLE_SIZE + h_len
        for i in range(body, len(data), max(1, (len(data) - body) // 7)):
            mutated = bytearray(data)
            mutated[i] ^= 0x10
            with Container(fix_checksums(bytes(mutated))) as c:
                for k in range(len(c.sections)):
                    c.read_section(k)  # raises CorruptFileError("... checksum mismatch") if not recomputed
    assert seen >= 3
