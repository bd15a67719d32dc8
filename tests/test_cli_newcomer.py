"""What a new user trips over (issue 14), through the real `nncodec` entry point in a subprocess:
output names, honest lossy output, one uncompressed size, the progress policy, `-` and several
files, --json/--quiet, Ctrl-C, and the API's typed errors."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file as st_save
from synthetic_idx import write_tiny_idx

import nncodec
from nncodec.errors import BadArgumentError, ClosedFileError, CorruptFileError, FormatError, NNCodecError

NNCODEC = [shutil.which("nncodec", path=os.path.dirname(sys.executable)) or "nncodec"]  # the installed entry point
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def nnc(*args: object, stdin: bytes | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `nncodec ARGS` with stdout and stderr as pipes (not a terminal), as in scripts and CI."""
    return subprocess.run([*NNCODEC, *map(str, args)], input=stdin, capture_output=True, timeout=timeout, env=ENV)


def text(p: subprocess.CompletedProcess) -> tuple[str, str]:
    return p.stdout.decode(), p.stderr.decode()


def weights(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"fc1.weight": torch.randn(64, 48, generator=g), "fc1.bias": torch.randn(64, generator=g) * 0.1,
            "fc2.weight": torch.randn(10, 64, generator=g), "fc2.bias": torch.zeros(10)}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ck") / "model.safetensors"
    st_save(weights(), str(path))
    return path


# ------------------------------------------------------------------------------- 1. names


def test_encode_refuses_an_output_not_ending_in_nnc_and_says_how_to_force(ckpt, tmp_path):
    out = tmp_path / "out.safetensors"
    p = nnc("encode", ckpt, "-o", out)
    _, err = text(p)
    assert p.returncode == 1 and not out.exists()
    assert err.strip().splitlines()[-1].startswith("error: ") and "does not end in .nnc" in err
    assert "--any-extension" in err and "nncodec decode" in err
    p = nnc("encode", ckpt, "-o", tmp_path / "weights.bin", "--any-extension", "--config", "int8", "--quiet")
    assert p.returncode == 0 and nncodec.load_file(tmp_path / "weights.bin").keys() == weights().keys()
    assert p.stdout == b"" and p.stderr == b""  # --quiet: nothing but errors and warnings


# ------------------------------------------------------------------------------- 2. lossy is visible


def test_lossy_encode_says_so_prints_and_stores_the_error(ckpt, tmp_path):
    lossless, lossy, bad = tmp_path / "a.nnc", tmp_path / "b.nnc", tmp_path / "c.nnc"
    out, err = text(nnc("encode", ckpt, "-o", lossless))
    assert "(lossless)" in out and "error" not in out + err
    p = nnc("encode", ckpt, "-o", lossy, "--bits", "8")
    out, err = text(p)
    assert p.returncode == 0 and "(lossy: --bits 8)" in out and "lossless" not in out
    rel = float(re.search(r"weights \(2 tensors\): relative L2 error ([\d.]+)%", out).group(1)) / 100
    assert "SNR" in out and "warning" not in err
    # the printed error is the real one: recompute it from the decoded file
    dec, orig = nncodec.load_file(lossy), weights()
    num = sum(float(((dec[k] - orig[k]) ** 2).sum()) for k in ("fc1.weight", "fc2.weight"))
    den = sum(float((orig[k] ** 2).sum()) for k in ("fc1.weight", "fc2.weight"))
    assert rel == pytest.approx((num / den) ** 0.5, rel=0.01)
    # info shows it later, from the file alone, and still accounts for every byte
    info_text, _ = text(nnc("info", lossy))
    assert "relative L2 error" in info_text and "header bytes" in info_text
    with nncodec.open(lossless) as f:
        assert "error" not in f.info() and f.error_summary() is None
    # a large error warns (stderr), and --json carries it
    p = nnc("encode", ckpt, "-o", bad, "--bits", "2", "--sparsity", "0.8", "--json")
    report = json.loads(p.stdout)
    assert p.returncode == 0 and "warning:" in p.stderr.decode() and report["lossless"] is False
    assert report["error"]["weights"]["rel_l2"] > 0.15 and report["file_bytes"] == bad.stat().st_size


def test_encode_help_says_lossless_is_only_the_default():
    out, _ = text(nnc("encode", "--help"))
    assert "Lossless by default" in out and "makes it lossy" in out and "--config" in out


def test_error_summary_is_an_optional_member_counted_in_the_header():
    data = nncodec.save(weights(), compressor=nncodec.compress.config.make_compressor("balanced"))
    with nncodec.open(data) as f:
        report = f.info()
    assert report["error"]["weights"]["tensors"] == 2 and 0 < report["error_header_bytes"] < report["header_bytes"] + 200
    parts = report["preamble_bytes"] + report["header_bytes"] + report["padding_bytes"] + sum(
        t["bytes"] for t in report["tensors"]) + report["optional_section_bytes"]
    assert parts == len(data) == report["file_bytes"]
    assert nncodec.save(weights(), compressor=nncodec.compress.config.make_compressor("balanced")) == data  # deterministic
    assert b"x-error" not in nncodec.save(weights())  # lossless files carry nothing


# ------------------------------------------------------------------------------- 3. tied weights


def test_tied_weights_count_once_in_encode_info_and_the_bar(tmp_path):
    emb = torch.randn(200, 32)
    state = {"embed.weight": emb, "head.weight": emb, "head.bias": torch.zeros(200)}  # tied: one storage
    ck, out = tmp_path / "tied.pt", tmp_path / "tied.nnc"
    torch.save(state, ck)
    enc = json.loads(nnc("encode", ck, "-o", out, "--json").stdout)
    info = json.loads(nnc("info", out, "--json").stdout)
    unique = (200 * 32 + 200) * 4
    assert enc["uncompressed_bytes"] == unique
    from nncodec_cli.report import raw_bytes

    assert raw_bytes(info) == unique
    seen: list[tuple[str, str]] = []
    nncodec.save(state, progress=lambda stage, name: seen.append((stage, name)))
    assert nncodec.api.unique_nbytes(state) == unique
    assert sum(nncodec.api.unique_nbytes({n: state[n]}) for _, n in seen) == unique  # the bar's updates sum to its total


# ------------------------------------------------------------------------------- 4. progress policy


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_bar_appears_during_a_long_step_and_ends_at_100_percent():
    from nncodec_cli.common import Progress

    stream = FakeTerminal()
    bar = Progress("encode", stream=stream, delay=0.05)
    bar.phase("coding", total=1000)
    time.sleep(0.3)  # one long step, no update yet: the ticker must show the bar anyway
    assert "coding" in stream.getvalue()
    bar.update(700)  # e.g. a tied tensor's bytes are not counted twice, so the last update is small
    bar.close()
    assert "100%" in stream.getvalue()


def test_off_a_terminal_one_line_per_phase(ckpt, tmp_path):
    p = nnc("encode", ckpt, "-o", tmp_path / "m.nnc", "--config", "int8")
    err = p.stderr.decode()
    assert [ln.split(":")[1].split()[0] for ln in err.splitlines()] == ["reading", "quantizing", "coding", "writing"]
    assert "\r" not in err and "it/s" not in err


def test_the_library_prints_nothing_unless_asked(capfd):
    from nncodec.compress.config import make_compressor

    data = nncodec.save({"w": torch.randn(300, 300)}, compressor=make_compressor("int8"))
    nncodec.load(data)
    assert capfd.readouterr() == ("", "")  # at the file-descriptor level: no bar, no line, no warning


def test_prune_writes_no_bars_into_pipes_and_one_nonzero_count(tmp_path):
    d = tmp_path / "idx"
    d.mkdir()
    write_tiny_idx(d, 5100, 100)
    p = nnc("prune", "--method", "tamade", "--arch", "lenet300", "--data", d, "--epochs", "1", "--finetune-epochs",
            "0", "--batch-size", "50", "-o", tmp_path / "p.nnc", timeout=300)
    out, err = text(p)
    assert p.returncode == 0, err
    assert "\r" not in err and "it/s" not in err  # no tqdm in a pipe
    assert all(ln.startswith("prune: ") for ln in err.splitlines())  # a line per phase instead
    assert len(re.findall(r"non-zero", out + err)) == 1  # one count, the file's


# ------------------------------------------------------------------------------- 5. small things


def test_help_version_and_examples():
    assert "Examples:" in text(nnc("prune", "--help"))[0]
    out, _ = text(nnc("--version"))
    assert re.match(r"nncodec, version \d+\.\d+", out)


def test_ctrl_c_exits_130_with_one_line(tmp_path):
    big = tmp_path / "big.safetensors"
    st_save({"w": torch.randn(2048, 1024)}, str(big))
    proc = subprocess.Popen([*NNCODEC, "encode", str(big), "-o", str(tmp_path / "big.nnc"), "--config", "small"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    try:
        for line in proc.stderr:  # phase lines: interrupt while the tensor is being quantized
            if b"quantizing" in line:
                break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert err.decode().strip() == "error: interrupted"
    assert not (tmp_path / "big.nnc").exists()


def test_save_file_errors_name_the_users_path_not_a_temporary_file(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        nncodec.save_file(weights(), tmp_path / "missing" / "m.nnc")
    assert ".nncodec-" not in str(e.value) and "missing" in str(e.value)
    target = tmp_path / "m.nnc"
    target.write_bytes(b"keep")
    with pytest.raises(FileExistsError) as e:
        nncodec.save_file(weights(), target, overwrite=False)
    assert ".nncodec-" not in str(e.value) and str(target) in str(e.value) and "overwrite=True" in str(e.value)
    assert target.read_bytes() == b"keep" and sorted(p.name for p in tmp_path.iterdir()) == ["m.nnc"]


def test_garbage_is_described_without_repeating_itself():
    with pytest.raises(FormatError) as e:
        nncodec.load(b"this is not a model at all, just some text" * 4)
    assert str(e.value).count("not an .nnc file") == 1 and "signature" in str(e.value)


def test_an_nncfile_used_after_its_with_block_raises_a_typed_error():
    data = nncodec.save(weights())
    with nncodec.open(data) as f:
        pass
    for use in (lambda: f.get_tensor("fc1.bias"), f.info, f.keys, f.verify, f.metadata):
        with pytest.raises(ClosedFileError, match="closed"):
            use()
    assert issubclass(ClosedFileError, NNCodecError)


def test_a_flipped_bit_names_the_tensor_and_component():
    data = bytearray(nncodec.save(weights(), compressor=nncodec.compress.config.make_compressor("int8")))
    data[-3] ^= 0x10  # in the last section: fc2.bias
    with pytest.raises(CorruptFileError, match=r"tensor 'fc2\.bias' \((levels|quantizer|mask|raw), section \d+\)"):
        nncodec.load(bytes(data))


@pytest.mark.skipif(torch.cuda.is_available(), reason="the test needs a machine without CUDA")
def test_loading_onto_an_unavailable_device_is_a_typed_error(tmp_path):
    path = tmp_path / "m.nnc"
    nncodec.save_file(weights(), path)
    with pytest.raises(BadArgumentError, match="cuda.*not available.*cpu"):
        nncodec.load_file(path, device="cuda")
    with pytest.raises(BadArgumentError, match="not a torch device"):
        nncodec.load_file(path, device="gpu-please")


def test_string_metadata_is_shown_without_json_quotes(tmp_path):
    ck, out = tmp_path / "c.pt", tmp_path / "c.nnc"
    torch.save({"state_dict": weights(), "arch": "mlp", "epoch": 3}, ck)
    assert nnc("encode", ck, "-o", out, "-q").returncode == 0
    info_text, _ = text(nnc("info", out))
    assert "arch = mlp" in info_text and "epoch = 3" in info_text and '"mlp"' not in info_text


# ------------------------------------------------------------------------------- 6. pipes, several files, --json


def test_stdin_stdout_several_files_and_json(ckpt, tmp_path):
    good, bad = tmp_path / "good.nnc", tmp_path / "bad.nnc"
    nncodec.save_file(weights(), good)
    data = bytearray(good.read_bytes())
    data[-5] ^= 1
    bad.write_bytes(bytes(data))
    p = nnc("info", "-", stdin=good.read_bytes())  # info -
    assert p.returncode == 0 and text(p)[0].startswith("stdin: .nnc version")
    garbage = tmp_path / "notes.txt"
    garbage.write_text("not a model")
    p = nnc("info", good, garbage)  # one bad file among several: reported, the rest still shown, status 1
    out, err = text(p)
    assert p.returncode == 1 and out.startswith(f"{good}: .nnc version") and err.startswith(f"error: {garbage}: not an .nnc")
    reports = json.loads(nnc("info", good, good, "--json").stdout)  # several files
    assert [r["file"] for r in reports] == [str(good)] * 2 and reports[0]["file_bytes"] == good.stat().st_size
    p = nnc("verify", good, bad)  # a damaged file does not stop the others; the status says it
    out, err = text(p)
    assert p.returncode == 1 and out.startswith(f"ok: {good}") and err.startswith(f"error: {bad}")
    results = json.loads(nnc("verify", good, bad, "--json").stdout)
    assert [r["ok"] for r in results] == [True, False]
    assert nnc("verify", good, "--quiet").stdout == b""
    p = nnc("decode", good, "-o", "-", "--format", "pt")  # decode -o -
    back = torch.load(io.BytesIO(p.stdout), weights_only=True)
    assert p.returncode == 0 and all(torch.equal(back[k], v) for k, v in weights().items())
    p = nnc("decode", "-", "-o", tmp_path / "x.safetensors", "--json", stdin=good.read_bytes())
    assert p.returncode == 0 and json.loads(p.stdout)["tensors"] == 4
    p = nnc("encode", "-", "-o", "-", "-q", stdin=ckpt.read_bytes())  # encode - -o -: format told by the bytes
    back = nncodec.load(p.stdout)
    assert p.returncode == 0 and all(torch.equal(back[k], v) for k, v in weights().items())
