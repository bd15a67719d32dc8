"""`nncodec prune` on a preset LeNet and IDX data: the file and report it writes, one-line errors, and
never overwriting a user's file."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from nncodec_cli.main import main as cli_main
from nncodec_cli.presets import lenet
from nncodec_cli.presets.fashion_mnist import load_fashion_mnist
from synthetic_idx import write_tiny_idx

import nncodec


@pytest.fixture(scope="module")
def tiny_idx(tmp_path_factory):
    """A Fashion-MNIST-shaped IDX directory: 5,000 validation + 200 training images, 300 test images;
    class k images are bright in row block k, so a small network learns them quickly."""
    return write_tiny_idx(tmp_path_factory.mktemp("idx"), 5200, 300)


def test_cli_prune_writes_file_and_report(tiny_idx, tmp_path):
    out, report = tmp_path / "m.nnc", tmp_path / "r.json"
    res = CliRunner().invoke(cli_main, ["prune", "--method", "tamade", "--arch", "lenet300", "--data", str(tiny_idx),
                                    "--epochs", "3", "--finetune-epochs", "1", "--batch-size", "50", "--quiet",
                                    "-o", str(out), "--report", str(report)])
    assert res.exit_code == 0, res.output
    r = json.loads(report.read_text())
    assert r["file_bytes"] == out.stat().st_size
    assert r["ratio"] == pytest.approx(4 * 266_610 / r["file_bytes"])
    assert r["paper_estimate_bytes"] == 4 * r["nonzero"] and r["nonzero"] < 266_610
    assert {"dense_test_accuracy", "compressed_test_accuracy"} <= set(r)
    assert r["dense_test_accuracy"] > 50  # the synthetic classes are learnable
    model = lenet.build("lenet300")
    nncodec.load_into(model, out)
    assert lenet.evaluate(model, *load_fashion_mnist(tiny_idx, "test")) == pytest.approx(
        r["compressed_test_accuracy"])


@pytest.mark.parametrize("args,message", [
    (["--data", "/nonexistent-dir"], "not a directory"),
    (["--data", "."], "not found"),
])
def test_cli_prune_errors_are_one_line(tmp_path, args, message):
    res = CliRunner().invoke(cli_main, ["prune", "--method", "drr", "--arch", "lenet5", "-o", str(tmp_path / "x.nnc"),
                                    "--quiet", *args])
    assert res.exit_code == 1
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], res.output


def test_cli_prune_refuses_to_overwrite(tmp_path, tiny_idx):
    (tmp_path / "x.nnc").write_bytes(b"keep")
    res = CliRunner().invoke(cli_main, ["prune", "--method", "drr", "--arch", "lenet5", "--data", str(tiny_idx),
                                    "-o", str(tmp_path / "x.nnc")])
    assert res.exit_code == 1 and "already exists" in res.output
    assert (tmp_path / "x.nnc").read_bytes() == b"keep"


def test_cli_prune_qat_epochs_reports_both_candidates_and_keeps_the_smaller(tiny_idx, tmp_path):
    out, report = tmp_path / "q.nnc", tmp_path / "q.json"
    res = CliRunner().invoke(cli_main, ["prune", "--method", "tamade", "--arch", "lenet300", "--data", str(tiny_idx),
                                    "--epochs", "3", "--finetune-epochs", "1", "--batch-size", "50", "--quiet",
                                    "--qat-epochs", "1", "-o", str(out), "--report", str(report)])
    assert res.exit_code == 0, res.output
    r = json.loads(report.read_text())
    assert r["qat_tries"] and r["file_bytes"] == out.stat().st_size
    if "qat_file_bytes" in r:
        assert r["file_bytes"] == min(r["plain_file_bytes"], r["qat_file_bytes"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.json", "q.nnc"]


def test_cli_prune_qat_epochs_is_refused_where_it_does_not_apply(tmp_path, tiny_idx):
    res = CliRunner().invoke(cli_main, ["prune", "--method", "spike-slab", "--arch", "lenet300", "--data", str(tiny_idx),
                                    "--qat-epochs", "2", "-o", str(tmp_path / "x.nnc")])
    assert res.exit_code == 1 and "--qat-epochs goes with --arch" in res.output
    assert not (tmp_path / "x.nnc").exists()
