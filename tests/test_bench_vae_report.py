"""bench_vae's collection table: the VAE / lossy-path ratio is taken within each seed (the peer's mean
over that seed's files), a lossless fallback of the peer is named and left out, and --redo replaces a
stored unit instead of skipping it."""

from __future__ import annotations

from script_modules import load_script

bench_vae = load_script("benchmarks/bench_vae.py")
vae_report = load_script("benchmarks/vae_report.py")


def lossy(seed: int, index: int, size: int, fallback: bool = False) -> dict:
    drop = 0.0 if fallback else 0.5
    return {"seed": seed, "index": index, "bytes": size, "val_drop": drop, "val_bound": drop, "test_drop": drop}


def collection(seed: int, n: int, per_model: float) -> dict:
    return {"seed": seed, "models": n, "file_bytes": per_model * n, "bytes_per_model": per_model, "paper_ratio": 31.8,
            "real_ratio": 1e6 / per_model, "parts": {"decoder": 1, "latent": 2, "residual": 3, "other": 4},
            "test_drop_mean": 0.1, "test_drop_max": 0.2, "within_1pt": n, "with_residual": 0, "epochs": 9,
            "stopped": "patience"}


def test_ratio_is_taken_within_each_seed_and_fallbacks_are_named():
    d = {"lossy/lenet300/s0": lossy(0, 0, 100), "lossy_checkpoint/lenet300/s0/i63": lossy(0, 63, 300),
         "lossy/lenet300/s1": lossy(1, 0, 1000), "lossy_checkpoint/lenet300/s1/i63": lossy(1, 63, 900_000, True),
         "collection/lenet300/s0/n4": collection(0, 4, 100), "collection/lenet300/s1/n4": collection(1, 4, 500)}
    table = vae_report.collection_table(d)
    assert "pool models 0, 63" in table and "1 search(es) returned the lossless file (900,000 B" in table
    row = next(line for line in table.splitlines() if line.startswith("| 4 |"))
    # seed 0: 100 / mean(100, 300) = 0.5; seed 1: 500 / 1000 = 0.5 (its fallback left out)
    assert "| 0.50 ± 0.00× |" in row


def test_redo_replaces_a_stored_unit(tmp_path):
    store = bench_vae.Store(tmp_path / "r.json")
    store.put("paper/x", {"v": 1})
    assert "paper/x" in bench_vae.Store(tmp_path / "r.json")
    again = bench_vae.Store(tmp_path / "r.json", redo=True)
    assert "paper/x" not in again
    again.put("paper/x", {"v": 2})
    assert bench_vae.Store(tmp_path / "r.json").data["paper/x"]["v"] == 2
