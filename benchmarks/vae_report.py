"""The tables and the plot of benchmarks/bench_vae.py, from its results file (`bench_vae.py --report`):
the paper's setting beside the lossy path, bytes per model against collection size, every peer file."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import protocol

BUDGET = 1.0  # points of accuracy: bench_vae's budget, on validation by the protocol's bound; "within 1 pt" on test


def mean_sd(xs: list[float], fmt: str = ".2f") -> str:
    if not xs:
        return "—"
    return f"{statistics.mean(xs):{fmt}} ± {statistics.stdev(xs):{fmt}}" if len(xs) > 1 else f"{xs[0]:{fmt}} (1 seed)"


def mean_parts(rows: list[dict]) -> str:
    """Mean bytes of the decoder / latents / residual / other over `rows` (the tables' parts column)."""
    return " / ".join(f"{statistics.mean(r['parts'][p] for r in rows):,.0f}" for p in ("decoder", "latent", "residual", "other"))


def paper_table(d: dict) -> str:
    out = ["| model | latent | seeds | test acc. original | VAE alone (paper's setting): test acc. | paper's ratio "
           "(params / latent numbers) | real ratio, VAE alone (raw B / file B) | VAE + residual: test acc. | "
           "real ratio, VAE + residual | bytes decoder / latents / residual / other (mean) | lossy path: bytes | "
           "lossy path: real ratio | lossy path: test acc. |",
           "|---|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
    for arch in protocol.ARCHS:
        lossy = [v for k, v in d.items() if k.startswith(f"lossy/{arch}/")]
        for latent in (64, 128):
            rows = [v for k, v in d.items() if k.startswith(f"paper/{arch}/") and k.endswith(f"/l{latent}")]
            if not rows:
                continue
            out.append(
                f"| {protocol.NAMES[arch]} ({rows[0]['parameters']:,}) | {latent} | {','.join(str(r['seed']) for r in rows)} "
                f"| {mean_sd([r['test_original'] for r in rows])} | {mean_sd([r['test_bare'] for r in rows])} "
                f"| ×{rows[0]['paper_ratio']:.1f} | ×{mean_sd([r['bare_real_ratio'] for r in rows])} "
                f"| {mean_sd([r['test_full'] for r in rows])} | ×{mean_sd([r['real_ratio'] for r in rows])} "
                f"| {mean_parts(rows)} "
                f"| {mean_sd([float(v['bytes']) for v in lossy], ',.0f')} "
                f"| ×{mean_sd([v['raw_bytes'] / v['bytes'] for v in lossy], '.1f')} "
                f"| {mean_sd([v['test'] for v in lossy])} |")
    return "\n".join(out)


def is_fallback(v: dict) -> bool:
    """search_budget returned its lossless file (no lossy candidate passed): zero drop, zero bound."""
    return v["val_drop"] == 0 and v["val_bound"] == 0 and v["test_drop"] == 0


def lossy_collection(d: dict) -> list[dict]:
    return [v for k, v in d.items() if k.startswith("lossy/lenet300/") or k.startswith("lossy_checkpoint/lenet300/")]


def collection_rows(d: dict) -> dict[int, list[dict]]:
    by_n: dict[int, list[dict]] = {}
    for k, v in d.items():
        if k.startswith("collection/lenet300/"):
            by_n.setdefault(v["models"], []).append(v)
    for k, v in d.items():  # size 1: the paper stage's latent-64 file of the baseline (pool model 0)
        if k.startswith("paper/lenet300/") and k.endswith("/l64"):
            drop = v["test_original"] - v["test_full"]
            by_n.setdefault(1, []).append({"seed": v["seed"], "models": 1, "file_bytes": v["file_bytes"],
                                           "bytes_per_model": v["file_bytes"], "paper_ratio": v["paper_ratio"],
                                           "real_ratio": v["real_ratio"], "parts": v["parts"],
                                           "test_drop_mean": drop, "test_drop_max": drop,
                                           "within_1pt": int(drop <= BUDGET),
                                           "with_residual": int(v["residual_step"] is not None),
                                           "epochs": v["epochs"], "stopped": v["stopped"]})
    return dict(sorted(by_n.items()))


def collection_table(d: dict) -> str:
    everything = lossy_collection(d)
    lossy = [v for v in everything if not is_fallback(v)]  # the comparison uses the peer's lossy files (its best case)
    by_seed: dict[int, list[int]] = {}
    for v in lossy:
        by_seed.setdefault(v["seed"], []).append(v["bytes"])
    lb = {seed: statistics.mean(b) for seed, b in by_seed.items()}  # the peer's mean per seed: ratios within a seed

    def vs_lossy(vs: list[dict]) -> str:
        r = [v["bytes_per_model"] / lb[v["seed"]] for v in vs if v["seed"] in lb]
        return mean_sd(r) + "×" if r else "—"
    fallbacks = len(everything) - len(lossy)
    fb_bytes = ", ".join(f"{v['bytes']:,} B" for v in everything if is_fallback(v))
    indices = sorted({0 if k.startswith("lossy/") else v["index"] for k, v in d.items()
                      if k.startswith(("lossy/lenet300/", "lossy_checkpoint/lenet300/"))})
    out = [f"nncodec lossy path (per model; {len(everything)} files: pool models {', '.join(map(str, indices))} of each "
           "seed, 0 = the converged baseline): "
           f"{mean_sd([float(v['bytes']) for v in lossy], ',.0f')} bytes per model over its {len(lossy)} lossy files "
           f"(median {statistics.median(v['bytes'] for v in lossy):,.0f}, range {min(v['bytes'] for v in lossy):,}-"
           f"{max(v['bytes'] for v in lossy):,}), test drop "
           f"{mean_sd([v['test_drop'] for v in lossy])} points (max {max((v['test_drop'] for v in lossy), default=float('nan')):.2f})"
           + (f"; {fallbacks} search(es) returned the lossless file ({fb_bytes}: "
              "no lossy candidate passed the confirmation), left out of the ratio column" if fallbacks else ""),
           "",
           "| models | seeds | VAE bytes per model (whole file / models) | VAE / lossy path (within each seed) | decoder / latents / residual / other (mean) "
           "| paper's ratio | real ratio | models with a residual | test drop mean (max) | within 1 pt on test | VAE epochs (stopped by) |",
           "|---:|---|---:|---:|---|---:|---:|---:|---:|---:|---|"]
    for n, vs in collection_rows(d).items():
        bpm = [v["bytes_per_model"] for v in vs]
        stops = ", ".join(f"{v['epochs']} ({v['stopped']})" for v in sorted(vs, key=lambda v: v["seed"]))
        out.append(f"| {n} | {','.join(str(v['seed']) for v in sorted(vs, key=lambda v: v['seed']))} | {mean_sd(bpm, ',.0f')} "
                   f"| {vs_lossy(vs)} | {mean_parts(vs)} | ×{vs[0]['paper_ratio']:.1f} "
                   f"| ×{mean_sd([v['real_ratio'] for v in vs], '.1f')} | {sum(v['with_residual'] for v in vs)}/{n * len(vs)} "
                   f"| {mean_sd([v['test_drop_mean'] for v in vs])} ({max(v['test_drop_max'] for v in vs):.2f}) "
                   f"| {sum(v['within_1pt'] for v in vs)}/{n * len(vs)} | {stops} |")
    return "\n".join(out)


def lossy_files_table(d: dict) -> str:
    """Every file of the peer in the collection comparison, so its mean can be read."""
    rows = sorted(lossy_collection(d), key=lambda v: (v["seed"], v.get("index", 0)))
    out = ["| seed | pool model | bytes | validation drop (95 % bound) | test drop | evaluations |", "|---:|---:|---:|---:|---:|---:|"]
    out += [f"| {v['seed']} | {v.get('index', 0)} | {v['bytes']:,} | {v['val_drop']:.2f} ({v['val_bound']:.2f}) "
            f"| {v['test_drop']:.2f} | {v['evaluations']} |" for v in rows]
    return "\n".join(out)


def plot(d: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = collection_rows(d)
    lossy = lossy_collection(d)
    if not rows or not lossy:
        return
    n = sorted(rows)
    fig, ax = plt.subplots(figsize=(6, 4))
    m = [statistics.mean(v["bytes_per_model"] for v in rows[k]) for k in n]
    s = [statistics.stdev(v["bytes_per_model"] for v in rows[k]) if len(rows[k]) > 1 else 0 for k in n]
    ax.errorbar(n, m, yerr=s, fmt="o-", capsize=3, label="VAE, shared decoder (+ residual): whole file / models")
    ax.plot(n, [statistics.mean((v["parts"]["latent"] + v["parts"]["residual"]) / k for v in rows[k]) for k in n], "x:",
            label="VAE latents + residual only (decoder not counted)")
    lb = [v["bytes"] for v in lossy if not is_fallback(v)]
    ax.axhline(statistics.mean(lb), color="k", ls="--", label=f"nncodec lossy path (per model, mean of {len(lb)} files)")
    ax.axhline(statistics.median(lb), color="k", ls=":", label="nncodec lossy path: median file")
    if len(lb) > 1:
        ax.axhspan(min(lb), max(lb), color="k", alpha=0.1, label="lossy path: smallest to largest file")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("models in the collection")
    ax.set_ylabel("file bytes per model")
    ax.set_title("LeNet-300-100 seeds 0-2 + checkpoints, budget 1 pt on validation")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def report(out: Path) -> None:
    d = json.loads((out / "vae_results.json").read_text())
    print(paper_table(d))
    print()
    print(collection_table(d))
    print()
    print(lossy_files_table(d))
    ck = [v for k, v in d.items() if k.startswith("checkpoints/")]
    if ck:
        print()
        print("pools: " + "; ".join(f"seed {v['seed']}: test {v['test_min']:.2f}-{v['test_max']:.2f} %" for v in ck))
    plot(d, out / "vae_bytes_per_model.png")
    print(f"\nplot: {out / 'vae_bytes_per_model.png'}")
