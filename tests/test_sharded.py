"""Sharded .nnc checkpoints (spec §22): one .nnc per input shard plus NAME.nnc.index.json; encoding by
parts (--shard I/N) writes exactly what one run writes; every reader verb takes the index; a
malformed or hostile index is a typed NNCodecError, never a path outside the index's folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from nncodec_cli.main import main
from safetensors.torch import save_file as st_save

import nncodec
from nncodec.sharded import index_bytes, read_index


def run(*args: object):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


@pytest.fixture
def hf_checkpoint(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """A Hugging Face style sharded safetensors checkpoint of 3 shards (fp32 and bf16 tensors)."""
    g = torch.Generator().manual_seed(0)
    every: dict[str, torch.Tensor] = {}
    weight_map = {}
    for i in range(3):
        part = {f"l{i}.w": torch.randn(40, 30, generator=g) * 0.05, f"l{i}.b": torch.randn(30, generator=g).to(torch.bfloat16)}
        name = f"model-{i + 1:05d}-of-00003.safetensors"
        st_save(part, str(tmp_path / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in part})
        every.update(part)
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {"total_size": 1}, "weight_map": dict(sorted(weight_map.items()))}))
    return index, every


def test_sharded_encode_reads_back_through_every_verb(tmp_path: Path, hf_checkpoint) -> None:
    index, tensors = hf_checkpoint
    out = tmp_path / "nnc" / "model.nnc.index.json"
    out.parent.mkdir()
    result = run("encode", index, "-o", out, "-q")
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in out.parent.iterdir())
    assert files == ["model-00001-of-00003.nnc", "model-00002-of-00003.nnc", "model-00003-of-00003.nnc",
                     "model.nnc.index.json"]
    loaded = nncodec.load_file(out)
    assert list(loaded) == list(json.loads(index.read_text())["weight_map"])
    assert all(torch.equal(loaded[k], v) and loaded[k].dtype == v.dtype for k, v in tensors.items())
    with nncodec.open(out) as f:
        assert len(f) == 6 and "l1.w" in f and f.metadata()["format"] == "pt"
        assert torch.equal(f.get_tensor("l2.w"), tensors["l2.w"])
        assert torch.equal(f.get_slice("l1.w")[3:7], tensors["l1.w"][3:7])
        report = f.info()
        assert report["file_bytes"] == sum((out.parent / n).stat().st_size for n in files[:3])
        f.verify()
    assert run("verify", out).exit_code == 0
    info = run("info", out)
    assert info.exit_code == 0 and "3 shards" in info.stdout
    assert run("decode", out, "-o", tmp_path / "back.safetensors", "-q").exit_code == 0
    from safetensors.torch import load_file

    back = load_file(str(tmp_path / "back.safetensors"))
    assert all(torch.equal(back[k], v) for k, v in tensors.items())


def test_encoding_by_parts_writes_what_one_run_writes(tmp_path: Path, hf_checkpoint) -> None:
    index, _ = hf_checkpoint
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    whole.mkdir()
    parts.mkdir()
    assert run("encode", index, "-o", whole / "m.nnc.index.json", "-q").exit_code == 0
    for i in (2, 1):  # any order, any process or machine
        assert run("encode", index, "-o", parts / "m.nnc.index.json", "--shard", f"{i}/2", "-q").exit_code == 0
    names = sorted(p.name for p in whole.iterdir())
    assert names == sorted(p.name for p in parts.iterdir())
    assert all((whole / n).read_bytes() == (parts / n).read_bytes() for n in names)
    # the single-file encode holds the same tensors in the same order
    assert run("encode", index, "-o", tmp_path / "one.nnc", "-q").exit_code == 0
    assert list(nncodec.load_file(tmp_path / "one.nnc")) == list(nncodec.load_file(whole / "m.nnc.index.json"))


def test_shard_option_needs_an_index_output_and_a_valid_part(tmp_path: Path, hf_checkpoint) -> None:
    index, _ = hf_checkpoint
    usage = run("encode", index, "-o", tmp_path / "m.nnc", "--shard", "1/2")
    assert usage.exit_code == 2 and "--shard" in usage.output
    bad = run("encode", index, "-o", tmp_path / "m.nnc.index.json", "--shard", "3/2")
    assert bad.exit_code == 1 and "1 <= I <= N" in bad.stderr


def test_an_index_with_other_contents_is_not_replaced_without_force(tmp_path: Path, hf_checkpoint) -> None:
    index, _ = hf_checkpoint
    out = tmp_path / "m.nnc.index.json"
    out.write_text("{}")
    result = run("encode", index, "-o", out, "-q")
    assert result.exit_code == 1 and ("already exists" in result.stderr or "other contents" in result.stderr)
    assert out.read_text() == "{}" and not list(tmp_path.glob("m-*.nnc"))


def _write_index(folder: Path, doc: object) -> Path:
    path = folder / "x.nnc.index.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


GOOD = {"format": "nnc-index", "version": 1, "weight_map": {"a": "x-1.nnc"}}
MALFORMED = {
    "not json": ("{", nncodec.FormatError),
    "not an object": ([1, 2], nncodec.FormatError),
    "duplicate member": ('{"format": "nnc-index", "format": "nnc-index", "version": 1, "weight_map": {"a": "x-1.nnc"}}',
                         nncodec.FormatError),
    "wrong format": ({**GOOD, "format": "safetensors"}, nncodec.FormatError),
    "newer version": ({**GOOD, "version": 2}, nncodec.UnsupportedVersionError),
    "boolean version": ({**GOOD, "version": True}, nncodec.FormatError),
    "unknown critical member": ({**GOOD, "shards": []}, nncodec.UnsupportedVersionError),
    "empty weight_map": ({**GOOD, "weight_map": {}}, nncodec.FormatError),
    "weight_map list": ({**GOOD, "weight_map": [["a", "x-1.nnc"]]}, nncodec.FormatError),
    "metadata not strings": ({**GOOD, "metadata": {"n": 1}}, nncodec.FormatError),
    "traversal": ({**GOOD, "weight_map": {"a": "../x-1.nnc"}}, nncodec.FormatError),
    "absolute": ({**GOOD, "weight_map": {"a": "/etc/passwd.nnc"}}, nncodec.FormatError),
    "subfolder": ({**GOOD, "weight_map": {"a": "sub/x-1.nnc"}}, nncodec.FormatError),
    "backslash": ({**GOOD, "weight_map": {"a": "..\\x-1.nnc"}}, nncodec.FormatError),
    "not .nnc": ({**GOOD, "weight_map": {"a": "x-1.safetensors"}}, nncodec.FormatError),
    "not a string": ({**GOOD, "weight_map": {"a": 3}}, nncodec.FormatError),
    "too deep": ('{"x-a": ' + "[" * 100 + "]" * 100 + "}", nncodec.LimitExceededError),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_indexes_are_typed_errors(tmp_path: Path, case: str) -> None:
    doc, error = MALFORMED[case]
    path = _write_index(tmp_path, doc)
    with pytest.raises(error):
        read_index(path)
    with pytest.raises(error):
        nncodec.load_file(path)
    result = run("verify", path)
    assert result.exit_code == 1 and result.stderr.startswith("error: ")


def test_shards_outside_the_folder_or_with_other_tensors_are_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    nncodec.save_file({"a": torch.ones(3)}, outside / "real.nnc")
    inside = tmp_path / "in"
    inside.mkdir()
    (inside / "x-1.nnc").symlink_to(outside / "real.nnc")  # a plain name that resolves elsewhere
    path = _write_index(inside, GOOD)
    with pytest.raises(nncodec.FormatError, match="outside"):
        nncodec.load_file(path)
    nncodec.save_file({"a": torch.ones(3), "b": torch.zeros(2)}, inside / "x-2.nnc")
    path = _write_index(inside, {**GOOD, "weight_map": {"a": "x-2.nnc"}})  # the shard holds "b" too
    with pytest.raises(nncodec.FormatError, match="different tensors"):
        nncodec.load_file(path)
    path = _write_index(inside, {**GOOD, "weight_map": {"a": "x-3.nnc"}})  # a missing shard
    with pytest.raises(FileNotFoundError):
        nncodec.load_file(path)


def test_index_bytes_are_deterministic_and_read_back() -> None:
    data = index_bytes({"b": "m-1.nnc", "a": "m-2.nnc"}, {"k": "v"})
    assert data == index_bytes({"b": "m-1.nnc", "a": "m-2.nnc"}, {"k": "v"})
    doc = json.loads(data)
    assert list(doc) == ["format", "version", "metadata", "weight_map"] and list(doc["weight_map"]) == ["b", "a"]
