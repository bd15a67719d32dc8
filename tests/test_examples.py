"""Every tutorial script in examples/ runs as a user would run it (fresh process, empty folder) and
says what it promises."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file as st_save

import nncodec

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run(script: str, *args: str, cwd: Path) -> str:
    p = subprocess.run([sys.executable, str(EXAMPLES / script), *args], cwd=cwd, capture_output=True, text=True,
                       timeout=300, env=ENV)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


def test_every_example_is_tested():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(
        ["compress_checkpoint.py", "compress_to_budget.py", "prune_your_model.py", "prune_own_loop.py",
         "load_for_inference.py"])


def test_compress_your_checkpoint_losslessly(tmp_path):
    g = torch.Generator().manual_seed(0)
    st_save({"w": torch.randn(40, 30, generator=g), "b": torch.tensor([float("nan"), -0.0, 1.0])},
            str(tmp_path / "mine.safetensors"))
    out = run("compress_checkpoint.py", "mine.safetensors", cwd=tmp_path)
    assert "all 2 tensors decode bit-exactly" in out
    assert (tmp_path / "mine.nnc").stat().st_size == int(re.search(r"mine.nnc: ([\d,]+) bytes", out).group(1).replace(",", ""))


def test_compress_to_an_accuracy_budget_with_your_own_evaluation(tmp_path):
    out = run("compress_to_budget.py", cwd=tmp_path)
    val, base = map(float, re.search(r"validation accuracy ([\d.]+) % \(uncompressed ([\d.]+) %\)", out).groups())
    assert base - val <= 1.0 + 1e-9  # the budget held, on the data the search used
    ratio = float(re.search(r"([\d.]+)x smaller", out).group(1))
    assert ratio > 4 and (tmp_path / "budget.nnc").exists()


def test_prune_your_model_with_your_own_loader(tmp_path):
    out = run("prune_your_model.py", cwd=tmp_path)
    kept, total = (int(v.replace(",", "")) for v in re.search(r"([\d,]+) of ([\d,]+) weights kept", out).groups())
    assert kept < total / 2
    decoded = nncodec.load_file(tmp_path / "pruned.nnc")
    assert sum(int((v != 0).sum()) for v in decoded.values()) <= kept
    assert float(re.search(r"test accuracy \(once\) ([\d.]+) %", out).group(1)) > 80


def test_prune_inside_your_own_training_loop(tmp_path):
    out = run("prune_own_loop.py", "--out", "loop.nnc", "--epochs", "3", cwd=tmp_path)
    size = int(re.search(r"loop.nnc: ([\d,]+) bytes", out).group(1).replace(",", ""))
    assert size == (tmp_path / "loop.nnc").stat().st_size
    decoded = nncodec.load_file(tmp_path / "loop.nnc")
    assert any(int((v == 0).sum()) > 0 for v in decoded.values())  # pruned: some weights are exactly zero


def test_load_a_nnc_file_in_inference_code(tmp_path):
    out = run("load_for_inference.py", cwd=tmp_path)
    assert re.search(r"predictions: \[\d, \d, \d, \d\]", out) and "first layer: (32, 20)" in out
    assert "relative L2" in out  # the int8 file carries its error
