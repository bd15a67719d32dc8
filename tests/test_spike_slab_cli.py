"""`nncodec importance` and the PIP rows of `nncodec info` on a small model saved with PIPs."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from nncodec_cli.main import main
from test_cli_prune import tiny_idx  # noqa: F401  (the shared IDX fixture)
from torch import nn

import nncodec
from nncodec.compress.spike_slab import input_feature_pip, save_spike_slab
from nncodec.compress.spike_slab.features import path_feature_pip


@pytest.fixture()
def pip_file(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 4), nn.ReLU(), nn.Linear(4, 2))
    pips = {"0.weight": torch.full((4, 16), 0.02), "2.weight": torch.full((2, 4), 0.9)}
    pips["0.weight"][1, [3, 5, 6]] = 0.97  # inputs 3, 5, 6 are used by output 1
    pips["0.weight"][:, 9] = 0.3  # input 9: four weights of 0.3 (each pruned, the feature is likely)
    with torch.no_grad():
        model[0].weight.mul_((pips["0.weight"] > 0.5).float())
    model.spike_slab_pips, model.spike_slab_threshold = pips, 0.5
    steps = {n: 0.01 for n, _ in model.named_parameters()}
    path = tmp_path / "m.nnc"
    save_spike_slab(model, path, steps=steps, keep_pip=True)
    plain = tmp_path / "plain.nnc"
    save_spike_slab(model, plain, steps=steps)
    return path, plain, pips


def test_importance_ranks_the_used_inputs_first(pip_file, tmp_path):
    path, _, pips = pip_file
    res = CliRunner().invoke(main, ["importance", str(path), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["tensor"] == "0.weight" and out["features"] == 16
    assert out["rule"] == "path" and out["chain"] == ["0.weight", "2.weight"]
    assert set(out["ranking"][:4]) == {3, 5, 6, 9}
    assert out["selected"] == 4  # 3, 5, 6 (0.97 x 0.99) and 9 (1 - (1 - 0.3 x 0.99)**4 = 0.75)
    with nncodec.open(path) as f:  # exactly the stored (4-bit) PIPs' feature PIPs
        stored = {n: f.get_pip(n) for n in ("0.weight", "2.weight")}
    path_pip = path_feature_pip([stored["0.weight"], stored["2.weight"]])
    assert max(abs(a - float(b)) for a, b in zip(out["pip"], path_pip, strict=True)) < 1e-6
    assert max(abs(a - float(b)) for a, b in zip(out["pip"], path_feature_pip(list(pips.values())), strict=True)) < 0.1
    res = CliRunner().invoke(main, ["importance", str(path), "--json", "--rule", "any"])
    out = json.loads(res.output)
    assert out["rule"] == "any" and out["chain"] == ["0.weight"]
    assert max(abs(a - float(b)) for a, b in zip(out["pip"], input_feature_pip(stored["0.weight"]), strict=True)) < 1e-6
    png = tmp_path / "heat.png"
    res = CliRunner().invoke(main, ["importance", str(path), "--top", "3", "--png", str(png)])
    assert res.exit_code == 0, res.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "most important:" in res.output and "least important:" in res.output


def test_importance_path_rule_ignores_weights_into_switched_off_units(tmp_path):
    """Input 0 feeds only hidden unit 0, whose outgoing weights are all excluded: the model does not use
    it, although its first-layer weight is included (the any-weight rule says 0.95)."""
    model = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 1))
    pips = {"0.weight": torch.tensor([[0.95, 0.01, 0.01], [0.01, 0.95, 0.01]]), "2.weight": torch.tensor([[0.0, 0.95]])}
    with torch.no_grad():
        model[0].weight.mul_((pips["0.weight"] > 0.5).float())
        model[2].weight.mul_((pips["2.weight"] > 0.5).float())
    model.spike_slab_pips, model.spike_slab_threshold = pips, 0.5
    path = tmp_path / "dead.nnc"
    save_spike_slab(model, path, steps={n: 0.01 for n, _ in model.named_parameters()}, keep_pip=True)
    res = CliRunner().invoke(main, ["importance", str(path), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["selected"] == 1 and out["ranking"][0] == 1 and out["pip"][0] < 0.1
    out = json.loads(CliRunner().invoke(main, ["importance", str(path), "--json", "--rule", "any"]).output)
    assert out["selected"] == 2 and out["pip"][0] > 0.9


def test_importance_without_pips_is_one_error_line(pip_file):
    _, plain, _ = pip_file
    res = CliRunner().invoke(main, ["importance", str(plain)])
    assert res.exit_code == 1
    assert "--keep-pip" in res.output and len(res.output.strip().splitlines()) == 1


def test_info_shows_pip_bytes(pip_file):
    path, _, _ = pip_file
    res = CliRunner().invoke(main, ["info", str(path)])
    assert res.exit_code == 0, res.output
    assert "pip" in res.output and "PIPs" in res.output
    report = json.loads(CliRunner().invoke(main, ["info", str(path), "--json"]).output)
    rows = {t["name"]: t for t in report["tensors"]}
    assert rows["0.weight"]["pip_bytes"] > 0 and "mask" not in [c["kind"] for c in rows["0.weight"]["components"]]


def test_cli_prune_spike_slab_keeps_pips_and_importance_reads_them(tiny_idx, tmp_path):  # noqa: F811
    out, report = tmp_path / "m.nnc", tmp_path / "r.json"
    res = CliRunner().invoke(main, ["prune", "--method", "spike-slab", "--arch", "lenet300", "--data", str(tiny_idx),
                                    "--epochs", "1", "--finetune-epochs", "1", "--batch-size", "50", "--keep-pip",
                                    "--quiet", "-o", str(out), "--report", str(report)])
    assert res.exit_code == 0, res.output
    r = json.loads(report.read_text())
    assert r["file_bytes"] == out.stat().st_size and r["pip_bytes"] > 0 and r["keep_pip"]
    with nncodec.open(out) as f:
        assert all(f.get_pip(n) is not None for n in ("fc1.weight", "fc2.weight", "fc3.weight"))
        assert f.get_pip("fc1.bias") is None
    png = tmp_path / "fc1.png"
    res = CliRunner().invoke(main, ["importance", str(out), "--png", str(png)])
    assert res.exit_code == 0, res.output
    assert "784 input features" in res.output and png.stat().st_size > 0
