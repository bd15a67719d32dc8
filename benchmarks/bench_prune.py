"""Training-aware pruning (PMMP, DRR, R-L1) on the protocol: converged baselines, 3 seeds, real .nnc bytes.

    nice -n 10 python benchmarks/bench_prune.py --data /work/shared/data/fashion-mnist \
        --archs lenet300 --methods drr pmmp rl1 --seeds 0 1 2 [--grid grid.json]

For each (architecture, method, seed) the converged dense baseline of that seed
(benchmarks/train_baselines.py) is pruned with the method (regularised training on the 55,000 TRAIN
images, RGP -> TAMADE -> RGP, fine-tuning with the mask frozen), the survivors are quantized as coarsely
as VALIDATION accuracy allows, the .nnc file is written and decoded, and the decoded model is scored
once on the test set. Hyper-parameters: with --grid, every candidate runs on seed 0 and the smallest
file whose validation drop (against the dense model's validation accuracy) is <= --max-val-drop is
chosen; the chosen setting then runs on every seed. Without --grid the method defaults are used as they
are. The table reports mean +- sd over the seeds of the test drop, file bytes and ratio (float32 bytes /
file bytes), and the "paper estimate": 4 bytes x the method's own non-zeros, counted after pruning and
fine-tuning and BEFORE the quantizer's extra zeroing. Rows are appended to --json as they finish, so
seeds can run in parallel processes.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import protocol  # noqa: E402
from nncodec_cli.presets import lenet as models  # noqa: E402

import nncodec  # noqa: E402
from nncodec.compress.training import recipes  # noqa: E402

TARGETS = {"lenet300": 100, "lenet5": 200}  # ratio float32 bytes / file bytes, within 1.0 pt mean test drop
EPOCHS = {"lenet300": (10, 5), "lenet5": (4, 2)}  # (regularised, fine-tuning) epochs


def classifier_data(data: protocol.ProtocolData) -> recipes.ClassifierData:
    return recipes.ClassifierData(*(recipes.Split(s.x, s.y) for s in (data.train, data.val, data.test)))


def run_one(arch: str, method: str, seed: int, overrides: dict, data: protocol.ProtocolData,
            cdata: recipes.ClassifierData, out: Path, epochs: tuple[int, int]) -> dict:
    dense = models.build(arch)
    dense.load_state_dict(protocol.load_baseline(arch, seed))
    dense_test = protocol.accuracy(dense, None, data.test)
    dense_val = protocol.accuracy(dense, None, data.val)
    events: list[dict] = []
    path = out / f"{arch}-{method}-seed{seed}.nnc"
    t0 = time.perf_counter()
    r = recipes.compress_classifier(dense, arch, cdata, method, path, epochs=epochs[0], finetune_epochs=epochs[1],
                                    seed=seed, progress=False, callback=events.append, overrides=overrides,
                                    dense_accuracy=dense_test)
    decoded = nncodec.load_file(path)
    method_nnz = next((e["nonzero"] for e in reversed(events) if "nonzero" in e), None)
    return {"arch": arch, "method": method, "seed": seed, "overrides": overrides,
            "dense_val": dense_val, "dense_test": dense_test,
            "val_accuracy": protocol.accuracy(arch, decoded, data.val),
            "test_accuracy": r["compressed_test_accuracy"], "test_drop": dense_test - r["compressed_test_accuracy"],
            "file_bytes": r["file_bytes"], "float32_bytes": r["float32_bytes"], "ratio": r["ratio"],
            "nonzero_after_quantizer": r["nonzero"], "method_nonzero": method_nnz,
            "paper_estimate_ratio": r["parameters"] / method_nnz if method_nnz else None,
            "epochs": list(epochs), "seconds": round(time.perf_counter() - t0, 1)}


def append(path: Path, row: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        rows = json.loads(path.read_text()) if path.exists() else []
        rows.append(row)
        path.write_text(json.dumps(rows, indent=1, default=str) + "\n")


def summarise(rows: list[dict]) -> str:
    """Mean +- sd over seeds per (arch, method) of the final (non-sweep) rows."""
    def ms(vals: list[float], fmt: str) -> str:
        if len(vals) < 2:
            return format(vals[0], fmt) + " (1 seed)"
        return f"{format(statistics.mean(vals), fmt)} ± {format(statistics.stdev(vals), fmt)}"

    lines = ["| model | method | seeds | test drop (pt) | .nnc bytes | ratio | target | paper estimate ratio "
             "(4 B × method non-zeros, before quantizer zeroing) |", "|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for r in rows:
        if not r.get("sweep"):
            groups.setdefault((r["arch"], r["method"], json.dumps(r["overrides"], sort_keys=True)), []).append(r)
    for (arch, method, ov), rs in sorted(groups.items()):
        method = f"{method} {ov}" if ov != "{}" else f"{method} (defaults)"
        drop = [r["test_drop"] for r in rs]
        ratio = [r["ratio"] for r in rs]
        ok = statistics.mean(drop) <= 1.0 and statistics.mean(ratio) >= TARGETS[arch]
        est = [r["paper_estimate_ratio"] for r in rs if r["paper_estimate_ratio"]]
        lines.append(f"| {protocol.NAMES[arch]} | {method} | {','.join(str(r['seed']) for r in rs)} | "
                     f"{ms(drop, '.2f')} | {ms([r['file_bytes'] for r in rs], ',.0f')} | ×{ms(ratio, '.1f')} | "
                     f"≥ ×{TARGETS[arch]}: {'met' if ok else '**missed**'} | ×{ms(est, '.1f') if est else '-'} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=protocol.DATA_DIR)
    ap.add_argument("--archs", nargs="+", default=["lenet300", "lenet5"], choices=list(TARGETS))
    ap.add_argument("--methods", nargs="+", default=["pmmp", "drr", "rl1"])
    ap.add_argument("--seeds", type=int, nargs="+", default=list(protocol.SEEDS))
    ap.add_argument("--grid", type=Path, default=None,
                    help='JSON {"arch": {"method": [{overrides}, ...]}}: chosen on validation with seed 0')
    ap.add_argument("--max-val-drop", type=float, default=0.5,
                    help="grid selection: largest validation drop a candidate may have (well below 1.0: the first "
                         "runs dropped 0.8 pt more on test than on validation)")
    ap.add_argument("--sweep-only", action="store_true",
                    help="only run the --grid candidates on seed 0 (rows marked sweep), e.g. one process per candidate")
    ap.add_argument("--from-sweeps", action="store_true",
                    help="choose among the sweep rows already in --json (same rule), then run --seeds")
    ap.add_argument("--epochs", type=int, nargs=2, default=None, metavar=("REG", "FINETUNE"))
    ap.add_argument("--out", type=Path, default=HERE / "out" / "prune")
    ap.add_argument("--json", type=Path, default=HERE / "results" / "prune.json")
    ap.add_argument("--summary", action="store_true", help="only print the table of --json")
    a = ap.parse_args()
    if a.summary:
        print(summarise(json.loads(a.json.read_text())))
        return
    torch.set_num_threads(1)
    a.out.mkdir(parents=True, exist_ok=True)
    data = protocol.load(a.data)
    cdata = classifier_data(data)
    grid = json.loads(a.grid.read_text()) if a.grid else {}
    for arch in a.archs:
        epochs = tuple(a.epochs) if a.epochs else EPOCHS[arch]
        for method in a.methods:
            candidates = grid.get(arch, {}).get(method, [{}])
            chosen = candidates[0]
            sweeps = []
            if a.sweep_only or len(candidates) > 1:  # selection on validation, seed 0
                for ov in candidates:
                    r = run_one(arch, method, 0, ov, data, cdata, a.out, epochs)
                    r["sweep"] = True
                    append(a.json, r)
                    sweeps.append(r)
                    print(f"[sweep {arch} {method}] {ov}: {r['file_bytes']:,} B, val drop "
                          f"{r['dense_val'] - r['val_accuracy']:.2f}", file=sys.stderr, flush=True)
            if a.sweep_only:
                continue
            if a.from_sweeps:
                sweeps = [r for r in json.loads(a.json.read_text())
                          if r.get("sweep") and r["arch"] == arch and r["method"] == method]
            if sweeps:
                ok = [r for r in sweeps if r["dense_val"] - r["val_accuracy"] <= a.max_val_drop]
                chosen = min(ok, key=lambda r: r["file_bytes"])["overrides"] if ok else \
                    min(sweeps, key=lambda r: r["dense_val"] - r["val_accuracy"])["overrides"]
                print(f"[{arch} {method}] chosen on validation: {chosen}", file=sys.stderr, flush=True)
            for seed in a.seeds:
                again = [r for r in sweeps if r["seed"] == seed and r["overrides"] == chosen]
                if again:  # the sweep already ran this seed with this setting: the same computation
                    r = {**again[0], "sweep": False, "reused_from_sweep": True}
                else:
                    r = run_one(arch, method, seed, chosen, data, cdata, a.out, epochs)
                append(a.json, r)
                print(f"[{arch} {method} seed {seed}] {r['file_bytes']:,} B (x{r['ratio']:.1f}), test drop "
                      f"{r['test_drop']:.2f}, method nnz {r['method_nonzero']}, {r['seconds']:.0f} s",
                      file=sys.stderr, flush=True)
    print(summarise(json.loads(a.json.read_text())))


if __name__ == "__main__":
    main()
