"""train_baselines.py records every seed in README.json as soon as it is saved (other jobs wait for the
baselines and watch that file; the first LeNet-5 run wrote it only after all three seeds), and a --fixed
run adds seeds to an earlier entry without losing it."""

from __future__ import annotations

import json
import sys

from script_modules import load_script

tb = load_script("benchmarks/train_baselines.py")


def row(seed: int, test: float) -> dict:
    return {"seed": seed, "file": f"lenet5_seed{seed}.safetensors", "epochs": 15, "weight_decay": 0.0,
            "val_accuracy": 92.0, "test_accuracy": test}


def test_readme_grows_seed_by_seed_and_keeps_other_archs(tmp_path, monkeypatch):
    path = tmp_path / "README.json"
    path.write_text(json.dumps({"lenet300": {"epochs": 20}, "lenet5": {"epochs": 4, "seeds": [row(0, 90.0)]}}))
    monkeypatch.setattr(sys, "argv", ["train_baselines.py", "--arch", "lenet5"])
    sweep = [{"epochs": 10, "val_accuracy": 91.8}]
    tb.write_readme(path, "lenet5", [row(0, 91.8)], 15, 0.0, "chosen (seeds 1 still training)", sweep,
                    merge=False, first=True)
    r = json.loads(path.read_text())
    assert r["lenet300"] == {"epochs": 20}  # another architecture's entry is untouched
    assert [s["seed"] for s in r["lenet5"]["seeds"]] == [0] and r["lenet5"]["epochs"] == 15
    assert r["lenet5"]["seeds"][0]["test_accuracy"] == 91.8  # the old 4-epoch seed 0 is replaced, not kept
    tb.write_readme(path, "lenet5", [row(0, 91.8), row(1, 91.5)], 15, 0.0, "chosen", sweep, merge=False, first=False)
    r = json.loads(path.read_text())["lenet5"]
    assert [s["seed"] for s in r["seeds"]] == [0, 1] and r["selection"] == "chosen" and r["sweep"] == sweep
    assert len(r["commands"]) == 1


def test_fixed_run_adds_seeds_to_the_earlier_entry(tmp_path, monkeypatch):
    path = tmp_path / "README.json"
    path.write_text(json.dumps({"lenet5": {"seeds": [row(0, 91.8)], "sweep": [{"epochs": 10}], "commands": ["first"]}}))
    monkeypatch.setattr(sys, "argv", ["train_baselines.py", "--fixed", "15", "0", "--seeds", "2"])
    tb.write_readme(path, "lenet5", [row(2, 91.6)], 15, 0.0, "fixed", [], merge=True, first=True)
    r = json.loads(path.read_text())["lenet5"]
    assert [s["seed"] for s in r["seeds"]] == [0, 2] and r["sweep"] == [{"epochs": 10}]
    assert r["commands"][0] == "first" and "--fixed 15 0" in r["commands"][1]
