"""The `nncodec` command line: every command, --force, atomic outputs, one-line errors."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from nncodec_cli import encode as encode_module
from nncodec_cli.main import main
from safetensors.torch import load_file as st_load
from safetensors.torch import save_file as st_save

import nncodec
from nncodec.compress import quantize_uniform
from nncodec.dtypes import DTYPES
from nncodec.errors import BadArgumentError

COMMANDS = ["encode", "decode", "info", "verify", "demo"]
PHASE = re.compile(r"^(encode|decode|budget|prune): ")  # progress lines when stderr is not a terminal


def run(*args: object):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def assert_one_line_error(result, code: int = 1, contains: str = "") -> str:
    """Exactly one `error:` line on stderr (notes and phase lines aside), no traceback, the given exit code."""
    assert result.exit_code == code, result.output
    lines = [ln for ln in result.stderr.splitlines() if not ln.startswith("note: ") and not PHASE.match(ln)]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    assert contains in lines[0]
    return lines[0]


def state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {"fc1.weight": torch.randn(16, 8, generator=g), "fc1.bias": torch.randn(16, generator=g),
            "half": torch.randn(3, 5, generator=g).to(torch.bfloat16), "count": torch.tensor(3),
            "special": torch.tensor([float("nan"), -0.0, float("inf")]), "empty": torch.zeros(0, 4)}


def bits(t: torch.Tensor) -> bytes:
    return t.contiguous().view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""


def assert_bit_exact(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and bits(a[k]) == bits(b[k]), k


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / "model.safetensors"
    st_save(state(), path, metadata={"arch": "tiny"})
    return path


@pytest.fixture
def nnc(tmp_path, checkpoint):
    out = tmp_path / "model.nnc"
    assert run("encode", checkpoint, "-o", out).exit_code == 0
    return out


def leftovers(directory) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.startswith(".nncodec-")]


# ----------------------------------------------------------------------------------- commands


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_has_examples(command):
    result = run(*([command] if command else []), "--help")
    assert result.exit_code == 0 and "Examples:" in result.output and "nncodec " in result.output


def test_encode_decode_round_trip(tmp_path, checkpoint):
    out = tmp_path / "m.nnc"
    result = run("encode", checkpoint, "-o", out, "-m", "note=hello=world", "--prefer", "size")
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.stdout
    with nncodec.open(out) as f:
        assert f.metadata() == {"arch": "tiny", "note": "hello=world"}
    for name in ("back.safetensors", "back.pt"):
        result = run("decode", out, "-o", tmp_path / name)
        assert result.exit_code == 0, result.output
        back = st_load(tmp_path / name) if name.endswith(".safetensors") else torch.load(tmp_path / name, weights_only=True)
        assert_bit_exact(back, state())
    assert "metadata" in run("decode", out, "-o", tmp_path / "again.pt").stderr  # a .pt cannot keep it


def test_default_output_names(tmp_path, checkpoint):
    assert run("encode", checkpoint).exit_code == 0
    assert (tmp_path / "model.nnc").exists()
    (tmp_path / "model.safetensors").unlink()
    assert run("decode", tmp_path / "model.nnc").exit_code == 0
    assert_bit_exact(st_load(tmp_path / "model.safetensors"), state())


@pytest.mark.parametrize("fmt", ["pt", "npz", "sharded"])
def test_encode_reads_every_input_format(tmp_path, fmt):
    s = {k: v for k, v in state().items() if v.dtype != torch.bfloat16}
    if fmt == "pt":
        src = tmp_path / "c.pt"
        torch.save({"state_dict": s, "epoch": 2, "optimizer": {"state": {0: {"m": torch.ones(1)}}}}, src)
    elif fmt == "npz":
        src = tmp_path / "c.npz"
        np.savez(src, **{k: v.numpy() for k, v in s.items()})
    else:
        st_save(s, tmp_path / "c-1.safetensors")
        src = tmp_path / "c.safetensors.index.json"
        src.write_text(json.dumps({"weight_map": {k: "c-1.safetensors" for k in s}}))
    result = run("encode", src, "-o", tmp_path / "c.nnc")
    assert result.exit_code == 0, result.output
    assert_bit_exact(nncodec.load_file(tmp_path / "c.nnc"), s)
    if fmt == "pt":
        assert "optimizer" in result.stderr and nncodec.open(tmp_path / "c.nnc").metadata() == {"epoch": "2"}


def test_info_table_total_is_the_file_size(nnc):
    result = run("info", nnc)
    assert result.exit_code == 0
    total = [ln for ln in result.stdout.splitlines() if ln.startswith("total")]
    assert len(total) == 1 and f"{os.path.getsize(nnc):,}" in total[0].split()
    for name in state():
        assert name in result.stdout
    assert "(preamble)" in result.stdout and "(header)" in result.stdout and "(padding)" in result.stdout


def test_info_json_parts_add_up_to_the_file_size(tmp_path):
    w = torch.randn(8, 6)
    mask = (w.abs() > 0.5).numpy()
    q = quantize_uniform(w.numpy(), DTYPES["float32"], 0.1, mask=mask)
    path = tmp_path / "q.nnc"
    nncodec.save_file({"q": q, "raw": torch.arange(10), "tied": w, "tied2": w}, path, metadata={"k": "v"})
    result = run("info", path, "--json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    parts = report["preamble_bytes"] + report["header_bytes"] + report["padding_bytes"]
    parts += report["optional_section_bytes"]
    parts += sum(c["bytes"] for t in report["tensors"] for c in t["components"])
    assert parts == report["file_bytes"] == os.path.getsize(path)
    kinds = {c["kind"] for t in report["tensors"] for c in t["components"]}
    assert {"mask", "levels", "quantizer", "raw"} <= kinds
    table = run("info", path).stdout  # multi-component tensors get one row per component
    assert "quantized/uniform" in table and "  levels" in table and "alias of tied" in table


def test_verify_ok_and_damaged(tmp_path, nnc):
    result = run("verify", nnc)
    assert result.exit_code == 0 and result.stdout.startswith("ok: ")
    data = bytearray(nnc.read_bytes())
    for offset in (len(data) - 1, 50, 3):  # last section, header, magic
        damaged = bytearray(data)
        damaged[offset] ^= 0x10
        bad = tmp_path / f"bad{offset}.nnc"
        bad.write_bytes(bytes(damaged))
        assert_one_line_error(run("verify", bad), 1, str(bad))
    truncated = tmp_path / "short.nnc"
    truncated.write_bytes(bytes(data[:-7]))
    assert_one_line_error(run("verify", truncated), 1, "truncated")


def test_demo():
    result = run("demo")
    assert result.exit_code == 0, result.output
    assert "decode bit-exactly" in result.stdout and "as float32" in result.stdout
    total = [ln for ln in result.stdout.splitlines() if ln.startswith("total")]
    assert len(total) == 1


def test_demo_writes_output(tmp_path):
    out = tmp_path / "demo.nnc"
    assert run("demo", "-o", out).exit_code == 0
    assert run("verify", out).exit_code == 0
    assert_one_line_error(run("demo", "-o", out), 1, "--force")


# ----------------------------------------------------------------------------------- outputs


def test_existing_output_needs_force(tmp_path, checkpoint, nnc):
    before = nnc.read_bytes()
    assert_one_line_error(run("encode", checkpoint, "-o", nnc, "--prefer", "speed"), 1, "--force")
    assert nnc.read_bytes() == before
    assert run("encode", checkpoint, "-o", nnc, "--prefer", "speed", "--force").exit_code == 0
    back = tmp_path / "back.safetensors"
    back.write_bytes(b"precious")
    assert_one_line_error(run("decode", nnc, "-o", back), 1, "already exists")
    assert back.read_bytes() == b"precious"
    assert run("decode", nnc, "-o", back, "--force").exit_code == 0
    assert_one_line_error(run("encode", checkpoint, "-o", checkpoint, "--force", "--any-extension"), 1, "also the input")


def test_failed_encode_leaves_no_partial_file(tmp_path, checkpoint, monkeypatch):
    seen: list[str] = []

    def failing(name, tensor):
        seen.append(name)
        if len(seen) == 3:
            raise BadArgumentError(f"cannot compress {name}")
        return None

    monkeypatch.setattr(encode_module, "build_compressor", lambda options: failing)
    out = tmp_path / "fail.nnc"
    assert_one_line_error(run("encode", checkpoint, "-o", out), 1, "cannot compress")
    assert len(seen) == 3 and not out.exists() and leftovers(tmp_path) == []


def test_failed_write_leaves_no_partial_file(tmp_path, checkpoint, nnc, monkeypatch):
    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    out = tmp_path / "full.nnc"
    assert_one_line_error(run("encode", checkpoint, "-o", out), 1, "No space left")
    assert_one_line_error(run("decode", nnc, "-o", tmp_path / "full.safetensors"), 1, "No space left")
    assert not out.exists() and not (tmp_path / "full.safetensors").exists() and leftovers(tmp_path) == []
    before = nnc.read_bytes()
    assert_one_line_error(run("encode", checkpoint, "-o", nnc, "--force"), 1)
    assert nnc.read_bytes() == before  # --force replaces only with a complete file


# ----------------------------------------------------------------------------------- errors


def test_errors_are_one_line(tmp_path, checkpoint, nnc):
    assert_one_line_error(run("encode", tmp_path / "missing.pt"), 1, "missing.pt")
    assert_one_line_error(run("info", tmp_path / "missing.nnc"), 1, "No such file")
    assert_one_line_error(run("info", tmp_path), 1)
    (tmp_path / "m.onnx").write_bytes(b"x")
    assert_one_line_error(run("encode", tmp_path / "m.onnx"), 1, "unknown checkpoint type")
    assert_one_line_error(run("encode", checkpoint, "-o", tmp_path / "nodir" / "x.nnc"), 1, "does not exist")
    assert_one_line_error(run("decode", nnc, "-o", tmp_path / "x.txt"), 1, ".safetensors or .pt")
    assert_one_line_error(run("info", checkpoint), 1, "safetensors")  # not an .nnc file, says what it is
    assert_one_line_error(run("verify", checkpoint), 1)


def test_usage_errors_keep_exit_code_2(checkpoint):
    assert run("encode", checkpoint, "-m", "novalue").exit_code == 2
    assert run("encode", checkpoint, "--prefer", "tiny").exit_code == 2
    assert run("encode").exit_code == 2
    assert run("nosuchcommand").exit_code == 2


def test_malicious_checkpoint_is_refused_by_encode(tmp_path):
    marker = tmp_path / "PWNED"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"w": torch.ones(2), "x": Evil()}, tmp_path / "evil.pt")
    assert_one_line_error(run("encode", tmp_path / "evil.pt"), 1, "weights_only")
    assert not marker.exists() and not (tmp_path / "evil.nnc").exists()


def test_unexpected_exceptions_are_one_line_too(checkpoint, monkeypatch):
    def boom(options):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(encode_module, "build_compressor", boom)
    assert_one_line_error(run("encode", checkpoint, "-o", checkpoint.with_suffix(".x.nnc")), 1, "internal error")
