"""Accuracy vs file bytes for spike-and-slab beside the training-aware pruning methods (issue 10).

    python benchmarks/plot_spike_slab.py score --sweep S1.json:DIR1 S2.json:DIR2 --json curve.json
    python benchmarks/plot_spike_slab.py plot --curve curve.json --final final.json \
        --peers peers.json --previous benchmarks/results/prune.json --png benchmarks/spike_slab_accuracy_bytes.png

`score` scores on TEST, once each, the .nnc files of the validation sweep (benchmarks/sweep_spike_slab.py,
seed 0): run only after the setting has been chosen on validation, so these test figures only draw the
curve and choose nothing. `plot` draws test accuracy minus the dense model's (same seed) against whole
.nnc bytes, marking where each point comes from (which run, which seeds).
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


def score(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    data = protocol.load(args.data)
    dense_test = protocol.accuracy("lenet300", protocol.load_baseline("lenet300", 0), data.test)
    rows = []
    for spec in args.sweep:
        js, folder = spec.split(":")
        for r in json.loads(Path(js).read_text())["rows"]:
            path = Path(folder) / f"sweep-kl{r['kl_weight']:g}-lam{r['lam']:g}-sd{r['sigma0']:g}-tau{r['tau']:g}.nnc"
            test = protocol.accuracy("lenet300", nncodec.load_file(path), data.test)
            rows.append({**r, "file": str(path), "test": test, "dense_test": dense_test, "test_drop": dense_test - test})
            print(json.dumps(rows[-1]), flush=True)
    Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


def plot(args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    f32 = F32["lenet300"]
    if args.curve:
        rows = json.loads(Path(args.curve).read_text())
        ax.plot([r["bytes"] for r in rows], [-r["test_drop"] for r in rows], "o", color="C0", ms=4, alpha=0.7,
                label="spike-slab, validation sweep (seed 0, 5 + 2 or 5 epochs)")
    for i, path in enumerate(args.final or []):
        fin = json.loads(Path(path).read_text())
        status = "chosen on validation" if i == 0 else "not chosen"
        for lam, s in fin["summary"].items():
            kl = fin["args"].get("kl_weight", 1.0)
            for key, marker, color, what in (("nopip", "D", "C0", ""), ("pip", "s", "C1", " + PIPs stored")):
                ax.errorbar(s[f"bytes_{key}"][0], -s["drop"][0], xerr=s[f"bytes_{key}"][1], yerr=s["drop"][1],
                            fmt=marker, color=color, ms=8, capsize=3, mec="k",
                            label=f"spike-slab {status} (λ={lam}, KL weight {kl}){what}, "
                                  f"{len(fin['args']['seeds'])} seeds")
    styles = {"drr": ("^", "C2"), "pmmp": ("v", "C3"), "rl1": ("<", "C4")}
    for path, tag, filled in ((args.peers, "this session, seed 0", True), (args.previous, "previous session", False)):
        if not path:
            continue
        rows = [r for r in json.loads(Path(path).read_text()) if r["arch"] == "lenet300"]
        for method, (marker, color) in styles.items():
            rs = [r for r in rows if r["method"] == method]
            if not rs:
                continue
            ax.plot([r["file_bytes"] for r in rs], [-r["test_drop"] for r in rs], marker, color=color,
                    mfc=color if filled else "none", label=f"{method} ({tag}, {rs[0]['epochs'][0]}+{rs[0]['epochs'][1]} "
                                                          f"epochs, seeds {sorted({r['seed'] for r in rs})})")
    for ratio in (150, 1000):
        ax.axvline(f32 / ratio, color="grey", lw=0.6, ls=":")
        ax.text(f32 / ratio, 0.95, f" ×{ratio}", fontsize=8, color="grey", transform=ax.get_xaxis_transform())
    ax.axhline(-1.0, color="red", lw=0.6, ls="--")
    ax.set_xscale("log")
    ax.set_xlabel("whole .nnc file bytes (LeNet-300-100, float32 = 1,066,440 B)")
    ax.set_ylabel("test accuracy − dense baseline of the same seed (points)")
    ax.set_title("Fashion-MNIST LeNet-300-100: accuracy vs file size")
    ax.legend(fontsize=6.5, loc="lower right")
    fig.tight_layout()
    fig.savefig(args.png, dpi=120)
    print(f"wrote {args.png}")


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


def table(args: argparse.Namespace) -> None:
    """Markdown rows: each peer point beside spike-and-slab's frontier at the same file size."""
    ss = frontier([(r["bytes"], r["test_drop"]) for r in json.loads(Path(args.curve).read_text())])
    f32 = F32["lenet300"]
    print("| method (seed 0, 5+5 epochs) | setting | .nnc bytes | ratio | test drop (pt) | spike-slab frontier at that size | ahead |")
    print("|---|---|---:|---:|---:|---:|---|")
    for r in sorted(json.loads(Path(args.peers).read_text()), key=lambda r: r["file_bytes"]):
        if r["arch"] != "lenet300":
            continue
        d = at_size(ss, r["file_bytes"])
        ahead = "-" if d is None else ("spike-slab" if d < r["test_drop"] else r["method"])
        print(f"| {r['method']} | {json.dumps(r['overrides'])} | {r['file_bytes']:,} | ×{f32 / r['file_bytes']:.0f} | "
              f"{r['test_drop']:.2f} | {'-' if d is None else f'{d:.2f}'} | {ahead} |")
    print("\nspike-slab frontier (bytes, test drop): " + ", ".join(f"({b:,}, {d:.2f})" for b, d in ss))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("score")
    a.add_argument("--data", default=protocol.DATA_DIR)
    a.add_argument("--sweep", nargs="+", required=True, help="SWEEP.json:FOLDER of its .nnc files")
    a.add_argument("--json", required=True)
    for name in ("plot", "table"):
        b = sub.add_parser(name)
        b.add_argument("--curve", default=None)
        b.add_argument("--final", nargs="*", default=None)
        b.add_argument("--peers", default=None)
        b.add_argument("--previous", default=None)
        b.add_argument("--png", default="benchmarks/spike_slab_accuracy_bytes.png")
    args = ap.parse_args()
    {"score": score, "plot": plot, "table": table}[args.cmd](args)


if __name__ == "__main__":
    main()
