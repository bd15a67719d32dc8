"""Lossy post-training compression of LeNet-300-100 and LeNet-5 on Fashion-MNIST, to accuracy budgets.

    python benchmarks/bench_lossy.py --data /work/shared/data/fashion-mnist [--cache DIR] [--quick]

Trains the two models (or loads them from --cache), then for each accuracy budget (0.5 and 1.0
points of test accuracy by default) prints the smallest .nnc file found by
`nncodec.search_budgets`, its ratio to float32, its accuracy, the encode and decode seconds, and an
ablation:

  uniform              one step for all layers (relative to each layer's std), plain rounding,
                       i.i.d. entropy models
  + RDO                ... with RD-optimized quantization (lambda 0 or 0.05, chosen by the search)
  + context models     ... with the context-model codecs (mask ans-classes, levels ans-rowclass)
  + per-layer alloc.   step and lambda per layer, by sensitivity (Lagrangian + greedy, real sizes)
  + bias correction    biases corrected for the mean output shift, from the mean input of each
                       layer over 4096 training images
  + OPTQ               OPTQ error feedback from the input covariance of each layer (same images)

The last row is nncodec's result. The rows before "+ bias correction" use no data but the accuracy
evaluation; the last two use input statistics of training images (no retraining, no test data).
Every size is a real file (len of the bytes) and every accuracy is measured on the decoded file.
The rate-accuracy curve is written to benchmarks/out/lossy_rate_accuracy.png and the tables to
benchmarks/out/lossy_results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # BLAS threads fight torch's on a small shared machine

import numpy as np  # noqa: E402
import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import machine_description  # noqa: E402

import nncodec  # noqa: E402
from nncodec import models  # noqa: E402
from nncodec.budget import encode_with_settings, search_budgets  # noqa: E402
from nncodec.datasets import load_fashion_mnist  # noqa: E402

# training recipes (Adam lr 1e-3, batch 128, seed 0): LeNet-300-100 with a cosine schedule, LeNet-5 without
RECIPES = {"lenet300": {"epochs": 12, "cosine": True}, "lenet5": {"epochs": 4, "cosine": False}}
NAMES = {"lenet300": "LeNet-300-100", "lenet5": "LeNet-5"}
# NNCodec 2.1.3 (DeepCABAC + dependent quantization) on models trained the same way, from the issue
NNCODEC = {"lenet300": {0.5: 60200, 1.0: 48177}, "lenet5": {0.5: 70779, 1.0: 70779}}
TARGET_RATIO = {"lenet300": {0.5: 23.6, 1.0: 29.5}, "lenet5": {0.5: 32.5}}

GLOBAL_STEPS = tuple(float(0.125 * 2 ** (k / 3)) for k in range(22))  # 0.125 .. 16 sd: one step must suit all
ABLATION = [
    ("uniform", dict(per_layer=False, lambdas=(0.0,), contexts=False, rel_steps=GLOBAL_STEPS), False),
    ("+ RDO", dict(per_layer=False, lambdas=(0.0, 0.05), contexts=False, rel_steps=GLOBAL_STEPS), False),
    ("+ context models", dict(per_layer=False, lambdas=(0.0, 0.05), contexts=True, rel_steps=GLOBAL_STEPS), False),
    ("+ per-layer allocation", dict(per_layer=True, lambdas=(0.0, 0.05), contexts=True), False),
    ("+ bias correction (input means)", dict(per_layer=True, lambdas=(0.0, 0.05), contexts=True, optq=False), True),
    ("+ OPTQ (input covariances)", dict(per_layer=True, lambdas=(0.0, 0.05), contexts=True), True),
]


def decode_seconds(data: bytes, repeats: int = 7) -> tuple[float, dict]:
    """Median wall time of decoding all tensors of `data` to torch (medians: the machine is shared)."""
    times, out = [], {}
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = nncodec.load(data)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def trained(arch: str, data: str, cache: Path) -> dict:
    recipe = RECIPES[arch]
    path = cache / f"{arch}-fashion-mnist-e{recipe['epochs']}{'-cos' if recipe['cosine'] else ''}.safetensors"
    if path.exists():
        from safetensors.torch import load_file

        return load_file(str(path))
    x, y = load_fashion_mnist(data, "train")
    model = models.build(arch)
    t0 = time.perf_counter()
    models.train(model, x, y, **recipe, seed=0,
                 progress=lambda e, loss: print(f"  {arch} epoch {e + 1}: loss {loss:.4f}", file=sys.stderr))
    print(f"  trained {arch} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    cache.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path))
    return state


def run_model(arch: str, args: argparse.Namespace) -> dict:
    state = trained(arch, args.data, Path(args.cache))
    x_train, _ = load_fashion_mnist(args.data, "train")
    x_test, y_test = load_fashion_mnist(args.data, "test")
    evaluate = models.make_evaluator(arch, x_test, y_test)
    model = models.build(arch)
    model.load_state_dict(state)
    t0 = time.perf_counter()
    stats = models.layer_statistics(model, x_train, max_samples=4096)
    stats_seconds = time.perf_counter() - t0
    float_bytes = sum(v.numel() * 4 for v in state.values())
    lossless = nncodec.save(state)
    out = {"arch": arch, "float32_bytes": float_bytes, "lossless_bytes": len(lossless), "stats_seconds": stats_seconds,
           "rows": [], "curve": []}
    budgets = sorted(set(args.budgets))
    rel_steps = tuple(float(0.5 * 2 ** (k / 2)) for k in range(11)) if args.quick else None
    for label, opts, calibrated in ABLATION if not args.no_ablation else ABLATION[-1:]:
        final = label == ABLATION[-1][0]
        drops = sorted(set(budgets + (args.curve if final else [])))
        kwargs = dict(opts, statistics=stats if calibrated else None, max_evals=args.max_evals,
                      progress=sys.stderr.isatty(), metadata={"arch": arch})
        if rel_steps and opts.get("per_layer", True):
            kwargs["rel_steps"] = rel_steps
        t0 = time.perf_counter()
        results = search_budgets(state, evaluate, drops, **kwargs)
        search_seconds = time.perf_counter() - t0
        for drop, r in zip(drops, results, strict=True):
            row = {"config": label, "budget": drop, "bytes": len(r.data), "ratio": float_bytes / len(r.data),
                   "accuracy": r.score, "baseline": r.baseline, "settings": r.settings,
                   "search_seconds": search_seconds, "evaluations": r.evaluations}
            if r.choice:
                enc_opts = {k: v for k, v in opts.items() if k in ("contexts", "optq")}
                t0 = time.perf_counter()
                again = encode_with_settings(state, r.choice, statistics=stats if calibrated else None,
                                             small_lossless=r.small_lossless, metadata={"arch": arch}, **enc_opts)
                row["encode_seconds"] = time.perf_counter() - t0
                row["reproducible"] = again == r.data
                row["choice"] = {k: [v.rel_step, v.rd_lambda] for k, v in r.choice.items()}
                if final:  # the same quantized values with i.i.d. entropy models only: what the contexts save
                    row["bytes_without_contexts"] = len(encode_with_settings(
                        state, r.choice, statistics=stats, small_lossless=r.small_lossless, metadata={"arch": arch},
                        **{**enc_opts, "contexts": False}))
            row["decode_seconds"], decoded = decode_seconds(r.data)
            row["decoded_accuracy"] = evaluate(decoded)
            if final:
                out["curve"].append((len(r.data), r.score))
                if drop in budgets:
                    (Path(args.out) / f"{arch}-drop{drop}.nnc").write_bytes(r.data)
            if drop in budgets:
                out["rows"].append(row)
            print(f"  {NAMES[arch]:13s} {label:34s} budget {drop:4.2f}: {len(r.data):8,d} B "
                  f"x{float_bytes / len(r.data):5.1f}  acc {r.score:.2f} ({r.baseline:.2f})  "
                  f"decode {row['decode_seconds'] * 1e3:5.1f} ms  [{search_seconds:.0f} s search]", file=sys.stderr)
        if final:
            out["history"] = [(n, s, ok) for r in results for n, s, ok in r.history]
            out["sensitivity"] = results[0].sensitivity
    return out


def markdown(results: list[dict]) -> str:
    lines = [f"Machine: {machine_description()}", ""]
    lines.append("| model (accuracy, float32 bytes) | budget | nncodec bytes | ratio | accuracy | target | NNCodec 2.1.3 "
                 "| encode s | decode s | search s (evals) |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    for res in results:
        arch = res["arch"]
        final = [r for r in res["rows"] if r["config"] == ABLATION[-1][0]]
        for r in final:
            target = TARGET_RATIO[arch].get(r["budget"])
            nn = NNCODEC[arch].get(r["budget"])
            peer = f"{nn:,} B (x{res['float32_bytes'] / nn:.1f})" if nn else "-"
            goal = f">= x{target:.1f}" if target else "-"
            lines.append(
                f"| {NAMES[arch]} ({r['baseline']:.2f} %, {res['float32_bytes']:,} B) | {r['budget']} pt "
                f"| {r['bytes']:,} | x{r['ratio']:.1f} | {r['accuracy']:.2f} % "
                f"| {goal} "
                f"| {peer} "
                f"| {r.get('encode_seconds', 0):.2f} | {r['decode_seconds']:.3f} "
                f"| {r['search_seconds']:.0f} ({r['evaluations']}) |")
    lines += ["", "Ablation (each row adds one thing; bytes of the smallest file within the budget, ratio to float32):", ""]
    lines.append("| model | configuration | " + " | ".join(f"within {b} pt" for b in sorted({r['budget'] for res in results for r in res['rows']})) + " |")
    budgets = sorted({r["budget"] for res in results for r in res["rows"]})
    lines.append("|---|---|" + "---|" * len(budgets))
    for res in results:
        for label, _, _ in ABLATION:
            cells = []
            for b in budgets:
                hit = [r for r in res["rows"] if r["config"] == label and r["budget"] == b]
                cells.append(f"{hit[0]['bytes']:,} B (x{hit[0]['ratio']:.1f}, {hit[0]['accuracy']:.2f} %)" if hit else "-")
            if any(c != "-" for c in cells):
                lines.append(f"| {NAMES[res['arch']]} | {label} | " + " | ".join(cells) + " |")
    lines += ["", "Context models at the final operating points (same quantized values, same accuracy):", ""]
    for res in results:
        for r in res["rows"]:
            if r["config"] == ABLATION[-1][0] and "bytes_without_contexts" in r:
                lines.append(f"- {NAMES[res['arch']]} within {r['budget']} pt: {r['bytes_without_contexts']:,} B with "
                             f"i.i.d. models only, {r['bytes']:,} B with the context models "
                             f"({1 - r['bytes'] / r['bytes_without_contexts']:.1%} smaller)")
    lines += ["", "Chosen settings (step in standard deviations of each weight tensor; lam = RD lambda):", ""]
    for res in results:
        for r in res["rows"]:
            if r["config"] == ABLATION[-1][0]:
                lines.append(f"- {NAMES[res['arch']]} within {r['budget']} pt: "
                             + ", ".join(f"{k} {v}" for k, v in r["settings"].items()))
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6.5 * len(results), 4.6), squeeze=False)
    for ax, res in zip(axes[0], results, strict=True):
        arch = res["arch"]
        base = res["rows"][0]["baseline"] if res["rows"] else 0.0
        hist = res.get("history", [])
        if hist:
            ax.scatter([h[0] for h in hist], [base - h[1] for h in hist], s=8, c=["tab:blue" if h[2] else "0.75" for h in hist],
                       label="candidates tried (grey: over budget)")
        curve = sorted(res["curve"])
        ax.plot([c[0] for c in curve], [base - c[1] for c in curve], "o-", color="tab:red", label="nncodec (budget search)")
        for label, _, _ in ABLATION[:-1]:
            pts = sorted((r["bytes"], base - r["accuracy"]) for r in res["rows"] if r["config"] == label)
            if pts:
                ax.plot(*zip(*pts, strict=True), "s--", ms=4, alpha=0.7, label=f"ablation: {label}")
        nn = sorted(NNCODEC[arch].items())
        ax.plot([v for _, v in nn], [d for d, _ in nn], "k^", ms=9, label="NNCodec 2.1.3 (issue, budget met)")
        for b in (0.5, 1.0):
            ax.axhline(b, color="0.5", lw=0.6, ls=":")
        ax.set_xscale("log")
        ax.set_xlabel("file size (bytes)")
        ax.set_ylabel("test accuracy drop (points)")
        ax.set_ylim(-0.5, 4)
        ax.set_title(f"{NAMES[arch]} on Fashion-MNIST (float32 {res['float32_bytes']:,} B)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="Fashion-MNIST IDX directory")
    parser.add_argument("--cache", default=str(HERE / "out" / "cache"), help="trained checkpoints are kept here")
    parser.add_argument("--out", default=str(HERE / "out"))
    parser.add_argument("--models", default="lenet300,lenet5")
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.5, 1.0])
    parser.add_argument("--curve", type=float, nargs="*", default=[0.25, 2.0, 3.0],
                        help="extra budgets for the rate-accuracy curve of the final configuration")
    parser.add_argument("--max-evals", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="a coarser step ladder (faster, larger files)")
    parser.add_argument("--no-ablation", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    results = [run_model(arch, args) for arch in args.models.split(",")]
    text = markdown(results)
    print(text)
    (Path(args.out) / "lossy_results.md").write_text(text + "\n")
    (Path(args.out) / "lossy_results.json").write_text(json.dumps(results, indent=1, default=str))
    plot(results, Path(args.out) / "lossy_rate_accuracy.png")
    print(f"\nwrote {Path(args.out) / 'lossy_results.md'} and {Path(args.out) / 'lossy_rate_accuracy.png'}")


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
