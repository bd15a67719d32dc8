"""Accuracy vs file bytes for spike-and-slab beside the training-aware pruning methods (issue 10).

    python benchmarks/plot_spike_slab.py score --sweep S1.json S2.json --label "40+10 epochs" --json curve.json
    python benchmarks/plot_spike_slab.py plot --curve curve.json [curve2.json ...] --final final.json \
        --peers benchmarks/results/prune.json peers.json --png benchmarks/spike_slab_accuracy_bytes.png

`score` scores on TEST, once each, the .nnc files of a validation sweep (benchmarks/sweep_spike_slab.py,
seed 0): run only after the setting has been chosen on validation (or the rule has chosen nothing), so
these test figures only draw the curve and choose nothing. `plot` draws test accuracy minus the dense
model's (same seed) against whole .nnc bytes, marking where each point comes from (which run, which
seeds), and prints which method is ahead at each size: per method the frontier of its seed-0 points
(no other point of the method is both smaller and better), read at each size (linear in log bytes
between frontier points; beyond its largest file, the largest file's drop; below its smallest file,
nothing: the method made no file that small).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import protocol  # noqa: E402

import nncodec  # noqa: E402

F32 = {"lenet300": 4 * 266_610, "lenet5": 4 * 431_080}
NAMES = {"lenet300": "LeNet-300-100", "lenet5": "LeNet-5-Caffe"}
RATIOS = (25, 50, 100, 150, 200, 300, 500, 750, 1000)


def file_of(r: dict, folder: str | None) -> Path:
    if "file" in r and Path(r["file"]).exists():
        return Path(r["file"])
    tag = f"sweep-kl{r['kl_weight']:g}-lam{r['lam']:g}-sd{r['sigma0']:g}-tau{r['tau']:g}"
    return Path(folder or ".") / (f"{tag}-q{r['qtol']:g}-seed{r['seed']}.nnc" if "qtol" in r else f"{tag}.nnc")


def sweep_model(sweep: dict) -> tuple[str, int]:
    """The architecture and baseline seed a sweep JSON ran on (sweeps before `--arch` was recorded: LeNet-300-100)."""
    args = sweep.get("args", {})
    return args.get("arch", "lenet300"), int(args.get("seed", 0))


def score(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    data = protocol.load(args.data)
    rows = []
    for spec in args.sweep:
        js, _, folder = spec.partition(":")
        sweep = json.loads(Path(js).read_text())
        epochs = sweep.get("args", {})
        arch, seed = sweep_model(sweep)
        dense_test = protocol.accuracy(arch, protocol.load_baseline(arch, seed), data.test)
        for r in sweep["rows"]:
            path = file_of(r, folder or None)
            test = protocol.accuracy(arch, nncodec.load_file(path), data.test)
            rows.append({**r, "file": str(path), "test": test, "dense_test": dense_test, "test_drop": dense_test - test,
                         "label": args.label, "arch": arch, "epochs": [epochs.get("epochs"), epochs.get("finetune_epochs")],
                         "cosine": epochs.get("cosine", False)})
            print(json.dumps(rows[-1]), flush=True)
    Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


def frontier(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (bytes, test drop) points no other point beats on both, by increasing bytes."""
    best, out = float("inf"), []
    for b, d in sorted(points):
        if d < best:
            out.append((b, d))
            best = d
    return out


def at_size(front: list[tuple[float, float]], size: float) -> float | None:
    """The frontier's drop at `size` bytes (linear in log bytes between frontier points; the best point
    at or below `size` beyond them), None below the smallest point."""
    below = [(b, d) for b, d in front if b <= size]
    above = [(b, d) for b, d in front if b > size]
    if not below:
        return None
    (b0, d0) = below[-1]
    if not above:
        return d0
    (b1, d1) = above[0]
    t = (math.log(size) - math.log(b0)) / (math.log(b1) - math.log(b0))
    return d0 + t * (d1 - d0)


def points(args: argparse.Namespace) -> dict[str, list[dict]]:
    """Seed-0 points by method: spike-slab from the curves (and the final runs' seed 0), peers from --peers."""
    out: dict[str, list[dict]] = {"spike-slab": []}
    for path in args.curve or []:
        for r in json.loads(Path(path).read_text()):
            out["spike-slab"].append({"bytes": r["bytes"], "drop": r["test_drop"], "label": r.get("label", path)})
    for path in args.final or []:
        for r in json.loads(Path(path).read_text())["runs"]:
            if r["seed"] == 0:
                out["spike-slab"].append({"bytes": r["bytes"], "drop": r["drop"], "label": "final"})
    for path in args.peers or []:
        for r in json.loads(Path(path).read_text()):
            if r["arch"] == args.arch and r["seed"] == 0:
                out.setdefault(r["method"], []).append({"bytes": r["file_bytes"], "drop": r["test_drop"],
                                                        "label": f"{r['epochs'][0]}+{r['epochs'][1]} epochs"})
    return out


def final_groups(paths: list[str] | None) -> dict[tuple, list[dict]]:
    """The runs of `sweep_spike_slab.py final` JSON files pooled by chosen setting: one file may hold every
    seed (LeNet-300-100, session 6) or one seed each (LeNet-5, session 8); a setting's seeds make one mean ± sd."""
    groups: dict[tuple, list[dict]] = {}
    for path in paths or []:
        fin = json.loads(Path(path).read_text())
        key = tuple((k, fin["chosen"][k]) for k in ("kl_weight", "tau", "qtol") if k in fin["chosen"])
        groups.setdefault(key, []).extend(fin["runs"])
    return groups


def verdict(args: argparse.Namespace) -> list[dict]:
    f32 = F32[args.arch]
    fronts = {m: frontier([(p["bytes"], p["drop"]) for p in ps]) for m, ps in points(args).items()}
    rows = []
    for ratio in RATIOS:
        size = f32 / ratio
        drops = {m: at_size(f, size) for m, f in fronts.items()}
        have = {m: d for m, d in drops.items() if d is not None}
        rows.append({"ratio": ratio, "bytes": round(size), "drops": drops,
                     "ahead": min(have, key=have.get) if have else None})
    print("| size (×, bytes) | " + " | ".join(fronts) + " | ahead |")
    print("|---|" + "---:|" * len(fronts) + "---|")
    for r in rows:
        cells = " | ".join("-" if d is None else f"{d:.2f}" for d in r["drops"].values())
        print(f"| ×{r['ratio']} ({r['bytes']:,} B) | {cells} | {r['ahead'] or '-'} |")
    for m, f in fronts.items():
        print(f"{m} frontier (bytes, test drop): " + ", ".join(f"({b:,}, {d:.2f})" for b, d in f))
    return rows


def plot(args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    f32 = F32[args.arch]
    markers = iter(("o", "h", "p", "*"))
    labels = list(args.curve_labels or [])
    for i, path in enumerate(args.curve or []):
        rows = json.loads(Path(path).read_text())
        label = labels[i] if i < len(labels) else rows[0].get("label", Path(path).name)
        ax.plot([r["bytes"] for r in rows], [-r["test_drop"] for r in rows], next(markers), color=("C0", "C5", "C7", "C8")[i],
                ms=4 if i else 5, alpha=0.8, mfc="none" if i else None, label=f"spike-slab, seed 0, validation sweep: {label}")
    for c, runs in final_groups(args.final).items():
        c = dict(c)
        for key, marker, color, what in (("bytes", "D", "C0", ""), ("bytes_pip", "s", "C1", " + PIPs stored")):
            b = [r[key] for r in runs]
            d = [r["drop"] for r in runs]
            mb, md = sum(b) / len(b), sum(d) / len(d)
            sb = (sum((x - mb) ** 2 for x in b) / max(len(b) - 1, 1)) ** 0.5
            sd = (sum((x - md) ** 2 for x in d) / max(len(d) - 1, 1)) ** 0.5
            ax.errorbar(mb, -md, xerr=sb, yerr=sd, fmt=marker, color=color, ms=9, capsize=3, mec="k",
                        label=f"spike-slab {args.final_label} (KL {c['kl_weight']}, τ {c['tau']}){what}, "
                              f"seeds {[r['seed'] for r in runs]}, mean ± sd")
    styles = {"drr": ("^", "C2"), "pmmp": ("v", "C3"), "rl1": ("<", "C4")}
    for path in args.peers or []:
        rows = [r for r in json.loads(Path(path).read_text()) if r["arch"] == args.arch]
        for method, (marker, color) in styles.items():
            for ep in sorted({tuple(r["epochs"]) for r in rows if r["method"] == method}):
                rs = [r for r in rows if r["method"] == method and tuple(r["epochs"]) == ep]
                ax.plot([r["file_bytes"] for r in rs], [-r["test_drop"] for r in rs], marker, color=color,
                        mfc=color if ep[0] >= 10 else "none",
                        label=f"{method} ({ep[0]}+{ep[1]} epochs, seeds {sorted({r['seed'] for r in rs})}; {Path(path).name})")
    for ratio in (50, 100, 150, 300, 1000):
        ax.axvline(f32 / ratio, color="grey", lw=0.6, ls=":")
        ax.text(f32 / ratio, 0.97, f" ×{ratio}", fontsize=8, color="grey", transform=ax.get_xaxis_transform())
    ax.axhline(-1.0, color="red", lw=0.6, ls="--")
    if args.ymin is not None:  # collapsed files (chance level) would squash the rest: listed instead of drawn
        off = [(m, p["bytes"], p["drop"]) for m, ps in points(args).items() for p in ps if -p["drop"] < args.ymin]
        ax.set_ylim(bottom=args.ymin)
        if off:
            ax.text(0.01, 0.02, "off scale (seed 0): " + "; ".join(f"{m} {b:,} B at −{d:.1f}" for m, b, d in off),
                    fontsize=6.5, transform=ax.transAxes)
    ax.set_xscale("log")
    ax.set_xlabel(f"whole .nnc file bytes ({NAMES[args.arch]}, float32 = {f32:,} B)")
    ax.set_ylabel("test accuracy − dense baseline of the same seed (points)")
    ax.set_title(f"Fashion-MNIST {NAMES[args.arch]}: test accuracy vs file size")
    ax.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    fig.savefig(args.png, dpi=120)
    print(f"wrote {args.png}")
    rows = verdict(args)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("score")
    a.add_argument("--data", default=protocol.DATA_DIR)
    a.add_argument("--sweep", nargs="+", required=True, help="SWEEP.json[:FOLDER of its .nnc files if moved]")
    a.add_argument("--label", default="")
    a.add_argument("--json", required=True)
    for name in ("plot", "table"):
        b = sub.add_parser(name)
        b.add_argument("--curve", nargs="*", default=None, help="`score` outputs")
        b.add_argument("--curve-labels", nargs="*", default=None, help="legend labels of --curve, in order")
        b.add_argument("--final", nargs="*", default=None, help="sweep_spike_slab.py final JSON")
        b.add_argument("--final-label", default="chosen on validation")
        b.add_argument("--peers", nargs="*", default=None, help="bench_prune-style result lists")
        b.add_argument("--png", default="benchmarks/spike_slab_accuracy_bytes.png")
        b.add_argument("--json", default=None, help="plot: the verdict table as JSON")
        b.add_argument("--ymin", type=float, default=None, help="plot: lower limit of the y axis (points below are listed)")
        b.add_argument("--arch", choices=sorted(F32), default="lenet300", help="the model whose peers and sizes are drawn")
    args = ap.parse_args()
    {"score": score, "plot": plot, "table": verdict}[args.cmd](args)


if __name__ == "__main__":
    main()
