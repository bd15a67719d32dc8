"""bench_lossy keeps every (model, seed) it has measured and reports seeds as mean ± sd: a run of seed 1
must not erase seed 0's rows (it did: the results file held one seed), and the ratio nncodec / NNCodec
is taken within each seed's run."""

from __future__ import annotations

import pytest
from script_modules import load_script

bench_lossy = load_script("benchmarks/bench_lossy.py")

BUDGETS = [0.5, 1.0]


def entry(arch: str, seed: int, nn_bytes: int, peer_bytes: int | None, *, codecs=("nncodec data-free", "NNCodec 2.1.3")):
    rows = []
    for b in BUDGETS:
        for c in codecs:
            size = nn_bytes if c.startswith("nncodec") else peer_bytes
            rows.append({"codec": c, "budget": b, "bytes": size, "val_drop": 0.1, "val_drop_bound": 0.3,
                         "test_accuracy": 90.0, "test_drop": 0.2 * b})
    return {"arch": arch, "seed": seed, "float32_bytes": 1000, "baseline_test": 90.2, "rows": rows,
            "nnr": [{}] if peer_bytes else None, "qps": [-4, -3]}


def test_merge_keeps_other_seeds_and_models():
    old = {"budgets": BUDGETS, "qps": [-2], "load": "1.0", "models": [entry("lenet300", 0, 50, 100), entry("lenet5", 0, 60, 100)]}
    models = bench_lossy.merge(old, entry("lenet5", 1, 70, 100), BUDGETS, {"nncodec", "nnr"})
    assert sorted((m["arch"], m["seed"]) for m in models) == [("lenet300", 0), ("lenet5", 0), ("lenet5", 1)]
    models = bench_lossy.merge({**old, "models": models}, entry("lenet5", 0, 40, 100), BUDGETS, {"nncodec", "nnr"})
    again = [m for m in models if (m["arch"], m["seed"]) == ("lenet5", 0)]
    assert len(again) == 1 and again[0]["rows"][0]["bytes"] == 40


def test_merge_keeps_rows_of_codecs_not_run():
    old = {"budgets": BUDGETS, "models": [entry("lenet5", 0, 60, 100)]}
    only_nncodec = entry("lenet5", 0, 30, None, codecs=("nncodec data-free",))
    (m,) = bench_lossy.merge(old, only_nncodec, BUDGETS, {"nncodec"})
    peer = [r["bytes"] for r in m["rows"] if r["codec"] == "NNCodec 2.1.3"]
    ours = [r["bytes"] for r in m["rows"] if r["codec"] == "nncodec data-free"]
    assert peer == [100, 100] and ours == [30, 30] and m["nnr"] == [{}]


def test_merge_drops_entries_of_other_budgets():
    old = {"budgets": [0.25], "models": [entry("lenet300", 0, 50, 100)]}
    models = bench_lossy.merge(old, entry("lenet5", 0, 60, 100), BUDGETS, {"nncodec", "nnr"})
    assert [(m["arch"], m["seed"]) for m in models] == [("lenet5", 0)]


def test_summary_ratio_is_per_seed_then_averaged():
    res = {"budgets": BUDGETS, "models": [entry("lenet5", 0, 50, 100), entry("lenet5", 1, 90, 300)]}
    g = next(g for g in bench_lossy.summary_rows(res) if g["codec"] == "nncodec data-free" and g["budget"] == 0.5)
    assert g["seeds"] == [0, 1] and g["bytes"] == [50, 90]
    assert g["ratio"] == pytest.approx([0.5, 0.3])  # not mean(bytes) / mean(peer bytes) = 70 / 200


def test_markdown_target_verdict_uses_mean_ratio():
    res = {"machine": "m", "confidence": 0.95, "nnr_run": True, "budgets": BUDGETS,
           "models": [entry("lenet5", 0, 50, 100), entry("lenet5", 1, 90, 100)]}
    md = bench_lossy.markdown(res)
    line = next(x for x in md.splitlines() if x.startswith("| LeNet-5-Caffe | 0.5 pt | nncodec data-free | 0,1 |"))
    assert "0.70 ± 0.28x" in line and "<= 0.75x met" in line
    res["models"][1] = entry("lenet5", 1, 120, 100)
    line = next(x for x in bench_lossy.markdown(res).splitlines()
                if x.startswith("| LeNet-5-Caffe | 0.5 pt | nncodec data-free | 0,1 |"))
    assert "**missed**" in line


def test_lossless_fallback_is_named():
    res = {"machine": "m", "confidence": 0.95, "nnr_run": True, "budgets": BUDGETS,
           "models": [entry("lenet5", 0, 50, 100), entry("lenet5", 1, 900, 100)]}
    for r in res["models"][1]["rows"]:
        r["settings"] = {"fc1.weight": "lossless", "fc2.weight": "lossless"} if r["codec"].startswith("nncodec") else None
    res["models"][0]["rows"][0]["settings"] = {"fc1.weight": "step=1sd", "fc2.weight": "lossless"}
    md = bench_lossy.markdown(res)
    assert "(seed 1: no lossy file passed, lossless fallback)" in md
    assert md.count("900 (lossless fallback)") == 2 and "50 (lossless fallback)" not in md
