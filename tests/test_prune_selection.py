"""Training-aware pruning under the protocol: the benchmark's selection rule (even half steers, odd half
confirms, smallest file that passes), the cosine schedule and early stopping of the fine-tuning."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from script_modules import load_script
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nncodec.compress.training import drr
from nncodec.compress.training.loop import Runtime, run_epochs
from nncodec.compress.training.targets import select_parameters
from nncodec.errors import BadArgumentError

bench_prune = load_script("benchmarks/bench_prune.py")


def row(nbytes: int, even: float, odd: float, name: str = "") -> dict:
    return {"file_bytes": nbytes, "val_even_bound": even, "val_odd_bound": odd, "overrides": {"name": name}}


def test_choose_takes_the_smallest_file_that_passes_both_halves():
    rows = [row(9000, 0.5, 0.6, "big"), row(5000, 1.3, 0.2, "fails even"), row(6000, 0.9, 1.2, "fails odd"),
            row(7000, 1.0, 0.9, "passes")]
    assert bench_prune.choose(rows)["overrides"]["name"] == "passes"
    assert bench_prune.choose(rows, max_drop=0.5) is None  # 9000 passes even (0.5) but not odd (0.6)
    assert bench_prune.choose(rows, max_drop=0.6)["overrides"]["name"] == "big"


def test_choose_consults_the_odd_half_a_bounded_number_of_times():
    failing = [row(1000 + i, 0.1, 1.5) for i in range(bench_prune.RECONFIRMATIONS + 1)]
    late = row(5000, 0.1, 0.1, "late")
    assert bench_prune.choose([*failing, late]) is None  # the 5th look at the odd half is not taken
    assert bench_prune.choose([*failing[1:], late])["overrides"]["name"] == "late"
    assert bench_prune.choose([]) is None


def test_val_halves_pairs_the_even_and_the_odd_samples():
    dense = np.ones(2000, bool)
    cand = dense.copy()
    cand[0:200:2] = False  # 100 even samples wrong: 10 % of the 1,000 even ones
    h = bench_prune.val_halves(dense, cand)
    assert h["val_even_drop"] == pytest.approx(10.0) and h["val_odd_drop"] == 0.0
    assert h["val_even_bound"] > 10.0 and h["val_odd_bound"] == 0.0


def test_method_validation_is_the_even_half_only():
    x, y = torch.arange(10.0).reshape(10, 1), torch.arange(10)
    even, odd = bench_prune.half(bench_prune.Split(x, y, "v"), 0), bench_prune.half(bench_prune.Split(x, y, "v"), 1)
    assert even.y.tolist() == [0, 2, 4, 6, 8] and odd.y.tolist() == [1, 3, 5, 7, 9]


# ---------------------------------------------------------------------------------- schedule, early stopping


def regression(n: int = 256, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    w = torch.zeros(8)
    w[[1, 5]] = torch.tensor([1.5, -2.0])
    return x, (x @ w).unsqueeze(1)


def loader(x, y):
    return DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0))


def test_run_epochs_steps_the_scheduler_every_batch_and_calls_on_epoch():
    x, y = regression()
    model = nn.Linear(8, 1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    steps = 3 * len(loader(x, y))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    seen = []
    run_epochs(model, loader(x, y), F.mse_loss, opt, 3, Runtime(progress=False), phase="t",
               params=select_parameters(model), scheduler=sched, on_epoch=seen.append)
    assert seen == [1, 2, 3]
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)  # a full cosine: stepped `steps` times


def test_cosine_schedule_changes_the_run_and_bad_schedule_is_refused():
    def run(schedule):
        torch.manual_seed(0)
        x, y = regression()
        model = nn.Linear(8, 1)
        drr(model, loader(x, y), F.mse_loss, alpha=1e-2, epochs=5, finetune_epochs=2, lr=2e-2, lr_schedule=schedule)
        return model.weight.detach().clone()

    assert not torch.equal(run("constant"), run("cosine"))
    with pytest.raises(BadArgumentError, match="lr_schedule"):
        run("linear")


def test_finetune_select_keeps_the_best_epoch_with_the_mask_intact():
    torch.manual_seed(0)
    x, y = regression()
    model = nn.Linear(8, 1)
    states, scores = [], iter([1.0, 3.0, 2.0, 0.5])  # epoch 2 is the best

    def select(m):
        states.append({k: v.detach().clone() for k, v in m.state_dict().items()})
        return next(scores)

    drr(model, loader(x, y), F.mse_loss, alpha=5e-2, epochs=8, finetune_epochs=4, lr=2e-2, finetune_select=select)
    assert len(states) == 4
    assert torch.equal(model.weight.detach(), states[1]["weight"])
    assert not torch.equal(states[1]["weight"], states[3]["weight"])  # the last epoch was different
    assert int((model.weight == 0).sum()) > 0  # pruned weights stay exactly zero


def sweep_row(nbytes: int, even: float, odd: float, alpha: float) -> dict:
    return {"arch": "lenet300", "method": "drr", "sweep": True, "selection": "even/odd bound", "epochs": [30, 10],
            "file_bytes": nbytes, "ratio": 1066440 / nbytes, "overrides": {"alpha": alpha}, "val_even_drop": even - 0.5,
            "val_even_bound": even, "val_odd_drop": odd - 0.5, "val_odd_bound": odd}


def test_sweep_table_marks_the_chosen_candidate_or_says_none_was_confirmed():
    rows = [sweep_row(4000, 1.4, 0.8, 1e-4), sweep_row(8000, 0.9, 0.7, 5e-5), sweep_row(16000, 0.6, 0.5, 2e-5)]
    lines = bench_prune.sweep_table(rows).splitlines()
    chosen = [ln for ln in lines if "**chosen**" in ln]
    assert len(chosen) == 1 and "5e-05" in chosen[0] and "8,000" in chosen[0]
    none = bench_prune.sweep_table([sweep_row(4000, 1.4, 0.8, 1e-4)])
    assert "no candidate confirmed" in none and "**chosen**" not in none
    assert bench_prune.sweep_table([{**rows[0], "selection": None}]) == ""  # session-2 rows are not this rule's


def test_least_bound_fallback_takes_the_smallest_worse_half():
    rows = [row(4000, 0.2, 1.9, "odd bad"), row(9000, 1.2, 1.1, "both a bit over"), row(7000, 1.5, 0.3, "even bad")]
    assert bench_prune.choose(rows) is None
    assert bench_prune.least_bound(rows)["overrides"]["name"] == "both a bit over"
    assert bench_prune.least_bound([]) is None


def seed_row(seed: int, dense: np.ndarray, cand: np.ndarray, nbytes: int, name: str) -> dict:
    return {"arch": "lenet300", "method": "rl1", "sweep": True, "selection": "even/odd bound", "seed": seed,
            "epochs": [100, 20], "file_bytes": nbytes, "ratio": 1066440 / nbytes, "overrides": {"name": name},
            "val_n": dense.size, "dense_val_correct": bench_prune.protocol.bits_hex(dense),
            "val_correct": bench_prune.protocol.bits_hex(cand)}


def test_pooled_halves_average_the_seeds_per_image():
    n = 4001  # odd length: the packed bits carry padding that must not count
    dense = np.ones(n, bool)
    cands = []
    for s in range(3):  # seed s loses 2 * (s + 1) % of the even images and nothing on the odd ones
        c = dense.copy()
        c[0:2 * 40 * (s + 1):2] = False
        cands.append(c)
    rows = [seed_row(s, dense, cands[s], 9000, "x") for s in range(3)]
    h = bench_prune.protocol.pooled_halves(rows)
    assert h["val_even_drop"] == pytest.approx(100 * (40 + 80 + 120) / 3 / 2001)
    assert h["val_odd_drop"] == 0.0 and h["val_odd_bound"] == 0.0
    # the same images wrong on every seed are one unit each: the bound equals one seed's bound on them
    same = [seed_row(s, dense, cands[0], 9000, "x") for s in range(3)]
    one = bench_prune.val_halves(dense, cands[0])
    assert bench_prune.protocol.pooled_halves(same)["val_even_bound"] == pytest.approx(one["val_even_bound"])


def test_choose_pooled_needs_every_seed_and_bounds_the_mean():
    rng = np.random.default_rng(0)
    dense = rng.random(5000) < 0.9

    def cand(drop_pt: float, seed: int) -> np.ndarray:  # wrong on drop_pt % more images, different per seed
        c = dense.copy()
        right = np.flatnonzero(c)
        c[np.random.default_rng(seed).choice(right, int(drop_pt / 100 * 5000), replace=False)] = False
        return c

    rows = [seed_row(s, dense, cand(0.3, s), 8000, "small drop") for s in range(3)]
    rows += [seed_row(s, dense, cand(2.0, s), 6000, "big drop") for s in range(3)]
    rows += [seed_row(s, dense, cand(0.1, s), 5000, "two seeds") for s in range(2)]
    best = bench_prune.choose_pooled(rows, [0, 1, 2])
    assert best["overrides"]["name"] == "small drop"
    assert [r["seed"] for r in best["rows"]] == [0, 1, 2] and best["file_bytes"] == 8000
    assert bench_prune.choose_pooled(rows, [0, 1]) ["overrides"]["name"] == "two seeds"
    assert bench_prune.choose_pooled(rows, [0, 1, 2], max_drop=0.2) is None
    table = bench_prune.pooled_table(rows, [0, 1, 2])
    assert sum("**chosen**" in ln for ln in table.splitlines()) == 1 and "two seeds" not in table


def test_a_swept_file_is_scored_on_test_once_and_only_if_it_is_the_file_the_sweep_scored(tmp_path, monkeypatch):
    """Sweeps see no test data (their rows carry none); the chosen setting's kept file is scored on test
    by `score_swept`, which refuses a file that is not the one its row describes."""
    from nncodec_cli.presets import lenet

    import nncodec

    protocol = bench_prune.protocol
    torch.manual_seed(0)
    dense, pruned = lenet.build("lenet300"), lenet.build("lenet300")
    with torch.no_grad():
        for p in pruned.parameters():
            p.mul_(torch.rand_like(p) < 0.3)
    monkeypatch.setattr(protocol, "load_baseline", lambda arch, seed=0: dense.state_dict())
    g = torch.Generator().manual_seed(1)

    def split(n: int, name: str):
        return protocol.Split(torch.randn(n, 784, generator=g), torch.randint(0, 10, (n,), generator=g), name)

    data = protocol.ProtocolData(split(8, "train"), split(300, "val"), split(500, "test"), {})
    path = tmp_path / "sweeps" / "kept.nnc"
    path.parent.mkdir()
    nncodec.save_file(pruned.state_dict(), path)
    decoded = nncodec.load_file(path)
    sweep = {"arch": "lenet300", "seed": 0, "file": str(path), "file_bytes": path.stat().st_size, "sweep": True,
             "val_correct": protocol.bits_hex(protocol.correct("lenet300", decoded, data.val)),
             "dense_test": None, "test_accuracy": None, "test_drop": None}
    r = bench_prune.score_swept(sweep, data)
    dense_test, test = protocol.accuracy(dense, None, data.test), protocol.accuracy("lenet300", decoded, data.test)
    assert (r["dense_test"], r["test_accuracy"]) == (dense_test, test)
    assert r["test_drop"] == pytest.approx(dense_test - test) and not r["sweep"] and r["reused_from_sweep"]
    with pytest.raises(SystemExit, match="not the file"):
        bench_prune.score_swept({**sweep, "file_bytes": sweep["file_bytes"] + 1}, data)


def test_a_sweep_keeps_one_file_per_setting_and_seed(tmp_path):
    a = bench_prune.sweep_path(tmp_path, "lenet5", "rl1", 0, {"alpha": 3e-4, "qat_epochs": 5})
    assert a == bench_prune.sweep_path(tmp_path, "lenet5", "rl1", 0, {"qat_epochs": 5, "alpha": 3e-4})
    others = {bench_prune.sweep_path(tmp_path, "lenet5", "rl1", 1, {"alpha": 3e-4, "qat_epochs": 5}),
              bench_prune.sweep_path(tmp_path, "lenet5", "rl1", 0, {"alpha": 3e-4, "qat_epochs": 10}),
              bench_prune.sweep_path(tmp_path, "lenet5", "pmmp", 0, {"alpha": 3e-4, "qat_epochs": 5})}
    assert a not in others and len(others) == 3 and a.parent == tmp_path / "sweeps"
