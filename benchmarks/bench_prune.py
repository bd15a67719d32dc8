"""Training-aware pruning on Fashion-MNIST: every method on LeNet-300-100 and LeNet-5-Caffe.

    python benchmarks/bench_prune.py --data /work/shared/data/fashion-mnist

For each architecture a dense model is trained once (cached as safetensors under --cache), then each
method prunes a copy, the survivors are quantized as coarsely as validation accuracy allows, the
model is written as a .nnc file, decoded again, and the decoded model's test accuracy is measured.
The table shows the real file size next to the paper's estimate (4 bytes per non-zero weight), and
a PNG plots test accuracy against bytes. Targets (within 1.0 point of the dense model):
LeNet-300-100 >= x100 (<= 10,664 B), LeNet-5-Caffe >= x200 (<= 8,622 B).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import nncodec  # noqa: E402
from nncodec.compress.training import METHODS, recipes  # noqa: E402

TARGETS = {"lenet300": (100, 10_664), "lenet5": (200, 8_622)}
NAMES = {"lenet300": "LeNet-300-100", "lenet5": "LeNet-5-Caffe"}
# Epoch budget per architecture: (dense, regularised, fine-tuning). Sized for 2 shared CPU cores.
EPOCHS = {"lenet300": (15, 10, 5), "lenet5": (6, 4, 2)}
QUICK = {"lenet300": (2, 1, 1), "lenet5": (1, 1, 1)}


def dense_row(arch: str, dense: torch.nn.Module, data: recipes.ClassifierData, out: Path) -> dict:
    path = out / f"{arch}-dense.nnc"
    nbytes = nncodec.save_file(dense.state_dict(), path, prefer="size")
    params = sum(p.numel() for p in dense.parameters())
    acc = recipes.accuracy(dense, data.test)
    return {"arch": arch, "method": "dense (lossless)", "compressed_test_accuracy": acc, "dense_test_accuracy": acc,
            "accuracy_drop": 0.0, "file_bytes": nbytes, "float32_bytes": 4 * params, "ratio": 4 * params / nbytes,
            "parameters": params, "nonzero": params, "paper_estimate_bytes": 4 * params, "paper_estimate_ratio": 1.0,
            "train_seconds": 0.0}


# Work runs in worker processes (one torch thread each): on 2 cores two single-threaded jobs beat one
# two-threaded job for models this small. Each worker loads the data once.
_DATA: dict[str, recipes.ClassifierData] = {}


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


def _data(path: str) -> recipes.ClassifierData:
    if path not in _DATA:
        _DATA[path] = recipes.load_data(path)
    return _DATA[path]


def _dense_task(data_dir: str, arch: str, epochs: int, cache: str, out: str, progress: bool) -> dict:
    t0 = time.perf_counter()
    data = _data(data_dir)
    dense = recipes.train_dense(arch, data, epochs, progress=progress, cache=cache)
    row = dense_row(arch, dense, data, Path(out))
    row["train_seconds"] = time.perf_counter() - t0
    print(f"[{arch}] dense ready: {row['compressed_test_accuracy']:.2f}% ({row['train_seconds']:.0f} s)",
          file=sys.stderr, flush=True)
    return row


def _method_task(data_dir: str, arch: str, method: str, epochs: int, finetune: int, cache: str, out: str,
                 dense_acc: float, progress: bool) -> dict:
    t0 = time.perf_counter()
    data = _data(data_dir)
    dense = recipes.train_dense(arch, data, 1, progress=False, cache=cache)  # cached by the dense task
    r = recipes.compress_classifier(dense, arch, data, method, Path(out) / f"{arch}-{method}.nnc", epochs=epochs,
                                    finetune_epochs=finetune, progress=progress, dense_accuracy=dense_acc,
                                    log=lambda m: print(f"[{arch}] {m}", file=sys.stderr, flush=True))
    r["wall_seconds"] = time.perf_counter() - t0
    print(f"[{arch}] {method}: {r['file_bytes']:,} B (x{r['ratio']:.1f}), acc {r['compressed_test_accuracy']:.2f}% "
          f"(dense {dense_acc:.2f}%), nnz {r['nonzero']:,}, {r['wall_seconds']:.0f} s", file=sys.stderr, flush=True)
    return r


def table(rows: list[dict]) -> str:
    lines = ["| model | method | test acc % | Δ vs dense | non-zeros | .nnc bytes | ratio | paper est. (4 B×nnz) | "
             "paper ratio | target met | train s |", "|---|---|---:|---:|---:|---:|---:|---:|---:|:---:|---:|"]
    for r in rows:
        ratio_target, byte_target = TARGETS[r["arch"]]
        met = "yes" if r["file_bytes"] <= byte_target and r["accuracy_drop"] <= 1.0 else "no"
        if r["method"].startswith("dense"):
            met = "–"
        lines.append(f"| {NAMES[r['arch']]} | {r['method']} | {r['compressed_test_accuracy']:.2f} | "
                     f"{-r['accuracy_drop']:+.2f} | {r['nonzero']:,} | {r['file_bytes']:,} | ×{r['ratio']:.1f} | "
                     f"{r['paper_estimate_bytes']:,} | ×{r['paper_estimate_ratio']:.1f} | {met} | {r['train_seconds']:.0f} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    archs = [a for a in TARGETS if any(r["arch"] == a for r in rows)]
    fig, axes = plt.subplots(1, len(archs), figsize=(6.5 * len(archs), 4.8), squeeze=False)
    for ax, arch in zip(axes[0], archs, strict=True):
        rs = [r for r in rows if r["arch"] == arch]
        dense = next(r for r in rs if r["method"].startswith("dense"))
        for i, r in enumerate(rs):
            if r["method"].startswith("dense"):
                continue
            color = f"C{i}"
            ax.scatter(r["file_bytes"], r["compressed_test_accuracy"], color=color, marker="o", s=50,
                       label=f"{r['method']} (.nnc)")
            ax.scatter(r["paper_estimate_bytes"], r["compressed_test_accuracy"], facecolors="none", edgecolors=color,
                       marker="s", s=50, label=f"{r['method']} (4 B×nnz)")
            ax.plot([r["file_bytes"], r["paper_estimate_bytes"]], [r["compressed_test_accuracy"]] * 2, color=color,
                    lw=0.8, alpha=0.5)
        ax.scatter(dense["file_bytes"], dense["compressed_test_accuracy"], color="k", marker="*", s=90,
                   label="dense (lossless .nnc)")
        ax.scatter(dense["float32_bytes"], dense["compressed_test_accuracy"], color="k", marker="x", s=60,
                   label="dense float32")
        ax.axhline(dense["compressed_test_accuracy"] - 1.0, color="gray", ls="--", lw=0.8, label="dense − 1 point")
        ax.axvline(TARGETS[arch][1], color="red", ls=":", lw=0.8, label=f"target ×{TARGETS[arch][0]}")
        ax.set_xscale("log")
        ax.set_xlabel("bytes")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{NAMES[arch]} on Fashion-MNIST")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="IDX directory (Fashion-MNIST)")
    ap.add_argument("--archs", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--out", default=str(HERE / "out"), help="output directory")
    ap.add_argument("--cache", default=None, help="dense checkpoint cache directory [OUT/cache]")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (default 2, one per core)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    ap.add_argument("--quick", action="store_true", help="1-2 epochs per phase: a smoke test, not a result")
    ap.add_argument("--progress", action="store_true", help="show tqdm bars")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(args.cache) if args.cache else out / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    budget = QUICK if args.quick else EPOCHS
    data_dir = str(Path(args.data).resolve())
    recipes.load_data(data_dir)  # fail early on a bad directory
    ckpt = {a: str(cache / f"{a}-dense-e{budget[a][0]}-s0.safetensors") for a in args.archs}
    start = time.perf_counter()
    ctx = multiprocessing.get_context("spawn")  # no fork after torch has started its threads
    with ProcessPoolExecutor(args.jobs, mp_context=ctx, initializer=_init_worker, initargs=(args.threads,)) as pool:
        dense = {a: pool.submit(_dense_task, data_dir, a, budget[a][0], ckpt[a], str(out), args.progress)
                 for a in args.archs}
        dense_rows = {a: f.result() for a, f in dense.items()}
        # the slowest architecture first, so the two workers finish together
        tasks = sorted(((a, m) for a in args.archs for m in args.methods), key=lambda t: t[0] != "lenet5")
        futures = {(a, m): pool.submit(_method_task, data_dir, a, m, budget[a][1], budget[a][2], ckpt[a], str(out),
                                       dense_rows[a]["compressed_test_accuracy"], args.progress) for a, m in tasks}
        results = {k: f.result() for k, f in futures.items()}
    rows = []
    for a in args.archs:
        rows.append(dense_rows[a])
        rows.extend(results[(a, m)] for m in args.methods)
    md = table(rows)
    total = time.perf_counter() - start
    epochs_note = ", ".join(f"{NAMES[a]}: dense {budget[a][0]}, regularised {budget[a][1]}, fine-tune {budget[a][2]}"
                            for a in args.archs)
    footer = (f"\n\nwall time {total / 60:.1f} min ({args.jobs} workers x {args.threads} torch thread); "
              f"epochs {epochs_note}")
    print(md + footer)
    (out / "bench_prune.md").write_text(md + footer + "\n")
    (out / "bench_prune.json").write_text(json.dumps(rows, indent=2, default=str) + "\n")
    plot(rows, out / "prune_rate_accuracy.png")


if __name__ == "__main__":
    main()
