"""The pieces under torch.distributed: two CPU ranks (gloo, torchrun) give the single-process result."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

WORKER = Path(__file__).with_name("ddp_worker.py")

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available in this torch build")


def one_and_two_ranks(worker: Path, tmp_path: Path) -> tuple[dict, list[dict], Path, Path]:
    """Run `worker` in this process and as 2 torchrun ranks; their saved states and output folders."""
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    spec = importlib.util.spec_from_file_location(worker.stem, worker)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.run(one, distributed=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MASTER_", "WORLD_SIZE", "RANK", "LOCAL_RANK"))}
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONFAULTHANDLER"] = "1"  # a rank that dies prints every thread's Python stack (CI once saw a SIGABRT)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(worker), str(two)], env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ref = torch.load(one / "state0.pt", weights_only=True)
    return ref, [torch.load(two / f"state{r}.pt", weights_only=True) for r in (0, 1)], one, two


def test_two_ranks_match_one_process_and_write_the_same_file(tmp_path):
    ref, ranks, one, two = one_and_two_ranks(WORKER, tmp_path)
    kept = sum(int(m.sum()) for m in ref["masks"].values())
    assert 0 < kept < sum(m.numel() for m in ref["masks"].values())  # something was pruned, something kept
    for name, mask in ref["masks"].items():
        for st in ranks:
            assert torch.equal(st["masks"][name], mask)  # identical masks on every rank, and as in one process
    for st in ranks:
        assert float(st["threshold"]) == pytest.approx(float(ref["threshold"]), rel=1e-4)  # all-reduced TAMADE loss
        for name, value in ref["params"].items():
            torch.testing.assert_close(st["params"][name], value, rtol=1e-4, atol=1e-5)
        for name, value in ref["gamma"].items():
            torch.testing.assert_close(st["gamma"][name], value, rtol=1e-4, atol=1e-5)
    for name in ref["params"]:  # the ranks agree exactly with each other
        assert torch.equal(ranks[0]["params"][name], ranks[1]["params"][name])
        assert torch.equal(ranks[0]["gamma"].get(name, torch.zeros(())), ranks[1]["gamma"].get(name, torch.zeros(())))
    assert (one / "model.nnc").read_bytes() == (two / "model.nnc").read_bytes()
    assert int(ranks[1]["size"]) == int(ranks[0]["size"]) == (two / "model.nnc").stat().st_size  # rank 0 wrote it


def test_spike_slab_two_ranks_match_one_process_and_write_the_same_file(tmp_path):
    ref, ranks, one, two = one_and_two_ranks(WORKER.with_name("ddp_spike_slab_worker.py"), tmp_path)
    kept = sum(int(m.sum()) for m in ref["masks"].values())
    assert 0 < kept < sum(m.numel() for m in ref["masks"].values())
    for key in ("pips", "slab_sd", "params"):  # phi, rho (not module parameters) and the weights
        for name, value in ref[key].items():
            assert torch.equal(ranks[0][key][name], ranks[1][key][name]), (key, name)  # ranks agree exactly
            torch.testing.assert_close(ranks[0][key][name], value, rtol=1e-4, atol=1e-5)  # and with one process
    for name, mask in ref["masks"].items():
        assert torch.equal(ranks[0]["masks"][name], mask) and torch.equal(ranks[1]["masks"][name], mask)
    assert (one / "model.nnc").read_bytes() == (two / "model.nnc").read_bytes()
    assert int(ranks[1]["size"]) == int(ranks[0]["size"]) == (two / "model.nnc").stat().st_size
