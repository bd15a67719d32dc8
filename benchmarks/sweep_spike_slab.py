"""Spike-and-slab hyper-parameters on VALIDATION only (issue 10): KL weight (tempered ELBO), lambda,
sigma0 and the PIP threshold tau, one seed, short runs. Test is never scored here.

    nice -n 10 python benchmarks/sweep_spike_slab.py --data /work/shared/data/fashion-mnist \
        --kl 1 0.1 0.01 --lams 1e-3 --sds 0.1 --taus 0.5 --json /work/artifacts/logs/spike/sweep1.json

For each (kl_weight, lambda, sigma0): `--epochs` variational epochs from the converged dense baseline,
then for each tau the median-probability-style model phi > tau, `--finetune-epochs` epochs of
fine-tuning with the mask frozen, the quantization-step search on validation (as the recipe does) and
the real .nnc file. Reported per (config, tau): kept weights, file bytes, validation accuracy of the
decoded file and its drop against the dense model's validation accuracy.

Choice rule (the same as benchmarks/bench_prune.py's): the smallest file whose validation drop is
<= 0.5 pt; if none, the smallest validation drop.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from nncodec_cli.presets import classifier_runs  # noqa: E402
from nncodec_cli.presets import lenet as models  # noqa: E402

from nncodec.api import load_file  # noqa: E402
from nncodec.compress.spike_slab import SpikeSlab, save_spike_slab  # noqa: E402
from nncodec.compress.training import recipes  # noqa: E402
from nncodec.compress.training.export import search_steps  # noqa: E402

BASELINES = Path("/work/artifacts/baselines")


def run_config(dense, data, arch, seed, kl, lam, sd, taus, args, out: Path) -> list[dict]:
    model = copy.deepcopy(dense)
    torch.manual_seed(seed)
    loader = recipes.make_loader(data.train, 256, seed)
    ss = SpikeSlab(model, data_size=len(data.train.x), prior_inclusion=lam, prior_sd=sd, init_phi=args.init_phi,
                   init_sd=args.init_sd, ema=args.ema, kl_weight=kl)
    opt = torch.optim.Adam([{"params": list(model.parameters())}, {"params": ss.parameters()}], lr=args.lr)
    t0 = time.perf_counter()
    epoch_s = []
    model.train()
    for _ in range(args.epochs):
        te = time.perf_counter()
        for x, y in loader:
            opt.zero_grad(set_to_none=True)
            (F.cross_entropy(model(x), y) + ss.penalty()).backward()
            opt.step()
            ss.after_step()
        epoch_s.append(round(time.perf_counter() - te, 1))
    pips = ss.pips()
    ss.release()
    mu = {k: v.detach().clone() for k, v in model.state_dict().items()}
    rows = []
    for tau in taus:
        m = models.build(arch)
        m.load_state_dict(mu)
        m.spike_slab_pips, m.spike_slab_threshold = pips, tau
        masks = {n: p > tau for n, p in pips.items()}
        params = dict(m.named_parameters())
        with torch.no_grad():
            for n, k in masks.items():
                params[n].mul_(k)
        pruned_val0 = recipes.accuracy(m, data.val)
        hooks = [params[n].register_hook(lambda g, k=k: g * k) for n, k in masks.items()]
        ft = torch.optim.Adam(m.parameters(), lr=args.lr)
        ft_loader = recipes.make_loader(data.train, 256, seed + 1000)
        m.train()
        for _ in range(args.finetune_epochs):
            for x, y in ft_loader:
                ft.zero_grad(set_to_none=True)
                F.cross_entropy(m(x), y).backward()
                ft.step()
                with torch.no_grad():
                    for n, k in masks.items():
                        params[n].mul_(k)
        for h in hooks:
            h.remove()
        m.eval()
        pruned_val = recipes.accuracy(m, data.val)
        names = [n for n, _ in m.named_parameters()]
        steps = search_steps(m, lambda s, m=m: -recipes.accuracy(m, data.val, s), -(pruned_val - 0.3), names=names)
        path = out / f"sweep-kl{kl:g}-lam{lam:g}-sd{sd:g}-tau{tau:g}.nnc"
        nbytes = save_spike_slab(m, path, steps=steps)
        val = recipes.accuracy(m, data.val, load_file(path))
        rows.append({"kl_weight": kl, "lam": lam, "sigma0": sd, "tau": tau, "kept": int(sum(int(k.sum()) for k in masks.values())),
                     "val_pruned_no_ft": pruned_val0, "val_pruned": pruned_val, "val": val,
                     "val_drop": args.dense_val - val, "bytes": nbytes, "ratio": 4 * sum(p.numel() for p in m.parameters()) / nbytes,
                     "epoch_seconds": epoch_s, "seconds": round(time.perf_counter() - t0, 1)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    torch.set_num_threads(1)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--arch", default="lenet300")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kl", type=float, nargs="+", default=[1.0])
    ap.add_argument("--lams", type=float, nargs="+", default=[1e-3])
    ap.add_argument("--sds", type=float, nargs="+", default=[0.1])
    ap.add_argument("--taus", type=float, nargs="+", default=[0.5])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--finetune-epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--init-phi", type=float, default=0.9)
    ap.add_argument("--init-sd", type=float, default=1e-3)
    ap.add_argument("--ema", type=float, default=0.99)
    ap.add_argument("--out", default="/tmp/spike-sweep")
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = classifier_runs.load_data(args.data)
    dense = models.build(args.arch)
    dense.load_state_dict(recipes.load_state(BASELINES / f"{args.arch}_seed{args.seed}.safetensors"))
    dense.eval()
    args.dense_val = recipes.accuracy(dense, data.val)
    print(json.dumps({"dense_val": args.dense_val}), flush=True)
    rows = []
    for kl in args.kl:
        for lam in args.lams:
            for sd in args.sds:
                rows += run_config(dense, data, args.arch, args.seed, kl, lam, sd, args.taus, args, out)
                Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
