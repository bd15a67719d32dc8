"""Training-aware pruning (PMMP, DRR, R-L1) on the protocol: converged baselines, 3 seeds, real .nnc bytes.

    nice -n 10 python benchmarks/bench_prune.py --data /work/shared/data/fashion-mnist \
        --archs lenet300 --methods drr --seeds 0 1 2 --grid benchmarks/prune_grid.json

For each (architecture, method, seed) the converged dense baseline of that seed
(benchmarks/train_baselines.py) is pruned with the method (regularised training on the 55,000 TRAIN
images, RGP -> TAMADE -> RGP, fine-tuning with the mask frozen), the survivors are quantized as coarsely
as validation accuracy allows, the .nnc file is written and decoded, and the decoded model is scored
once on the test set.

Validation is used in two halves (PROTOCOL.md rule 4): the EVEN-numbered validation samples are the
method's own validation data (quantization search, early stopping of the fine-tuning) and steer the
choice among grid candidates; the ODD-numbered samples only confirm the chosen candidate.
Selection (`choose`): with --grid every candidate runs on seed 0; candidates whose one-sided 95 % upper
bound of the paired validation drop (against the dense model of the same seed) is within --max-drop
on the even samples are tried smallest file first, and the first whose bound on the odd samples is also
within --max-drop is chosen; at most 1 + RECONFIRMATIONS candidates are put to the odd half (a bounded
number of looks, as in the budget search). The chosen setting then runs on every seed. Without --grid
the method defaults are used as they are. Sweep runs see no test data: each keeps its file under
OUT/sweeps/, and only the chosen setting's files are scored on test, once (`score_swept`).

The table reports mean +- sd over the seeds of the test drop, file bytes and ratio (float32 bytes /
file bytes), and the "paper estimate": 4 bytes x the method's own non-zeros, counted after pruning and
fine-tuning and BEFORE the quantizer's extra zeroing. Rows are appended to --json as they finish.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import protocol  # noqa: E402
from nncodec_cli.presets import lenet as models  # noqa: E402
from protocol import Split  # noqa: E402

import nncodec  # noqa: E402
from nncodec.compress.training import recipes  # noqa: E402
from nncodec.confidence import half_drops  # noqa: E402

TARGETS = {"lenet300": 100, "lenet5": 200}  # ratio float32 bytes / file bytes, within 1.0 pt mean test drop
EPOCHS = {"lenet300": (10, 5), "lenet5": (4, 2)}  # (regularised, fine-tuning) epochs unless a candidate sets them
MAX_DROP = 1.0  # selection: the bound of the paired validation drop on each half must be within this (pt)
RECONFIRMATIONS = 3  # candidates put to the odd half after the first one failed it
QAT_KEYS = ("qat_epochs", "qat_tolerance", "qat_lr")  # candidate keys for compress_classifier's QAT candidate
QAT_RESULT = ("qat_tries", "plain_file_bytes", "qat_file_bytes", "qat_used")
QUANT_TOLERANCE = 0.3  # validation points the quantization search may lose (a candidate may set "quant_tolerance")


def half(split: Split, h: int) -> Split:
    """The even (h=0) or odd (h=1) numbered samples of a split."""
    return Split(split.x[h::2], split.y[h::2], f"{split.name}[{h}::2]")


def classifier_data(data: protocol.ProtocolData) -> recipes.ClassifierData:
    """The method's data: train, the EVEN validation samples (its validation), test. The odd validation
    samples stay unseen until they confirm a selection."""
    return recipes.ClassifierData(*(recipes.Split(s.x, s.y) for s in (data.train, half(data.val, 0), data.test)))


def val_halves(dense_correct: np.ndarray, correct: np.ndarray) -> dict[str, float]:
    """Paired drop (pt) and its one-sided 95 % upper bound on the even and on the odd validation samples."""
    out = {}
    for name, d in zip(("even", "odd"), half_drops(100.0 * dense_correct, 100.0 * correct), strict=True):
        out[f"val_{name}_drop"], out[f"val_{name}_bound"] = d.drop, d.upper
    return out


UNCONFIRMED = "NOT confirmed (least bound)"
NO_SWEEP = "no sweep (setting given)"


def pooled_candidates(sweeps: list[dict], seeds: list[int]) -> list[dict]:
    """One summary per candidate that ran on every one of `seeds` (with per-sample scores): the seeds'
    rows, the mean file bytes and the pooled halves."""
    groups: dict[str, dict[int, dict]] = {}
    for r in sweeps:
        if "val_correct" in r:
            groups.setdefault(json.dumps(r["overrides"], sort_keys=True), {})[r["seed"]] = r
    out = []
    for key, by_seed in groups.items():
        if all(s in by_seed for s in seeds):
            rows = [by_seed[s] for s in seeds]
            out.append({"overrides": json.loads(key), "rows": rows,
                        "file_bytes": statistics.mean(r["file_bytes"] for r in rows), **protocol.pooled_halves(rows)})
    return out


def least_bound(sweeps: list[dict]) -> dict | None:
    """The fallback when no candidate is confirmed: the one whose larger bound of the two halves is smallest."""
    return min(sweeps, key=lambda r: max(r["val_even_bound"], r["val_odd_bound"]), default=None)


def choose(sweeps: list[dict], max_drop: float = MAX_DROP, reconfirmations: int = RECONFIRMATIONS) -> dict | None:
    """The smallest file that passes: even-half bound within max_drop (steers), then the odd-half bound
    within max_drop (confirms), the odd half consulted for at most 1 + reconfirmations candidates.
    None when no candidate is confirmed."""
    steered = sorted((r for r in sweeps if r["val_even_bound"] <= max_drop + 1e-9), key=lambda r: r["file_bytes"])
    for r in steered[:1 + reconfirmations]:
        if r["val_odd_bound"] <= max_drop + 1e-9:
            return r
    return None


POOLED = "pooled 3-seed bound"


def choose_pooled(sweeps: list[dict], seeds: list[int], max_drop: float = MAX_DROP,
                  reconfirmations: int = RECONFIRMATIONS) -> dict | None:
    """`choose` on the seeds' pooled halves (PROTOCOL.md, "pooled rule"): the target is a mean over seeds,
    so the bound is the bound of that mean. Candidates must have run on every seed; the smallest mean file
    whose pooled even bound is within max_drop is put to the pooled odd half first; None if none passes."""
    cands = pooled_candidates(sweeps, seeds)
    steered = sorted((c for c in cands if c["val_even_bound"] <= max_drop + 1e-9), key=lambda c: c["file_bytes"])
    for c in steered[:1 + reconfirmations]:
        if c["val_odd_bound"] <= max_drop + 1e-9:
            return c
    return None


def dense_val(arch: str, seed: int, data: protocol.ProtocolData) -> float:
    """Validation accuracy (%) of the current dense baseline of (arch, seed), as the rows record it."""
    dense = models.build(arch)
    dense.load_state_dict(protocol.load_baseline(arch, seed))
    return 100.0 * float(protocol.correct(dense, None, data.val).mean())


def sweep_path(out: Path, arch: str, method: str, seed: int, overrides: dict) -> Path:
    """Where a sweep keeps a candidate's file (one per setting and seed), so that the chosen one can be
    scored on test later without being trained again."""
    key = hashlib.sha256(json.dumps(overrides, sort_keys=True).encode()).hexdigest()[:12]
    return out / "sweeps" / f"{arch}-{method}-{key}-seed{seed}.nnc"


def run_one(arch: str, method: str, seed: int, overrides: dict, data: protocol.ProtocolData,
            cdata: recipes.ClassifierData, out: Path, epochs: tuple[int, int], early_stopping: bool = True,
            sweep: bool = False) -> dict:
    """One compression run. A sweep run (`sweep`) sees no test data: its row has no test figures and its
    file is kept (`sweep_path`) for `score_swept`; a final run is scored on test here."""
    dense = models.build(arch)
    dense.load_state_dict(protocol.load_baseline(arch, seed))
    dense_test = None if sweep else protocol.accuracy(dense, None, data.test)
    dense_val_correct = protocol.correct(dense, None, data.val)
    events: list[dict] = []
    path = sweep_path(out, arch, method, seed, overrides) if sweep else out / f"{arch}-{method}-seed{seed}.nnc"
    path.parent.mkdir(parents=True, exist_ok=True)
    if sweep:
        cdata = dataclasses.replace(cdata, test=None)
    t0 = time.perf_counter()
    method_overrides = {k: v for k, v in overrides.items() if k != "quant_tolerance" and k not in QAT_KEYS}
    r = recipes.compress_classifier(dense, arch, cdata, method, path, epochs=epochs[0], finetune_epochs=epochs[1],
                                    seed=seed, progress=False, callback=events.append, overrides=method_overrides,
                                    dense_accuracy=dense_test, early_stopping=early_stopping,
                                    quant_tolerance=overrides.get("quant_tolerance", QUANT_TOLERANCE),
                                    **{k: v for k, v in overrides.items() if k in QAT_KEYS})
    decoded = nncodec.load_file(path)
    val_correct = protocol.correct(arch, decoded, data.val)
    method_nnz = next((e["nonzero"] for e in reversed(events) if "nonzero" in e), None)
    selected = [e for e in events if e.get("phase") == "finetune-select"]
    return {"arch": arch, "method": method, "seed": seed, "overrides": overrides,
            "dense_val": 100.0 * float(dense_val_correct.mean()), "dense_test": dense_test,
            "val_accuracy": 100.0 * float(val_correct.mean()), **val_halves(dense_val_correct, val_correct),
            "val_n": int(val_correct.size), "dense_val_correct": protocol.bits_hex(dense_val_correct),
            "val_correct": protocol.bits_hex(val_correct),
            "selection": "even/odd bound", "early_stopping": early_stopping,
            "finetune_best_epoch": max(selected, key=lambda e: e["score"])["epoch"] if selected else None,
            "test_accuracy": r["compressed_test_accuracy"],
            "test_drop": None if sweep else dense_test - r["compressed_test_accuracy"], "file": str(path),
            "file_bytes": r["file_bytes"], "float32_bytes": r["float32_bytes"], "ratio": r["ratio"],
            "nonzero_after_quantizer": r["nonzero"], "method_nonzero": method_nnz,
            "paper_estimate_ratio": r["parameters"] / method_nnz if method_nnz else None,
            "epochs": [overrides.get("epochs", epochs[0]), overrides.get("finetune_epochs", epochs[1])],
            "seconds": round(time.perf_counter() - t0, 1), **{k: r[k] for k in QAT_RESULT if k in r}}


def score_swept(row: dict, data: protocol.ProtocolData) -> dict:
    """The final row of a seed whose sweep already ran the chosen setting: its kept file, scored on test
    once (the same computation as a final run, not repeated). The file must still be the one the sweep
    scored: same size, same per-sample validation scores."""
    path = Path(row["file"])
    decoded = nncodec.load_file(path)
    val_correct = protocol.correct(row["arch"], decoded, data.val)
    if path.stat().st_size != row["file_bytes"] or protocol.bits_hex(val_correct) != row["val_correct"]:
        raise SystemExit(f"{path}: not the file its sweep row describes (size or validation scores differ)")
    dense = models.build(row["arch"])
    dense.load_state_dict(protocol.load_baseline(row["arch"], row["seed"]))
    dense_test = protocol.accuracy(dense, None, data.test)
    test = protocol.accuracy(row["arch"], decoded, data.test)
    return {**row, "dense_test": dense_test, "test_accuracy": test, "test_drop": dense_test - test,
            "sweep": False, "reused_from_sweep": True}


def append(path: Path, row: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        rows = json.loads(path.read_text()) if path.exists() else []
        rows.append(row)
        path.write_text(json.dumps(rows, indent=1, default=str) + "\n")


OLD_SELECTION = "session 2"  # rows without a "selection" field: 10+5 epochs, defaults tuned on test or a 0.5-pt rule


def _ms(vals: list[float], fmt: str) -> str:
    if len(vals) < 2:
        return format(vals[0], fmt) + " (1 seed)"
    return f"{format(statistics.mean(vals), fmt)} ± {format(statistics.stdev(vals), fmt)}"


def summarise(rows: list[dict]) -> str:
    """Mean +- sd over seeds per (arch, method, setting, selection) of the final (non-sweep) rows."""
    lines = ["| model | method | selection | seeds | test drop (pt) | .nnc bytes | ratio | target | paper estimate ratio "
             "(4 B × method non-zeros, before quantizer zeroing) |", "|---|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple[str, str, str, str], list[dict]] = {}
    for r in rows:
        if not r.get("sweep"):
            key = (r["arch"], r["method"], json.dumps(r["overrides"], sort_keys=True), r.get("selection", OLD_SELECTION))
            groups.setdefault(key, []).append(r)
    for (arch, method, ov, sel), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][3] == OLD_SELECTION, kv[0][1:])):
        method = f"{method} {ov}" if ov != "{}" else f"{method} (defaults)"
        drop = [r["test_drop"] for r in rs]
        ratio = [r["ratio"] for r in rs]
        ok = statistics.mean(drop) <= 1.0 and statistics.mean(ratio) >= TARGETS[arch]
        est = [r["paper_estimate_ratio"] for r in rs if r["paper_estimate_ratio"]]
        sel = f"{sel}, {rs[0]['epochs'][0]}+{rs[0]['epochs'][1]} epochs"
        lines.append(f"| {protocol.NAMES[arch]} | {method} | {sel} | {','.join(str(r['seed']) for r in rs)} | "
                     f"{_ms(drop, '.2f')} | {_ms([r['file_bytes'] for r in rs], ',.0f')} | ×{_ms(ratio, '.1f')} | "
                     f"≥ ×{TARGETS[arch]} within 1.0 pt: {'met' if ok else '**missed**'} | "
                     f"×{_ms(est, '.1f') if est else '-'} |")
    return "\n".join(lines)


def sweep_table(rows: list[dict]) -> str:
    """The validation sweeps (seed 0) of the even/odd rule: every candidate with its bounds, the chosen one marked."""
    sweeps = [r for r in rows if r.get("sweep") and r.get("selection") == "even/odd bound" and r.get("seed", 0) == 0]
    lines = ["| model | method | candidate | epochs | .nnc bytes | ratio | val even drop (95 % bound) | "
             "val odd drop (95 % bound) | chosen |", "|---|---|---|---|---:|---:|---|---|---|"]
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in sweeps:
        groups.setdefault((r["arch"], r["method"]), []).append(r)
    for (arch, method), rs in sorted(groups.items()):
        best = choose(rs)
        for r in sorted(rs, key=lambda r: r["file_bytes"]):
            lines.append(f"| {protocol.NAMES[arch]} | {method} | {json.dumps(r['overrides'], sort_keys=True)} | "
                         f"{r['epochs'][0]}+{r['epochs'][1]} | {r['file_bytes']:,} | ×{r['ratio']:.1f} | "
                         f"{r['val_even_drop']:.2f} ({r['val_even_bound']:.2f}) | {r['val_odd_drop']:.2f} "
                         f"({r['val_odd_bound']:.2f}) | {'**chosen**' if r is best else ''} |")
        if best is None:
            lines.append(f"| {protocol.NAMES[arch]} | {method} | no candidate confirmed | | | | | | |")
    return "\n".join(lines) if groups else ""


def pooled_table(rows: list[dict], seeds: list[int]) -> str:
    """The candidates that ran on every seed, with the bounds of their mean drop (the pooled rule). Rows of
    one (arch, method) must share their baselines: pass only today's rows."""
    sweeps = [r for r in rows if r.get("sweep") and r.get("selection") == "even/odd bound"]
    lines = ["| model | method | candidate | epochs | mean .nnc bytes | mean ratio | pooled val even drop (95 % bound) | "
             "pooled val odd drop (95 % bound) | chosen |", "|---|---|---|---|---:|---:|---|---|---|"]
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in sweeps:
        groups.setdefault((r["arch"], r["method"]), []).append(r)
    for (arch, method), rs in sorted(groups.items()):
        cands = pooled_candidates(rs, seeds)
        best = choose_pooled(rs, seeds)
        for c in sorted(cands, key=lambda c: c["file_bytes"]):
            r0 = c["rows"][0]
            lines.append(f"| {protocol.NAMES[arch]} | {method} | {json.dumps(c['overrides'], sort_keys=True)} | "
                         f"{r0['epochs'][0]}+{r0['epochs'][1]} | {c['file_bytes']:,.0f} | "
                         f"×{statistics.mean(r['ratio'] for r in c['rows']):.1f} | "
                         f"{c['val_even_drop']:.2f} ({c['val_even_bound']:.2f}) | {c['val_odd_drop']:.2f} "
                         f"({c['val_odd_bound']:.2f}) | {'**chosen**' if best and c['overrides'] == best['overrides'] else ''} |")
        if cands and best is None:
            lines.append(f"| {protocol.NAMES[arch]} | {method} | no candidate confirmed | | | | | | |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=protocol.DATA_DIR)
    ap.add_argument("--archs", nargs="+", default=["lenet300", "lenet5"], choices=list(TARGETS))
    ap.add_argument("--methods", nargs="+", default=["pmmp", "drr", "rl1"])
    ap.add_argument("--seeds", type=int, nargs="+", default=list(protocol.SEEDS))
    ap.add_argument("--grid", type=Path, default=None,
                    help='JSON {"arch": {"method": [{overrides}, ...]}}: chosen on validation with seed 0')
    ap.add_argument("--rule", choices=["single", "pooled"], default="single",
                    help="single: the bounds of seed 0's run (default); pooled: every candidate runs on --sweep-seeds "
                         "and the bounds are those of the mean drop over them (PROTOCOL.md)")
    ap.add_argument("--sweep-seeds", type=int, nargs="+", default=None, metavar="S",
                    help="seeds every grid candidate runs on (default: 0; with --rule pooled: 0 1 2)")
    ap.add_argument("--max-drop", type=float, default=MAX_DROP,
                    help="selection: bound of the paired validation drop allowed on each half (pt)")
    ap.add_argument("--if-none", choices=["stop", "least-bound"], default="stop",
                    help="no candidate confirmed: run nothing (stop), or run the one whose larger bound of the two "
                         "halves is smallest, labelled unconfirmed in the table (least-bound)")
    ap.add_argument("--no-early-stopping", action="store_true",
                    help="keep the last fine-tuning epoch instead of the best on the even validation samples")
    ap.add_argument("--sweep-only", action="store_true",
                    help="only run the --grid candidates on seed 0 (rows marked sweep), e.g. one process per candidate")
    ap.add_argument("--candidate", type=int, default=None, metavar="I",
                    help="with --sweep-only: run only the I-th (0-based) candidate of the grid, so that the candidates "
                         "of one grid can run in separate processes")
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
    sweep_seeds = a.sweep_seeds or (list(protocol.SEEDS) if a.rule == "pooled" else [0])
    for arch in a.archs:
        epochs = tuple(a.epochs) if a.epochs else EPOCHS[arch]
        for method in a.methods:
            candidates = grid.get(arch, {}).get(method, [{}])
            chosen = candidates[0]
            if a.sweep_only and a.candidate is not None:
                candidates = candidates[a.candidate:a.candidate + 1]
            sweeps = []
            if a.sweep_only or arch in grid and method in grid[arch]:  # selection on validation
                for ov in candidates:
                    for sweep_seed in sweep_seeds:
                        r = run_one(arch, method, sweep_seed, ov, data, cdata, a.out, epochs, not a.no_early_stopping,
                                    sweep=True)
                        r["sweep"] = True
                        append(a.json, r)
                        sweeps.append(r)
                        print(f"[sweep {arch} {method} seed {sweep_seed}] {ov}: {r['file_bytes']:,} B, val drop even "
                              f"{r['val_even_drop']:.2f} "
                              f"(bound {r['val_even_bound']:.2f}), odd {r['val_odd_drop']:.2f} "
                              f"(bound {r['val_odd_bound']:.2f}), {r['seconds']:.0f} s", file=sys.stderr, flush=True)
            if a.sweep_only:
                continue
            if a.from_sweeps:  # only sweeps of today's baselines (a retrained baseline makes older ones stale)
                base = {s: dense_val(arch, s, data) for s in sweep_seeds}
                sweeps = [r for r in json.loads(a.json.read_text()) if r.get("sweep") and r["arch"] == arch
                          and r["method"] == method and r.get("selection") == "even/odd bound"
                          and r["seed"] in base and abs(r["dense_val"] - base[r["seed"]]) < 1e-6]
            if sweeps:
                if a.rule == "pooled":
                    best, selection = choose_pooled(sweeps, sweep_seeds, a.max_drop), POOLED
                else:
                    best, selection = choose([r for r in sweeps if r["seed"] == 0], a.max_drop), "even/odd bound"
                if best is None and a.if_none == "least-bound":
                    best = least_bound(pooled_candidates(sweeps, sweep_seeds) if a.rule == "pooled"
                                       else [r for r in sweeps if r["seed"] == 0])
                    selection = UNCONFIRMED
                if best is None:
                    print(f"[{arch} {method}] no candidate confirmed on validation: nothing run on the seeds",
                          file=sys.stderr, flush=True)
                    continue
                chosen = best["overrides"]
                print(f"[{arch} {method}] chosen on validation ({selection}): {chosen}", file=sys.stderr, flush=True)
            for seed in a.seeds:
                again = [r for r in sweeps if r["seed"] == seed and r["overrides"] == chosen]
                kept = [r for r in again if r.get("test_drop") is not None or Path(r.get("file", "")).is_file()]
                if kept and kept[0].get("test_drop") is not None:  # rows of sweeps that still scored test
                    r = {**kept[0], "sweep": False, "reused_from_sweep": True}
                elif kept:  # the sweep already ran this seed with this setting: its file, scored on test once
                    r = score_swept(kept[0], data)
                else:
                    r = run_one(arch, method, seed, chosen, data, cdata, a.out, epochs, not a.no_early_stopping)
                r["selection"] = selection if sweeps else NO_SWEEP
                append(a.json, r)
                print(f"[{arch} {method} seed {seed}] {r['file_bytes']:,} B (x{r['ratio']:.1f}), test drop "
                      f"{r['test_drop']:.2f}, method nnz {r['method_nonzero']}, {r['seconds']:.0f} s",
                      file=sys.stderr, flush=True)
    rows = json.loads(a.json.read_text())
    if a.rule == "pooled":
        print(pooled_table([r for r in rows if r.get("val_correct")], sweep_seeds))
    print(summarise(rows))


if __name__ == "__main__":
    main()
