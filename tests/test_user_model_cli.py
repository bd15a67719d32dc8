"""`nncodec prune --model pkg.module:factory` and `nncodec budget --model` on a user's own model and data."""

from __future__ import annotations

import json
import sys
import textwrap

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from nncodec_cli.main import main as cli_main

import nncodec

MODULE = "nnc_user_model_fixture"

SOURCE = textwrap.dedent('''
    import torch
    from torch import nn


    def make():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(6, 64), nn.ReLU(), nn.Linear(64, 3))


    def not_a_model():
        return 42


    def loaders():
        g = torch.Generator().manual_seed(3)
        x = torch.randn(300, 6, generator=g)
        y = (x[:, :3] * torch.tensor([1.0, -1.0, 0.5])).argmax(1)
        train = [(x[i:i + 50], y[i:i + 50]) for i in range(0, 200, 50)]
        return train, [(x[200:], y[200:])]
''')


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """The factory module, data.npz and a trained checkpoint, made once for the module."""
    root = tmp_path_factory.mktemp("user_model")
    (root / f"{MODULE}.py").write_text(SOURCE)
    g = np.random.default_rng(0)
    x = g.standard_normal((400, 6)).astype(np.float32)
    y = (x[:, :3] * np.array([1.0, -1.0, 0.5], dtype=np.float32)).argmax(1)
    np.savez(root / "data.npz", x=x[:300], y=y[:300], x_test=x[300:], y_test=y[300:])
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 64), torch.nn.ReLU(), torch.nn.Linear(64, 3))
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    xt, yt = torch.from_numpy(x[:270]), torch.from_numpy(y[:270]).long()
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(xt), yt).backward()
        opt.step()
    torch.save(model.state_dict(), root / "ck.pt")
    return root


@pytest.fixture
def workdir(assets, monkeypatch):
    monkeypatch.chdir(assets)
    monkeypatch.syspath_prepend(str(assets))
    sys.modules.pop(MODULE, None)
    yield assets
    sys.modules.pop(MODULE, None)


def run(*args: str):
    return CliRunner().invoke(cli_main, list(args), catch_exceptions=False)


def test_prune_user_model_from_npz(workdir):
    r = run("prune", "--model", f"{MODULE}:make", "--checkpoint", "ck.pt", "--data", "data.npz", "--method", "drr",
            "--alpha", "1e-3", "--epochs", "3", "--batch-size", "64", "-o", "out.nnc", "--report", "r.json")
    assert r.exit_code == 0, r.output
    report = json.loads((workdir / "r.json").read_text())
    assert report["file_bytes"] == (workdir / "out.nnc").stat().st_size
    assert report["nonzero"] < report["parameters"]
    assert "compressed_test" in report and report["compressed_test"]["accuracy"] > 60  # a 3-class task, learnt
    model = torch.nn.Sequential(torch.nn.Linear(6, 64), torch.nn.ReLU(), torch.nn.Linear(64, 3))
    nncodec.load_into(model, workdir / "out.nnc", strict=True)  # the file is the factory's model
    assert "x" in r.output and "out.nnc" in r.output


def test_prune_user_model_with_loader_entry_point(workdir):
    r = run("prune", "--model", f"{MODULE}:make", "--data", f"{MODULE}:loaders", "--method", "tamade",
            "--finetune-epochs", "1", "-o", "t.nnc")
    assert r.exit_code == 0, r.output
    assert (workdir / "t.nnc").stat().st_size > 0
    assert "validation loss" in r.output  # no test split: the report says which split it scored


def test_prune_user_model_with_spike_slab_and_pips(workdir):
    r = run("prune", "--model", f"{MODULE}:make", "--checkpoint", "ck.pt", "--data", "data.npz", "--method", "spike-slab",
            "--kl-weight", "0.5", "--prior-inclusion", "0.05", "--epochs", "3", "--finetune-epochs", "1",
            "--batch-size", "64", "--keep-pip", "-o", "ss.nnc", "--report", "ss.json", "--quiet")
    assert r.exit_code == 0, r.output
    report = json.loads((workdir / "ss.json").read_text())
    assert report["method"] == "spike-slab" and report["keep_pip"]
    assert report["file_bytes"] == (workdir / "ss.nnc").stat().st_size and report["nonzero"] < report["parameters"]
    model = torch.nn.Sequential(torch.nn.Linear(6, 64), torch.nn.ReLU(), torch.nn.Linear(64, 3))
    nncodec.load_into(model, workdir / "ss.nnc", strict=True)
    with nncodec.open(workdir / "ss.nnc") as f:  # the mask is derived from the stored PIPs
        for name in ("0.weight", "2.weight"):
            pip = f.get_pip(name)
            assert pip is not None and torch.equal(torch.as_tensor(f.components(name).mask), pip > 0.5)
            assert not torch.any(model.state_dict()[name][pip <= 0.5])
    bad = CliRunner().invoke(cli_main, ["prune", "--model", f"{MODULE}:make", "--data", "data.npz", "--method", "drr",
                                        "--keep-pip", "-o", "x.nnc"])
    assert bad.exit_code == 1 and "go with --method spike-slab" in bad.output


@pytest.mark.parametrize("args,message", [
    (["--arch", "lenet300", "--model", f"{MODULE}:make"], "either --arch"),
    (["--model", "no_such_module_xyz:make"], "cannot import"),
    (["--model", f"{MODULE}:missing"], "no attribute"),
    (["--model", f"{MODULE}:not_a_model"], "not a torch.nn.Module"),
    (["--model", f"{MODULE}:make", "--checkpoint", "absent.pt"], "no such checkpoint"),
    (["--model", f"{MODULE}:make", "--checkpoint", "bad.pt"], "does not fit"),
    (["--model", f"{MODULE}:make", "--data", "nodata.npz"], "no such file"),
    (["--model", f"{MODULE}:make", "--data", "noy.npz"], "needs arrays 'x' and 'y'"),
])
def test_prune_user_model_errors_are_one_line(workdir, args, message):
    torch.save({"weight": torch.zeros(2)}, workdir / "bad.pt")
    np.savez(workdir / "noy.npz", x=np.zeros((10, 6), np.float32))
    full = ["prune", "--method", "tamade", "-o", "e.nnc", "--quiet", *args]
    if "--data" not in args:
        full += ["--data", "data.npz"]
    r = CliRunner().invoke(cli_main, full)
    assert r.exit_code == 1
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], r.output
    assert not (workdir / "e.nnc").exists()


def test_budget_user_model(workdir):
    r = run("budget", "--model", f"{MODULE}:make", "--checkpoint", "ck.pt", "--data", "data.npz", "--max-drop", "2",
            "--max-evals", "30", "--lambdas", "0", "-o", "b.nnc")
    assert r.exit_code == 0, r.output
    model = torch.nn.Sequential(torch.nn.Linear(6, 64), torch.nn.ReLU(), torch.nn.Linear(64, 3))
    nncodec.load_into(model, workdir / "b.nnc", strict=True)
    data = np.load(workdir / "data.npz")
    x_val, y_val = data["x"][-30:], data["y"][-30:]  # without x_val, the last 10 % of x are validation
    with torch.no_grad():
        acc = float((model(torch.from_numpy(x_val)).argmax(1).numpy() == y_val).mean()) * 100
    reference = torch.nn.Sequential(torch.nn.Linear(6, 64), torch.nn.ReLU(), torch.nn.Linear(64, 3))
    reference.load_state_dict(torch.load(workdir / "ck.pt", weights_only=True))
    with torch.no_grad():
        base = float((reference(torch.from_numpy(x_val)).argmax(1).numpy() == y_val).mean()) * 100
    assert acc >= base - 2 - 1e-9  # the decoded file keeps the budget on the validation split that selected it
    assert "test (scored once)" in r.output
    r = CliRunner().invoke(cli_main, ["budget", "--model", f"{MODULE}:make", "--data", "data.npz", "--max-drop", "1",
                                      "-o", "c.nnc"])
    assert r.exit_code == 1 and "--checkpoint" in r.output
