"""Spike-and-slab variational pruning: (a) feature selection on known truth, (b) Fashion-MNIST compression.

    nice -n 10 python benchmarks/bench_spike_slab.py features --seeds 10 11 12 13 14 15 16 17 18 19 \
        --epochs 250 --lr 1e-2 --cosine --lams 0.1 --pairs 2      # session 5's procedure
    nice -n 10 python benchmarks/bench_spike_slab.py compress --data /work/shared/data/fashion-mnist \
        --arch lenet300 --seeds 0 1 2 --lams 1e-2 1e-3 --out /tmp/ss

(a) y depends on 5 of 50 inputs; every noise input is correlated (rho) with one of the true ones.
A 50-32-1 MLP is fitted by spike-and-slab VI (Gaussian likelihood with a learned noise scale). A
feature's PIP is, since session 5, the probability that a path of included weights joins it to the
output (`--feature-rule path`; sessions 1-4: that any of its first-layer weights is included, `any`,
which saturates on weights into dead hidden units); with `--pairs P` the selection is stability
selection: mean path PIP > 0.5 over 2P fits on complementary half-samples. The peer is the same MLP
trained densely, features ranked by the L2 norm of their outgoing weights, top 5 (the true count: an
oracle advantage for the peer).

(b) Split: train = first 55,000 training images, validation = last 5,000, test = 10,000. Every choice
(lambda, quantization steps) is made on validation; test is scored once per run. Sizes are whole
.nnc files (without and with the `pip` component), ratio = float32 bytes / file bytes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from nncodec_cli.presets import classifier_runs  # noqa: E402
from nncodec_cli.presets import lenet as models  # noqa: E402
from nncodec_cli.presets.fashion_mnist import load_fashion_mnist  # noqa: E402

import nncodec  # noqa: E402
from nncodec.compress.spike_slab import (  # noqa: E402
    complementary_halves,
    input_feature_pip,
    model_feature_pip,
    recipe,
    save_spike_slab,
    select_features,
    selection_frequency,
    spike_slab,
)
from nncodec.compress.training import recipes  # noqa: E402
from nncodec.compress.training.export import quantized_state_dict  # noqa: E402

BASELINES = Path("/work/artifacts/baselines")

# ----------------------------------------------------------------------------- (a) feature selection


def synthetic(seed: int, n: int = 2000, p: int = 50, k: int = 5, rho: float = 0.5, noise: float = 0.3,
              setting: str = "easy"):
    """easy: y additive and monotone in each true input; hard: also sin(2x) and |x| terms."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, p, generator=g)
    x = z.clone()
    for j in range(k, p):  # noise input j shares rho of its variance's direction with true input j % k
        x[:, j] = rho * z[:, j % k] + (1 - rho**2) ** 0.5 * z[:, j]
    if setting == "easy":
        y = 2 * x[:, 0] - 1.5 * x[:, 1] + x[:, 2] - 1.2 * torch.tanh(2 * x[:, 3]) + torch.tanh(2 * x[:, 4])
    else:
        y = 2 * x[:, 0] - 1.5 * x[:, 1] + torch.sin(2 * x[:, 2]) + x[:, 3].abs() - 1.2 * torch.tanh(x[:, 4])
    return x, (y + noise * torch.randn(n, generator=g)).unsqueeze(1)


class Regressor(nn.Module):
    """MLP with a learned Gaussian noise scale (its output column 1 is log sigma)."""

    def __init__(self, p: int, hidden: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(p, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.log_sigma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return torch.cat([out, self.log_sigma.expand_as(out)], dim=1)


def gaussian_nll(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    mean, log_sigma = out[:, :1], out[:, 1:]
    return (0.5 * ((y - mean) / log_sigma.exp()) ** 2 + log_sigma).mean()


def batches(x: torch.Tensor, y: torch.Tensor, size: int, seed: int) -> list:
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    return [(x[order[i : i + size]], y[order[i : i + size]]) for i in range(0, len(x), size)]


def pr(selected: set[int], truth: set[int]) -> tuple[float, float]:
    tp = len(selected & truth)
    return tp / max(len(selected), 1), tp / len(truth)


def val_nll(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float(gaussian_nll(model(x), y))


def fit_features(x: torch.Tensor, y: torch.Tensor, lam: float, seed: int, args: argparse.Namespace) -> dict:
    """One spike-and-slab fit of the 50-32-1 MLP; its feature PIPs by both definitions."""
    torch.manual_seed(seed)
    model = Regressor(x.shape[1])
    spike_slab(model, batches(x, y, 100, seed), gaussian_nll, epochs=args.epochs, lr=args.lr, finetune_epochs=0,
               prior_inclusion=lam, prior_sd=1.0, init_sd=0.01, init_phi=0.5, ema=0.99, seed=seed, progress=False,
               targets=["net.0.weight", "net.2.weight"], elbo_samples=args.elbo_samples, cosine=args.cosine)
    pips = model.spike_slab_pips
    fp_any = input_feature_pip(pips["net.0.weight"])  # sessions 1-4: any first-layer weight included
    fp_path = model_feature_pip(pips, ["net.0.weight", "net.2.weight"])  # session 5: a path to the output
    return {"lam": lam, "elbo": round(model.spike_slab_elbo["elbo"], 2), "kl": round(model.spike_slab_elbo["kl"], 2),
            "expected_ll": round(model.spike_slab_elbo["expected_log_likelihood"], 2),
            "noise_sd": round(float(model.log_sigma.detach().exp()), 4), "alive_hidden": int((pips["net.2.weight"] > 0.5).sum()),
            "selected_any": select_features(fp_any), "selected_path": select_features(fp_path),
            "fp_path": fp_path, "model": model}


def features(args: argparse.Namespace) -> dict:
    """Per seed (= per data set): lambda chosen among --lams (never by the truth) by `--select`: `elbo`,
    the largest ELBO on the training examples (empirical Bayes), or `val_nll`, the validation NLL of the
    pruned model (the last --val-size examples). Selected features: with --pairs P > 0, stability
    selection (mean path feature PIP > 0.5 over the 2P complementary half-samples of the training
    examples, each fitted at the chosen lambda); with --pairs 0, the chosen fit's feature PIP > 0.5
    (--feature-rule path or any). Peer in the same run: the dense MLP's top-5 inputs by weight norm."""
    rows = []
    truth = set(range(5))
    for seed in args.seeds:
        x_all, y_all = synthetic(seed, rho=args.rho, setting=args.setting)
        x, y, xv, yv = x_all[:-args.val_size], y_all[:-args.val_size], x_all[-args.val_size:], y_all[-args.val_size:]
        t0 = time.perf_counter()
        cands = []
        for lam in args.lams:
            c = fit_features(x, y, lam, seed, args)
            c["val_nll"] = round(val_nll(c.pop("model"), xv, yv), 4)
            c.pop("fp_path")
            c["selected"] = c["selected_path"] if args.feature_rule == "path" else c["selected_any"]
            cands.append(c)
        best = max(cands, key=lambda c: c["elbo"]) if args.select == "elbo" else min(cands, key=lambda c: c["val_nll"])
        halves, freq = [], None
        if args.pairs > 0:
            fps = []
            for k, idx in enumerate(complementary_halves(len(x), args.pairs, seed)):
                h = fit_features(x[idx], y[idx], best["lam"], seed * 100 + k, args)
                fps.append(h["fp_path"])
                halves.append({key: h[key] for key in ("selected_path", "noise_sd", "alive_hidden", "elbo")})
            freq = selection_frequency(fps)
            chosen = select_features(freq)
        else:
            chosen = best["selected"]
        torch.manual_seed(seed)
        dense = Regressor(x.shape[1])
        opt = torch.optim.Adam(dense.parameters(), lr=args.lr)
        loader = batches(x, y, 100, seed)
        for _ in range(args.epochs):
            for xb, yb in loader:
                opt.zero_grad()
                gaussian_nll(dense(xb), yb).backward()
                opt.step()
        mag_sel = {int(i) for i in torch.topk(dense.net[0].weight.detach().norm(dim=0), 5).indices}
        single = set(best["selected"])
        rows.append({"seed": seed, "chosen_lam": best["lam"], "select": args.select, "spike_slab": chosen,
                     "ss_precision_recall": pr(set(chosen), truth), "exact": set(chosen) == truth,
                     "single_fit": sorted(single), "single_precision_recall": pr(single, truth), "single_exact": single == truth,
                     "single_any": best["selected_any"], "single_any_exact": set(best["selected_any"]) == truth,
                     "magnitude_top5": sorted(mag_sel), "mag_precision_recall": pr(mag_sel, truth), "mag_exact": mag_sel == truth,
                     "frequency_true": None if freq is None else [round(float(v), 3) for v in freq[:5]],
                     "max_frequency_noise": None if freq is None else round(float(freq[5:].max()), 3),
                     "halves": halves, "candidates": cands, "seconds": round(time.perf_counter() - t0, 1)})
        print(json.dumps(rows[-1]), flush=True)
    n = len(rows)
    mean = lambda key, i: sum(r[key][i] for r in rows) / n  # noqa: E731
    summary = {"seeds": n, "exact_recovery": sum(r["exact"] for r in rows), "mean_precision": mean("ss_precision_recall", 0),
               "mean_recall": mean("ss_precision_recall", 1), "single_fit_exact": sum(r["single_exact"] for r in rows),
               "single_any_exact": sum(r["single_any_exact"] for r in rows),
               "mag_exact_recovery": sum(r["mag_exact"] for r in rows), "mag_mean_precision": mean("mag_precision_recall", 0),
               "mag_mean_recall": mean("mag_precision_recall", 1)}
    print(json.dumps(summary), flush=True)
    return {"setting": {"name": args.setting, "n_train": 2000 - args.val_size, "n_val": args.val_size, "p": 50, "k": 5,
                        "rho": args.rho, "noise_sd": 0.3, "lams": args.lams, "epochs": args.epochs, "lr": args.lr,
                        "cosine": args.cosine, "pairs": args.pairs, "select": args.select,
                        "elbo_samples": args.elbo_samples, "feature_rule": args.feature_rule},
            "runs": rows, "summary": summary}


# ----------------------------------------------------------------------------- (b) compression


def dense_model(arch: str, data: recipes.ClassifierData, seed: int, cache: Path, epochs: int) -> tuple[nn.Module, str]:
    """The converged dense baseline: the protocol helper's if present, else our own (Adam, cosine)."""
    for cand in (BASELINES / f"{arch}-seed{seed}.safetensors", BASELINES / f"{arch}_seed{seed}.safetensors",
                 BASELINES / f"{arch}.safetensors"):
        if cand.exists():
            model = models.build(arch)
            model.load_state_dict(recipes.load_state(cand))
            return model.eval(), str(cand)
    path = cache / f"{arch}-dense-cosine-seed{seed}-e{epochs}.safetensors"
    model = models.build(arch)
    if path.exists():
        model.load_state_dict(recipes.load_state(path))
        return model.eval(), f"own: {path.name}"
    torch.manual_seed(seed)
    xi, yi = load_fashion_mnist(args_data, "train")
    models.train(model, xi[:-recipes.VALIDATION], yi[:-recipes.VALIDATION], epochs=epochs, lr=1e-3, batch_size=128,
                 seed=seed, cosine=True)
    recipes.save_state(model, path)
    return model.eval(), f"own: {path.name}"


args_data = ""
# spike_slab options a compress run passes to the recipe (the flag is the name with dashes), with defaults
RECIPE_OPTIONS = {"lr": 1e-3, "prior_sd": 0.1, "init_phi": 0.9, "init_sd": 1e-3, "ema": 0.99, "anneal_epochs": 0.0,
                  "kl_weight": 1.0, "threshold": 0.5}


def compress_one(arch: str, dense: nn.Module, data: recipes.ClassifierData, seed: int, lam: float, args: argparse.Namespace,
                 out: Path) -> dict:
    """One spike-and-slab run through the same recipe as `nncodec prune --method spike-slab`, written
    without and with PIPs (same model, same steps: both files decode to the same weights)."""
    path = out / f"{arch}-ss-lam{lam:g}-seed{seed}.nnc"
    overrides = {"prior_inclusion": lam, **{key: getattr(args, key) for key in RECIPE_OPTIONS}}
    r = recipe.compress_classifier(dense, arch, data, path, epochs=args.epochs, finetune_epochs=args.finetune_epochs,
                                   quant_tolerance=args.quant_tolerance, seed=seed, progress=False, overrides=overrides)
    model = r.pop("model")
    pip_path = out / f"{arch}-ss-lam{lam:g}-seed{seed}-pip.nnc"
    pip_bytes_file = save_spike_slab(model, pip_path, steps=r["steps"], keep_pip=True,
                                     metadata={"arch": arch, "method": "spike-slab"})
    expected = quantized_state_dict(model, r["steps"])
    decoded = nncodec.load_file(pip_path)
    assert all(torch.equal(decoded[k], expected[k]) for k in expected), "the PIP file decodes to other weights"
    with nncodec.open(pip_path) as f:
        pip_bytes = sum(t.get("pip_bytes", 0) for t in f.info()["tensors"])
    pipped = sum(p.numel() for p in model.spike_slab_pips.values())
    f32 = r["float32_bytes"]
    return {"arch": arch, "seed": seed, "lam": lam, "train_seconds": r["train_seconds"],
            "pruned_val": r["pruned_validation_accuracy"], "val": r["compressed_validation_accuracy"],
            "kept": r["kept"], "nonzero": r["nonzero"], "parameters": r["parameters"],
            "bytes_nopip": r["file_bytes"], "ratio_nopip": f32 / r["file_bytes"],
            "bytes_pip": pip_bytes_file, "ratio_pip": f32 / pip_bytes_file, "pip_bytes": pip_bytes,
            "pip_bits_per_weight": 8 * pip_bytes / pipped, "test": r["compressed_test_accuracy"]}


def compress(args: argparse.Namespace) -> dict:
    global args_data
    args_data = args.data
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = classifier_runs.load_data(args.data)
    rows, dense_rows = [], []
    for seed in args.seeds:
        dense, source = dense_model(args.arch, data, seed, out, args.dense_epochs)
        dense_rows.append({"seed": seed, "source": source, "val": recipes.accuracy(dense, data.val),
                           "test": recipes.accuracy(dense, data.test)})
        print(json.dumps(dense_rows[-1]), flush=True)
        for lam in args.lams:
            row = compress_one(args.arch, dense, data, seed, lam, args, out)
            row["dense_test"], row["dense_val"] = dense_rows[-1]["test"], dense_rows[-1]["val"]
            row["drop"] = row["dense_test"] - row["test"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = {}
    for lam in args.lams:
        rs = [r for r in rows if r["lam"] == lam]
        summary[str(lam)] = {k: (statistics.mean(r[k] for r in rs), statistics.stdev(r[k] for r in rs) if len(rs) > 1 else 0.0)
                             for k in ("bytes_nopip", "ratio_nopip", "bytes_pip", "ratio_pip", "drop", "test", "val",
                                       "pip_bits_per_weight", "nonzero")}
    return {"arch": args.arch, "args": vars(args), "dense": dense_rows, "runs": rows, "summary": summary}


def main() -> None:
    torch.set_num_threads(1)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("features")
    a.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    a.add_argument("--rho", type=float, default=0.5)
    a.add_argument("--setting", choices=("easy", "hard"), default="easy")
    a.add_argument("--json", default=None, help="write the results here")
    a.add_argument("--lams", type=float, nargs="+", default=[1e-3, 1e-2, 1e-1])
    a.add_argument("--val-size", type=int, default=400)
    a.add_argument("--epochs", type=int, default=100)
    a.add_argument("--lr", type=float, default=3e-3, help="Adam's step size (spike-and-slab fit and dense peer)")
    a.add_argument("--select", choices=("elbo", "val_nll"), default="elbo", help="how lambda is chosen")
    a.add_argument("--elbo-samples", type=int, default=8)
    a.add_argument("--cosine", action="store_true", help="cosine step-size decay in the variational phase")
    a.add_argument("--pairs", type=int, default=0,
                   help="stability selection over this many complementary pairs of half-samples (0: one fit)")
    a.add_argument("--feature-rule", choices=("path", "any"), default="path",
                   help="feature PIP: path = P(a path of included weights to the output), any = P(a first-layer weight in)")
    b = sub.add_parser("compress")
    b.add_argument("--data", required=True)
    b.add_argument("--arch", choices=("lenet300", "lenet5"), default="lenet300")
    b.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    b.add_argument("--lams", type=float, nargs="+", default=[1e-3])
    b.add_argument("--epochs", type=int, default=10)
    b.add_argument("--finetune-epochs", type=int, default=5)
    b.add_argument("--dense-epochs", type=int, default=20)
    for key, default in RECIPE_OPTIONS.items():
        b.add_argument("--" + key.replace("_", "-"), dest=key, type=float, default=default)
    b.add_argument("--quant-tolerance", type=float, default=0.3)
    b.add_argument("--out", default="/tmp/spike-bench")
    b.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args()
    result = features(args) if args.cmd == "features" else compress(args)
    text = json.dumps(result, indent=1)
    if getattr(args, "json", None):
        Path(args.json).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
