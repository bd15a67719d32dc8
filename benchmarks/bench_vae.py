"""VAE parameter compression (issue 11, arXiv 2408.14513) with every byte counted.

    nice -n 10 python benchmarks/bench_vae.py --data /work/shared/data/fashion-mnist --part paper
    nice -n 10 python benchmarks/bench_vae.py --data /work/shared/data/fashion-mnist --part collection

Protocol: Fashion-MNIST train = first 55,000 training images, validation = last 5,000, test =
10,000. Every choice (residual step, latent/decoder steps, early stopping, the lossy path's
budget search) uses train + validation only; test accuracy is measured once, on files decoded
from their bytes.

part "paper": an FNN (784-200-10, 159,010 parameters; the paper's has 157,988) and a CNN (20,522;
the paper's 20,860), latent 64 and 128, 3 VAE seeds: the paper's ratio (parameters / latent
numbers) beside the real ratio (raw bytes / file bytes), test accuracy of the VAE alone (the
paper's setting: latents + decoder) and of the VAE with the residual chosen on validation
(budget 1 point).

part "collection": 64 checkpoints of one FNN training run (a constant-LR phase after convergence,
one checkpoint every quarter epoch); collections of 1, 4, 16 and 64 (evenly spaced) share one
decoder; real bytes per model (file bytes / models) against nncodec's own lossy path
(`search_budget` per model, budget 1 point on validation, calibration statistics from training
images) measured on 8 evenly spaced checkpoints in the same run. Writes a PNG plot.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from nncodec import models as zoo  # noqa: E402
from nncodec.budget import search_budget  # noqa: E402
from nncodec.collection import load_model  # noqa: E402
from nncodec.compress.vae import VaeOptions, vae_compress  # noqa: E402
from nncodec.datasets import load_fashion_mnist  # noqa: E402

VALIDATION = 5000


class FNN(nn.Module):
    """784-200-10, ReLU: 159,010 parameters (close to the paper's 157,988-parameter FNN)."""

    conv = False

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 200)
        self.fc2 = nn.Linear(200, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x.reshape(x.shape[0], -1))))


class CNN(nn.Module):
    """conv 8@5x5, pool, conv 16@5x5, pool, fc 256-64-10: 20,522 parameters (the paper's CNN: 20,860)."""

    conv = True

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 5)
        self.conv2 = nn.Conv2d(8, 16, 5)
        self.fc1 = nn.Linear(256, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], 1, 28, 28)
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


ARCHS = {"fnn": FNN, "cnn": CNN}


def split(data: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The fixed split: the last 5,000 training images are validation, the first 55,000 train."""
    xi, yi = load_fashion_mnist(data, "train")
    xt, yt = load_fashion_mnist(data, "test")
    return {"train": (xi[:-VALIDATION], yi[:-VALIDATION]), "val": (xi[-VALIDATION:], yi[-VALIDATION:]),
            "test": (xt, yt)}


def scorer(arch: str, images: np.ndarray, labels: np.ndarray):
    model = ARCHS[arch]()
    x = zoo.preprocess(images)

    def score(state: dict) -> float:
        return zoo.evaluate(model, x, labels, state={k: torch.as_tensor(np.asarray(v)) for k, v in state.items()})

    return score


def trained(arch: str, sp: dict, cache: Path, epochs: int) -> dict[str, torch.Tensor]:
    path = cache / f"{arch}.pt"
    if path.exists():
        return torch.load(path, weights_only=True)
    model = ARCHS[arch]()
    zoo.train(model, *sp["train"], epochs=epochs, seed=0)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    torch.save(state, path)
    return state


def mean_sd(xs: list[float], fmt: str = ".2f") -> str:
    return f"{statistics.mean(xs):{fmt}} ± {statistics.stdev(xs):{fmt}}" if len(xs) > 1 else f"{xs[0]:{fmt}}"


# --------------------------------------------------------------------------------------------- paper


def part_paper(args: argparse.Namespace, sp: dict) -> dict:
    rows = []
    for arch, epochs in (("fnn", 10), ("cnn", 8)):
        if arch not in args.archs:
            continue
        state = trained(arch, sp, args.out, epochs)
        val, test = scorer(arch, *sp["val"]), scorer(arch, *sp["test"])
        raw = sum(v.numel() * v.element_size() for v in state.values())
        params = sum(v.numel() for v in state.values())
        acc0 = test(state)
        for latent in (64, 128):
            runs = []
            for seed in range(args.seeds):
                t0 = time.monotonic()
                opt = VaeOptions(latent=latent, hidden=args.hidden, seed=seed, max_drop=1.0,
                                 max_seconds=args.max_vae_seconds, val_copies=args.val_copies)
                r = vae_compress(state, lambda _m, s, val=val: val(s), opt, keep_bare=True)
                bare = load_model_all(r.bare)
                full = load_model_all(r.data)
                runs.append({"seed": seed, "paper_ratio": r.paper_ratio, "bare_bytes": len(r.bare),
                             "bare_real_ratio": raw / len(r.bare), "file_bytes": len(r.data),
                             "real_ratio": r.real_ratio, "test_bare": test(bare), "test_full": test(full),
                             "residual_step": r.residual_steps[""], "epochs": r.log.epochs,
                             "stopped": r.log.stopped, "seconds": time.monotonic() - t0,
                             "info": vae_parts(r.data)})
                print(f"{arch} latent {latent} seed {seed}: {runs[-1]}", flush=True)
            rows.append({"arch": arch, "parameters": params, "raw_bytes": raw, "test_original": acc0,
                         "latent": latent, "runs": runs})
            (args.out / f"vae_paper_{'_'.join(args.archs)}.partial.json").write_text(json.dumps({"paper": rows}, indent=1))
    return {"paper": rows}


def load_model_all(data: bytes) -> dict:
    import nncodec

    return nncodec.load(data, framework="np")


def vae_parts(data: bytes) -> dict:
    import nncodec

    with nncodec.open(data) as f:
        rep = f.info()
    v = rep["vae"]
    return {"decoder": v["decoder_bytes"], "latent": v["latent_bytes"], "residual": v["residual_bytes"],
            "other": rep["file_bytes"] - v["decoder_bytes"] - v["latent_bytes"] - v["residual_bytes"]}


def paper_markdown(res: dict) -> str:
    out = ["| model | latent | test acc. original | VAE alone: test acc. | paper's ratio | real ratio (VAE alone) "
           "| VAE + residual: test acc. | real ratio (with residual) | bytes: decoder / latents / residual / other |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for row in res["paper"]:
        runs = row["runs"]
        parts = runs[0]["info"]
        out.append(f"| {row['arch'].upper()} ({row['parameters']:,}) | {row['latent']} | {row['test_original']:.2f} "
                   f"| {mean_sd([r['test_bare'] for r in runs])} | {runs[0]['paper_ratio']:.1f}x "
                   f"| {mean_sd([r['bare_real_ratio'] for r in runs])}x | {mean_sd([r['test_full'] for r in runs])} "
                   f"| {mean_sd([r['real_ratio'] for r in runs])}x "
                   f"| {parts['decoder']:,} / {parts['latent']:,} / {parts['residual']:,} / {parts['other']:,} (seed 0) |")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------- collection


def checkpoints(sp: dict, cache: Path, n: int = 64) -> list[dict[str, torch.Tensor]]:
    """n checkpoints of one run: the converged FNN trained on at constant LR 2e-4, one every quarter epoch."""
    path = cache / f"fnn_checkpoints_{n}.pt"
    if path.exists():
        return torch.load(path, weights_only=True)["checkpoints"]
    model = FNN()
    model.load_state_dict(trained("fnn", sp, cache, 10))
    x = zoo.preprocess(sp["train"][0])
    y = torch.from_numpy(sp["train"][1].astype(np.int64))
    opt = torch.optim.Adam(model.parameters(), lr=2e-4)
    gen = torch.Generator().manual_seed(1)
    per = len(x) // 4
    out = []
    model.train()
    while len(out) < n:
        order = torch.randperm(len(x), generator=gen)
        for q in range(4):
            for i in range(q * per, (q + 1) * per, 128):
                idx = order[i : min(i + 128, (q + 1) * per)]
                opt.zero_grad()
                F.cross_entropy(model(x[idx]), y[idx]).backward()
                opt.step()
            out.append({k: v.detach().clone() for k, v in model.state_dict().items()})
            if len(out) == n:
                break
    torch.save({"checkpoints": out}, path)
    return out


def part_collection(args: argparse.Namespace, sp: dict) -> dict:
    cps = checkpoints(sp, args.out)
    val, test = scorer("fnn", *sp["val"]), scorer("fnn", *sp["test"])
    raw = sum(v.numel() * v.element_size() for v in cps[0].values())
    test0 = [test(c) for c in cps]
    val0 = [val(c) for c in cps]
    res: dict = {"raw_bytes_per_model": raw, "checkpoint_test": test0, "vae": [], "lossy": []}
    lossy_json = args.out / "vae_lossy.json"
    res["lossy"] = json.loads(lossy_json.read_text())["lossy"] if lossy_json.exists() else []
    for n in args.sizes:
        idx = np.linspace(0, len(cps) - 1, n).round().astype(int) if n > 1 else np.array([len(cps) - 1])
        coll = {f"c{i:02d}": cps[i] for i in idx}
        t0 = time.monotonic()
        opt = VaeOptions(latent=args.latent, hidden=args.hidden, seed=args.seed, max_drop=1.0, max_seconds=args.max_vae_seconds,
                         val_copies=args.val_copies)
        r = vae_compress(coll, lambda m, s: val(s), opt)
        drops = []
        for i in idx:
            acc = test(load_model(r.data, f"c{i:02d}", framework="np"))
            drops.append(test0[i] - acc)
        parts = vae_parts(r.data)
        res["vae"].append({"models": n, "seed": args.seed, "file_bytes": len(r.data), "bytes_per_model": len(r.data) / n,
                           "paper_ratio": r.paper_ratio, "real_ratio": r.real_ratio, "parts": parts,
                           "test_drop_mean": float(np.mean(drops)), "test_drop_max": float(np.max(drops)),
                           "within_1pt": int(sum(d <= 1.0 for d in drops)), "epochs": r.log.epochs,
                           "stopped": r.log.stopped, "seconds": time.monotonic() - t0,
                           "residual_steps": sorted({str(s) for s in r.residual_steps.values()})})
        print(f"vae collection {n}: {res['vae'][-1]}", flush=True)
    res["val_original"] = val0
    return {"collection": res}


def part_lossy(args: argparse.Namespace, sp: dict) -> dict:
    """nncodec's lossy path, per model, on evenly spaced checkpoints (its bytes do not depend on N)."""
    cps = checkpoints(sp, args.out)
    val, test = scorer("fnn", *sp["val"]), scorer("fnn", *sp["test"])
    test0 = [test(c) for c in cps]
    res: dict = {"lossy": []}
    ref = FNN()
    t_lossy = time.monotonic()
    for i in np.linspace(0, len(cps) - 1, args.lossy_samples).round().astype(int):
        ref.load_state_dict(cps[i])
        stats = zoo.layer_statistics(ref, sp["train"][0], max_samples=4096)
        r = search_budget(cps[i], val, 1.0, statistics=stats, max_evals=args.max_evals, progress=False)
        acc = test(load_model_all(r.data))
        res["lossy"].append({"checkpoint": int(i), "bytes": len(r.data), "test": acc, "drop": test0[i] - acc})
        print(f"lossy checkpoint {i}: {res['lossy'][-1]}", flush=True)
    res["lossy_seconds"] = time.monotonic() - t_lossy
    return res


def collection_markdown(res: dict) -> str:
    c = res["collection"]
    lossy = c["lossy"]
    lb = statistics.mean(x["bytes"] for x in lossy)
    out = [f"nncodec lossy path (search_budget, 1 pt on validation, OPTQ statistics), {len(lossy)} checkpoints: "
           f"{lb:,.0f} ± {statistics.stdev([x['bytes'] for x in lossy]) if len(lossy) > 1 else 0:,.0f} bytes per model, "
           f"test drop {statistics.mean(x['drop'] for x in lossy):.2f} (max {max(x['drop'] for x in lossy):.2f}) points",
           "",
           "| models | VAE file bytes (seed 0) | bytes per model | vs lossy path | decoder / latents / residual / other | "
           "paper's ratio | real ratio | test drop mean (max) | within 1 pt |",
           "|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    by_n: dict[int, list[dict]] = {}
    for v in c["vae"]:
        by_n.setdefault(v["models"], []).append(v)
    for n, vs in sorted(by_n.items()):
        p = vs[0]["parts"]
        bpm = [v["bytes_per_model"] for v in vs]
        out.append(f"| {n} ({len(vs)} seed{'s' if len(vs) > 1 else ''}) | {vs[0]['file_bytes']:,} | {mean_sd(bpm, ',.0f')} "
                   f"| {statistics.mean(bpm) / lb:.2f}x | {p['decoder']:,} / {p['latent']:,} / {p['residual']:,} / {p['other']:,} "
                   f"| {vs[0]['paper_ratio']:.1f}x | {mean_sd([v['real_ratio'] for v in vs])}x "
                   f"| {mean_sd([v['test_drop_mean'] for v in vs])} ({max(v['test_drop_max'] for v in vs):.2f}) "
                   f"| {sum(v['within_1pt'] for v in vs)}/{n * len(vs)} |")
    return "\n".join(out)


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = res["collection"]
    by_n: dict[int, list[dict]] = {}
    for v in c["vae"]:
        by_n.setdefault(v["models"], []).append(v)
    n = sorted(by_n)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(n, [statistics.mean(v["bytes_per_model"] for v in by_n[k]) for k in n], "o-",
            label="VAE, shared decoder (+ residual), whole file / models")
    ax.plot(n, [statistics.mean((v["parts"]["latent"] + v["parts"]["residual"]) / k for v in by_n[k]) for k in n], "x:",
            label="VAE latents + residual only (decoder not counted)")
    lb = statistics.mean(x["bytes"] for x in c["lossy"])
    ax.axhline(lb, color="k", ls="--", label="nncodec lossy path (per model)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("models in the collection")
    ax.set_ylabel("file bytes per model")
    ax.set_title("FNN checkpoints, Fashion-MNIST, within 1 pt")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def report(out: Path) -> None:
    """Markdown tables and the plot from every saved part (runs are split to stay under 15 minutes)."""
    paper = [r for f in sorted(out.glob("vae_paper_*.json")) if "partial" not in f.name
             for r in json.loads(f.read_text())["paper"]]
    if paper:
        print(paper_markdown({"paper": paper}))
    vae = [v for f in sorted(out.glob("vae_collection_*.json")) for v in json.loads(f.read_text())["collection"]["vae"]]
    lossy_file = out / "vae_lossy.json"
    if vae and lossy_file.exists():
        res = {"collection": {"vae": sorted(vae, key=lambda v: v["models"]),
                              "lossy": json.loads(lossy_file.read_text())["lossy"]}}
        print()
        print(collection_markdown(res))
        plot(res, out / "vae_bytes_per_model.png")
        print(f"plot: {out / 'vae_bytes_per_model.png'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="directory with the Fashion-MNIST IDX files")
    ap.add_argument("--part", choices=("paper", "lossy", "collection", "report"), required=True,
                    help="paper: FNN/CNN at latent 64/128; lossy: the per-model lossy path on checkpoints; "
                         "collection: VAE collections (run lossy first, it reads vae_lossy.json); "
                         "report: tables and plot from the saved JSON files")
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_vae"))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--archs", nargs="+", choices=("fnn", "cnn"), default=["fnn", "cnn"], help="paper part: models")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--latent", type=int, default=64, help="collection part: latent size")
    ap.add_argument("--seed", type=int, default=0, help="collection part: VAE seed")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--lossy-samples", type=int, default=4)
    ap.add_argument("--max-evals", type=int, default=80)
    ap.add_argument("--max-vae-seconds", type=float, default=240.0)
    ap.add_argument("--val-copies", type=int, default=20, help="noisy validation copies (the paper: 20)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    sp = split(args.data) if args.part != "report" else {}
    t0 = time.monotonic()
    if args.part == "report":
        report(args.out)
        return
    res = {"paper": part_paper, "lossy": part_lossy, "collection": part_collection}[args.part](args, sp)
    res["seconds"] = time.monotonic() - t0
    tag = args.part + ("_" + "_".join(args.archs) if args.part == "paper" else
                       "_" + "_".join(map(str, args.sizes)) + (f"_seed{args.seed}" if args.seed else "")
                       if args.part == "collection" else "")
    (args.out / f"vae_{tag}.json").write_text(json.dumps(res, indent=1))
    if args.part == "paper":
        print(paper_markdown(res))
    elif args.part == "collection" and res["collection"]["lossy"]:
        print(collection_markdown(res))
        plot(res, args.out / "vae_bytes_per_model.png")
    print(f"total {res['seconds']:.0f} s")


if __name__ == "__main__":
    main()
