"""Tables of benchmarks/RESULTS-own-loop.md from bench_own_loop.py's result files (and time_own_loop.py's).

    python benchmarks/report_own_loop.py --out /work/artifacts/reruns/lm_s0 [--timing /tmp/lm_time/timing.json]
    python benchmarks/report_own_loop.py --out DIR --choose drr     # the sweep's choice, as `--alpha A ...`

Hyper-parameters are chosen on validation only, on pipeline seed 0: the configuration with the
largest file ratio whose validation-loss increase is within the budget (ties: the smaller increase).
The other seeds then run that configuration; their test figures are reported, never used.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path


def results(out: Path) -> list[dict]:
    rows = []
    for f in sorted(out.glob("result-*-world1.json")):
        r = json.loads(f.read_text())
        r.setdefault("pipeline_seed", r["config"]["seed"])
        r["file"] = f.name
        rows.append(r)
    return rows


def levers(r: dict) -> dict:
    """Session-6 options of a result (kd, quant_small, QAT); files written before the JSON kept kd and
    quant_small are read from the file name (bench_own_loop / lm_levers.tag)."""
    name = r.get("file", "")
    kd = r.get("kd")
    if kd is None:
        kd = float(name.split("-kd")[1].split("-")[0]) if "-kd" in name else 0.0
    small = r.get("quant_small", "-small-" in name)
    return {"kd": kd, "quant_small": small, "qat_steps": r.get("qat_steps", 0), "qat_budget": r.get("qat_budget"),
            "qat_relative": r.get("qat_relative", False), "qat_lr": r.get("qat_lr"),
            "prune_emb": r.get("prune_emb", False), "qat_shrink": r.get("qat_shrink_enabled", False),
            "lsq": r.get("lsq", False), "qat_rate": r.get("qat_rate", 0.0), "step_lr": r.get("step_lr"),
            "rate_kind": r.get("rate_kind", "log"), "qat_scale": r.get("qat_scale", 1.0)}


def hp(r: dict) -> str:
    text = f"alpha {r['alpha']:g}, " + (f"beta {r['beta']:g}" if r["method"] == "drr" else f"companion lr {r.get('companion_lr') or 1e-2:g}")
    if "pipe_lr" in r:  # the pipeline's own settings (files of before these options: lr 2e-3, 400 + 200 steps, constant)
        text += f", lr {r['pipe_lr']:g}, {r['reg_steps']} + {r['ft_steps']} steps, fine-tuning {r['ft_schedule']}"
    if r.get("delta", 0.01) != 0.01:
        text += f", TAMADE delta {r['delta']:g}"
    lv = levers(r)
    if lv["kd"]:
        text += f", distillation {lv['kd']:g}"
    if lv["quant_small"]:
        text += ", small tensors quantized"
    if lv["qat_steps"]:
        text += (f", QAT {lv['qat_steps']} steps at steps for +{100 * lv['qat_budget']:g} %"
                 + (" over the pre-QAT model" if lv["qat_relative"] else "")
                 + (f" x{lv['qat_scale']:g}" if lv["qat_scale"] != 1.0 else "")
                 + (f", QAT lr {lv['qat_lr']:g}" if lv["qat_lr"] is not None else "")
                 + (", finer steps if over" if lv["qat_shrink"] else "")
                 + ((f", learned steps (LSQ, step lr {lv['step_lr']:g}" if lv["step_lr"] else ", steps fixed (LSQ machinery, step lr 0")
                    if lv["lsq"] else "")
                 + (f", rate {lv['qat_rate']:g} nats/kB" if lv["lsq"] and lv["qat_rate"] else "")
                 + (" of level entropy" if lv["lsq"] and lv["qat_rate"] and lv["rate_kind"] == "entropy" else "")
                 + (")" if lv["lsq"] else ""))
    if lv["prune_emb"]:
        text += ", embeddings pruned"
    return text


def pipeline_args(r: dict) -> list[str]:
    """The command-line options that rerun result `r`'s configuration (another --pipeline-seed)."""
    extra = ["--beta", f"{r['beta']:g}"] if r["method"] == "drr" else ["--companion-lr", f"{r.get('companion_lr') or 1e-2:g}"]
    if "pipe_lr" in r:
        extra += ["--pipe-lr", f"{r['pipe_lr']:g}", "--reg-steps", str(r["reg_steps"]), "--ft-steps", str(r["ft_steps"]),
                  "--ft-schedule", r["ft_schedule"], "--delta", f"{r['delta']:g}"]
    lv = levers(r)
    extra += ["--kd", f"{lv['kd']:g}"] if lv["kd"] else []
    extra += ["--quant-small"] if lv["quant_small"] else []
    if lv["qat_steps"]:
        extra += ["--qat-steps", str(lv["qat_steps"]), "--qat-budget", f"{lv['qat_budget']:g}"]
        extra += ["--qat-relative"] if lv["qat_relative"] else []
        extra += ["--qat-lr", f"{lv['qat_lr']:g}"] if lv["qat_lr"] is not None else []
        extra += ["--qat-shrink"] if lv["qat_shrink"] else []
        extra += ["--qat-scale", f"{lv['qat_scale']:g}"] if lv["qat_scale"] != 1.0 else []
        extra += ["--lsq", "--step-lr", f"{lv['step_lr']:g}"] if lv["lsq"] else []
        extra += ["--qat-rate", f"{lv['qat_rate']:g}"] if lv["lsq"] and lv["qat_rate"] else []
        extra += ["--rate-kind", "entropy"] if lv["lsq"] and lv["qat_rate"] and lv["rate_kind"] == "entropy" else []
    extra += ["--prune-emb"] if lv["prune_emb"] else []
    return ["--method", r["method"], "--alpha", f"{r['alpha']:g}", *extra]


def dense_section(dense: dict) -> None:
    """The annealed dense model (lm_curve_continue.py --anneal): both curves and the convergence check."""
    c = dense["convergence"]
    print(f"Dense model: {dense['from']['step']} constant-lr steps, then a cosine decay to 0 over {c['dense_anneal']} steps "
          f"(fresh Adam); convergence check: the same start annealed over {c['longer_anneal']} steps: validation "
          f"{c['dense_val']:.4f} vs {c['longer_val']:.4f} ({100 * c['change']:+.2f} %, tolerance {100 * c['tol']:.1f} %): "
          f"{'verified' if c['verified'] else 'NOT verified: the longer run becomes the dense model and its own peer'}.\n")
    names = ("dense model", "longer run (peer)") if c["verified"] else ("shorter run", "longer run (dense model and peer)")
    for name, curve in zip(names, (dense["curve"], dense["curve_longer"]), strict=True):
        print(f"| {name}: step | " + " | ".join(str(st) for st, _ in curve) + " |")
        print("|---|" + "---:|" * len(curve))
        print("| validation loss | " + " | ".join(f"{v:.4f}" for _, v in curve) + " |\n")


def choose(rows: list[dict], method: str, budget: float = 0.02) -> dict | None:
    sweep = [r for r in rows if r["method"] == method and r["pipeline_seed"] == 0]
    ok = [r for r in sweep if r["val_increase"] <= budget + 1e-12]
    return max(ok, key=lambda r: (r["ratio"], -r["val_increase"])) if ok else None


def pct(x: float | None) -> str:
    return "—" if x is None or math.isnan(x) else f"{100 * x:+.2f} %"


def stages(rows: list[dict]) -> None:
    """Where the validation budget goes, per stage (relative to the reference), for the session-6 runs."""
    print("\nValidation loss after each stage, relative to the reference (pipeline seed 0):\n")
    print("| method | hyper-parameters | regularised | pruned | fine-tuned | quantized at the QAT steps, before QAT "
          "| after QAT | QAT file bytes (also when over) | file | windows 512-1023 (never chosen on) | ratio |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if r["pipeline_seed"] != 0 or "confirm_increase" not in r:
            continue
        ref = min(r["dense_val"], r["peer_val"])
        rel = [r.get(k) / ref - 1 if r.get(k) is not None else None
               for k in ("reg_val", "pruned_val", "finetuned_val", "qat_val_before", "qat_val_after", "compressed_val")]
        qat_bytes = f"{r['qat_file_bytes']:,}" if "qat_file_bytes" in r else "—"
        print(f"| {r['method'].upper()} | {hp(r)} | " + " | ".join(pct(x) for x in rel[:5]) + f" | {qat_bytes} | {pct(rel[5])}"
              + f" | {pct(r['confirm_increase'])} | ×{r['ratio']:.2f} |")


def ms(xs: list[float], fmt: str) -> str:
    """Mean ± sd of the figures that exist (a seed not yet scored on test has NaN: left out, and said so)."""
    missing = sum(1 for x in xs if math.isnan(x))
    xs = [x for x in xs if not math.isnan(x)]
    if missing:
        return (ms(xs, fmt) if xs else "—") + f" ({missing} not scored)"
    if len(xs) < 2:
        return format(xs[0], fmt) + " (1 seed)" if xs else "—"
    return f"{statistics.mean(xs):{fmt}} ± {statistics.stdev(xs):{fmt.lstrip('+')}}"


def report(out: Path, timing: Path | None) -> None:
    dense = json.loads((out / "dense.json").read_text())
    curve = dense["curve"]
    if "convergence" in dense:
        dense_section(dense)
        curve = []
    if curve:
        print(f"Dense run (seed {dense['config']['seed']}): {len(curve)} validation points, every {dense['config']['curve_every']} steps, "
              f"{dense['steps_per_epoch']:.0f} steps per epoch; chosen {dense['dense_steps']} steps "
              f"(converged by the rule: {dense['converged']}); validation loss there {dense['val_at_dense']:.4f}, best "
              f"{dense['best_val']:.4f}, change from the chosen step to step {curve[-1][0]}: {100 * dense['tail_change']:+.2f} %.\n")
    if curve:
        print("| step | " + " | ".join(str(s) for s, _ in curve[1::2]) + " |")
        print("|---|" + "---:|" * len(curve[1::2]))
        print("| validation loss | " + " | ".join(f"{v:.4f}" for _, v in curve[1::2]) + " |\n")
    rows = results(out)
    print("Validation sweep (pipeline seed 0; chosen = largest ratio within the 2 % validation budget):\n")
    print("| method | hyper-parameters | file bytes | ratio | val loss increase | test loss increase | surviving pruned weights | chosen |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    chosen = {m: choose(rows, m) for m in ("drr", "pmmp")}
    for r in sorted((r for r in rows if r["pipeline_seed"] == 0), key=lambda r: (r["method"], r["alpha"], r.get("pipe_lr", 2e-3), r["delta"])):
        mark = "**yes**" if chosen.get(r["method"]) is r else ""
        print(f"| {r['method'].upper()} | {hp(r)} | {r['file_bytes']:,} | ×{r['ratio']:.2f} | {100 * r['val_increase']:+.2f} % "
              f"| {pct(r['test_increase'])} | {100 * r['density_pruned_params']:.1f} % | {mark} |")
    stages(rows)
    print("\nThree pipeline seeds of the chosen configurations (one dense model; test = the whole test split, scored once):\n")
    print("| method | hyper-parameters | seed | file bytes | ratio | val loss increase | validation windows 512-1023 "
          "| test loss increase | target ≥ ×10 at ≤ 2 % (validation) |")
    print("|---|---|---|---:|---:|---:|---:|---:|---|")
    for m, c in chosen.items():
        if c is None:
            continue
        same = [r for r in rows if r["method"] == m and hp(r) == hp(c)]
        same.sort(key=lambda r: r["pipeline_seed"])
        for r in same:
            ok = r["ratio"] >= 10 and r["val_increase"] <= 0.02
            print(f"| {m.upper()} | {hp(r)} | {r['pipeline_seed']} | {r['file_bytes']:,} | ×{r['ratio']:.2f} "
                  f"| {100 * r['val_increase']:+.2f} % | {pct(r.get('confirm_increase'))} | {pct(r['test_increase'])} "
                  f"| {'met' if ok else '**missed**'} |")
        print(f"| {m.upper()} | {hp(c)} | mean ± sd ({len(same)}) | {ms([float(r['file_bytes']) for r in same], ',.0f')} "
              f"| ×{ms([r['ratio'] for r in same], '.2f')} | {ms([100 * r['val_increase'] for r in same], '+.2f')} % "
              f"| {ms([100 * r['confirm_increase'] for r in same if 'confirm_increase' in r], '+.2f')} % "
              f"| {ms([100 * r['test_increase'] for r in same], '+.2f')} % | |")
    if timing and timing.exists():
        t = json.loads(timing.read_text())
        print(f"\nTiming ({t['pairs']} interleaved pairs, medians; load average {t['load_range']}):\n")
        print("| measure | 1 process | 2 processes (torchrun, gloo) | ratio 1 / 2 |")
        print("|---|---:|---:|---:|")
        for key, label in (("pipeline", "compression pipeline (in-process)"), ("process_wall", "whole process")):
            v = t[key]
            print(f"| {label} | {v['median_1']:.1f} s | {v['median_2']:.1f} s | ×{v['speedup']:.2f} |")
        print("\nruns: " + "; ".join(f"{r['processes']}p {r['pipeline']:.1f} s (load {r['load_before'][0]:.2f})" for r in t["runs"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--timing", type=Path)
    ap.add_argument("--choose", choices=("drr", "pmmp"))
    a = ap.parse_args()
    if a.choose:
        c = choose(results(a.out), a.choose)
        if c is None:
            raise SystemExit(f"no {a.choose} configuration within the budget")
        print(" ".join(pipeline_args(c)))
        return
    report(a.out, a.timing)


if __name__ == "__main__":
    main()
