"""benchmarks/sweep_spike_slab.py on LeNet-5-Caffe (conv layers): one variational run, the fine-tune,
the file, its PIP twin and the re-scoring of a sweep file, on a tiny synthetic split (no Fashion-MNIST).
Session 8 ran the script on `--arch lenet5` for the first time; this checks the shapes end to end."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
from nncodec_cli.presets import lenet
from script_modules import load_script

from nncodec.api import load_file
from nncodec.compress.training import recipes

S = load_script("benchmarks/sweep_spike_slab.py")


def tiny_data(n_train: int = 128, n_val: int = 100, n_test: int = 32) -> recipes.ClassifierData:
    """Random inputs; 100 validation samples so a percentage is exact at the 2 decimals the script rounds to
    (score_swept checks the re-scored file against the rounded sweep figure)."""
    g = torch.Generator().manual_seed(0)

    def split(n: int) -> recipes.Split:
        return recipes.Split(torch.randn(n, 784, generator=g), torch.randint(0, 10, (n,), generator=g))

    return recipes.ClassifierData(split(n_train), split(n_val), split(n_test))


def args(test: bool) -> argparse.Namespace:
    return argparse.Namespace(init_phi=0.9, init_sd=1e-3, ema=0.99, anneal=0.0, lr=1e-3, epochs=1, finetune_epochs=1,
                              cosine=True, distill=[0.0], confidence=0.95, test=test)


def one_run(arch: str, tau: float, a: argparse.Namespace, out: Path, seed: int = 0):
    """One tiny variational run of `arch` at one tau and tolerance 0.3: (row, dense model, data, dense correctness)."""
    torch.manual_seed(seed)
    data = tiny_data()
    dense = lenet.build(arch).eval()
    dense_c = S.correct(dense, data.val)
    cfg = {"kl_weight": 1e-4, "lam": 1e-3, "sigma0": 0.1}
    (row,) = S.run_config(dense, data, arch, 0, cfg, [tau], [0.3], a, out, dense_c)
    return row, dense, data, dense_c


def test_lenet5_run_config_writes_a_file_that_decodes_and_a_pip_twin_that_decodes_the_same(tmp_path: Path) -> None:
    row, dense, _, _ = one_run("lenet5", 0.5, args(test=True), tmp_path)
    assert row["kept"] > 0
    params = sum(p.numel() for p in dense.parameters())
    assert params == 431_080
    assert row["bytes"] == Path(row["file"]).stat().st_size
    assert abs(row["ratio"] - 4 * params / row["bytes"]) < 1e-9
    assert row["bytes_pip"] > row["bytes"] and row["pip_bytes"] > 0  # the PIPs cost bytes beside the mask
    decoded = load_file(row["file"])
    assert decoded["conv2.weight"].shape == (50, 20, 5, 5)  # the conv kernels come back with their shape
    assert 0.0 <= row["test"] <= 100.0 and {"even_upper", "odd_upper"} <= set(row)


def test_lenet5_sweep_file_is_rescored_with_its_saved_pips(tmp_path: Path) -> None:
    row, _, data, dense_c = one_run("lenet5", 0.9, args(test=False), tmp_path, seed=1)
    assert "test" not in row  # a sweep never scores test
    scored = S.score_swept(row, "lenet5", data, tmp_path, dense_c, 0.95)
    assert scored["from_sweep"] and scored["bytes_pip"] > scored["bytes"] == row["bytes"]


def _sweep(path: Path, rows: list[dict], epochs: int = 15) -> str:
    path.write_text(json.dumps({"args": {"epochs": epochs, "finetune_epochs": 5, "cosine": True, "arch": "lenet5",
                                         "seed": 0}, "dense_val": 92.0, "rows": rows}))
    return str(path)


def _row(kl: float, nbytes: int, even: float, odd: float) -> dict:
    return {"kl_weight": kl, "lam": 1e-3, "sigma0": 0.1, "tau": 0.5, "qtol": 0.1, "distill": 0.0, "bytes": nbytes,
            "even_upper": even, "odd_upper": odd}


def test_choose_applies_one_rule_over_sweeps_run_side_by_side(tmp_path: Path) -> None:
    a = _sweep(tmp_path / "a.json", [_row(0.05, 9000, 0.8, 0.9), _row(0.05, 7000, 1.2, 0.5)])
    b = _sweep(tmp_path / "b.json", [_row(0.15, 6000, 0.9, 1.4), _row(0.15, 6500, 0.7, 0.95)])
    out = tmp_path / "c.json"
    S.choose_only(argparse.Namespace(previous=[a, b], budget=1.0, json=str(out)))
    result = json.loads(out.read_text())
    # even-eligible smallest first: 6000 (fails odd), 6500 (passes) -> chosen across the two files
    assert result["chosen"]["bytes"] == 6500 and [t["bytes"] for t in result["tried"]] == [6000, 6500]
    assert result["args"]["epochs"] == 15 and len(result["rows"]) == 4


def test_choose_refuses_sweeps_of_different_lengths(tmp_path: Path) -> None:
    a = _sweep(tmp_path / "a.json", [_row(0.05, 9000, 0.8, 0.9)])
    b = _sweep(tmp_path / "b.json", [_row(0.15, 6000, 0.9, 0.9)], epochs=10)
    with pytest.raises(SystemExit):
        S.choose_only(argparse.Namespace(previous=[a, b], budget=1.0, json=str(tmp_path / "c.json")))


def test_least_bound_reads_the_swept_seed_only() -> None:
    rows = [{**_row(0.15, 6000, 1.3, 1.5), "ratio": 287.0, "seed": 0},
            {**_row(0.15, 8000, 1.1, 1.2), "ratio": 215.0, "seed": 0},
            {**_row(0.15, 6200, 0.4, 0.9), "ratio": 278.0, "seed": 1}]  # another seed's sweep: never the choice
    assert S.least_bound(rows, 250, seed=0)["bytes"] == 6000
    assert S.least_bound(rows, 1, seed=0)["bytes"] == 8000
    assert "not_confirmed" in S.least_bound(rows, 1, seed=0)
    assert S.least_bound(rows, 300, seed=0) is None


def test_plot_score_reads_the_architecture_and_seed_of_each_sweep() -> None:
    P = load_script("benchmarks/plot_spike_slab.py")
    assert P.sweep_model({"args": {"arch": "lenet5", "seed": 2}, "rows": []}) == ("lenet5", 2)
    assert P.sweep_model({"rows": []}) == ("lenet300", 0)  # sweeps of sessions 2-6 recorded no arch


def test_plot_pools_final_files_of_one_setting_and_reads_the_chosen_arch(tmp_path) -> None:
    """LeNet-5's finals are one file per seed: one setting's seeds make one mean ± sd, and the peers and
    sizes are the --arch model's (a LeNet-300-100 row must not appear in a LeNet-5 verdict)."""
    import json

    P = load_script("benchmarks/plot_spike_slab.py")
    chosen = {"kl_weight": 0.15, "tau": 0.9, "qtol": 0.1}
    finals = []
    for seed, size in ((0, 4000), (1, 3500), (2, 5200)):
        finals.append(tmp_path / f"final{seed}.json")
        finals[-1].write_text(json.dumps({"chosen": {**chosen, "seed": 0}, "runs": [{"seed": seed, "bytes": size, "drop": 5.0}]}))
    groups = P.final_groups([str(f) for f in finals])
    assert list(groups) == [(("kl_weight", 0.15), ("tau", 0.9), ("qtol", 0.1))]
    assert [r["seed"] for r in next(iter(groups.values()))] == [0, 1, 2]
    peers = tmp_path / "peers.json"
    peers.write_text(json.dumps([
        {"arch": "lenet5", "method": "drr", "seed": 0, "file_bytes": 12000, "test_drop": 0.8, "epochs": [15, 5]},
        {"arch": "lenet300", "method": "pmmp", "seed": 0, "file_bytes": 3000, "test_drop": 0.1, "epochs": [10, 5]}]))
    args = argparse.Namespace(arch="lenet5", curve=None, final=[str(f) for f in finals], peers=[str(peers)])
    pts = P.points(args)
    assert set(pts) == {"spike-slab", "drr"} and pts["spike-slab"] == [{"bytes": 4000, "drop": 5.0, "label": "final"}]
    rows = {r["ratio"]: r for r in P.verdict(args)}
    assert rows[200]["bytes"] == round(4 * 431_080 / 200)  # LeNet-5's float32 bytes, not LeNet-300-100's
    assert rows[100]["ahead"] == "drr"  # 0.8 at 12,000 B beats 5.0 at 4,000 B at 17,243 B
    assert rows[200]["ahead"] == "spike-slab"  # DRR made no file of 8,622 B or less
    assert rows[500]["ahead"] is None  # nobody made one of 3,449 B


def test_run_config_with_a_qat_candidate_keeps_the_smaller_file_and_the_per_sample_scores(tmp_path: Path) -> None:
    a = argparse.Namespace(**{**vars(args(test=True)), "qat_epochs": 1, "qat_tolerance": 2.0, "qat_lr": 3e-4})
    row, dense, data, dense_c = one_run("lenet300", 0.5, a, tmp_path)
    assert row["bytes"] == Path(row["file"]).stat().st_size
    assert row["qat_tries"] and row["qat_plain_bytes"] >= row["bytes"]
    if row.get("qat_used"):
        assert row["bytes"] == row["qat_candidate_bytes"] < row["qat_plain_bytes"]
    assert not list(tmp_path.glob("*.qat-candidate"))
    c = S.correct(dense, data.val, load_file(row["file"]))  # the per-sample scores are the file's
    assert row["val_n"] == 100 and row["val_correct"] == S.bits_hex(c)
    assert row["dense_val_correct"] == S.bits_hex(dense_c)
