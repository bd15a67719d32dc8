"""make_results reports only results measured on the current dense baselines: after a baseline is retrained,
the lossy and pruning rows of the old one are left out (and named), never mixed with the new ones."""

from __future__ import annotations

from script_modules import load_script

make_results = load_script("benchmarks/make_results.py")

INFO = {"lenet300": {"seeds": [{"seed": 0, "test_accuracy": 89.88}]},
        "lenet5": {"seeds": [{"seed": 0, "test_accuracy": 91.82}, {"seed": 1, "test_accuracy": 91.5}]}}


def test_results_of_a_retrained_baseline_are_left_out():
    lossy = {"models": [{"arch": "lenet300", "seed": 0, "baseline_test": 89.88},
                        {"arch": "lenet5", "seed": 0, "baseline_test": 90.03},   # the old 4-epoch seed 0
                        {"arch": "lenet5", "seed": 1, "baseline_test": 91.5}]}
    prune = [{"arch": "lenet300", "seed": 0, "dense_test": 89.88}, {"arch": "lenet5", "seed": 2, "dense_test": 90.0}]
    kept, kept_prune, notes = make_results.drop_stale(INFO, lossy, prune)
    assert [(m["arch"], m["seed"]) for m in kept["models"]] == [("lenet300", 0), ("lenet5", 1)]
    assert kept_prune == prune[:1]
    assert len(notes) == 2 and "seed 0 (dense test 90.03 %)" in notes[0] and "seed 2" in notes[1]


def test_nothing_dropped_when_all_current():
    lossy = {"models": [{"arch": "lenet5", "seed": 1, "baseline_test": 91.5}]}
    assert make_results.drop_stale(INFO, lossy, []) == (lossy, [], [])
    assert make_results.drop_stale(INFO, None, []) == (None, [], [])
