"""VAE parameter compression (issue 11, arXiv 2408.14513) with every byte counted, against nncodec's
own lossy path under the same accuracy budget, in the same run.

    nice -n 10 python benchmarks/bench_vae.py --data /work/shared/data/fashion-mnist --out DIR \
        --stages paper lossy checkpoints collection lossy_checkpoints [--archs lenet300 lenet5] [--seeds 0 1 2]
    python benchmarks/bench_vae.py --out DIR --report          # tables (markdown) and the plot

Protocol (benchmarks/PROTOCOL.md): source models are the converged dense baselines
(/work/artifacts/baselines/, benchmarks/train_baselines.py), seeds 0-2; Fashion-MNIST train = first
55,000 training images, validation = last 5,000, test = 10,000. Every choice sees train and
validation only, and BOTH compressors accept a file by the same rule: budget 1 point, the one-sided
95 % upper bound of the paired drop on validation within budget on the even AND on the odd samples
(the lossy path: `search_budget` with per-sample scores, OPTQ statistics from 4,096 training images;
the VAE: `vae_compress` with the same per-sample evaluator, which picks the residual). Test accuracy is
scored once per reported file, decoded from its bytes.

Stages (results are kept in DIR/vae_results.json, one entry per finished unit: a rerun skips what is
there, so a stopped run loses at most one unit):
  paper              each baseline alone, latent 64 and 128, VAE seed = model seed: the paper's ratio
                     (parameters / latent numbers, decoder excluded) beside the real one (raw bytes /
                     whole file bytes), test accuracy of the VAE alone (the paper's setting) and with
                     the residual chosen on validation
  lossy              the lossy path on each baseline (the peer of "paper" and of the collections)
  checkpoints        per seed, 63 checkpoints of training the converged baseline on at a constant Adam
                     LR (one every 1/8 epoch); the pool of 64 = the baseline + these
  collection         collections of --sizes evenly spaced pool models (always including the baseline)
                     sharing one decoder (latent 64); size 1 is the paper stage's latent-64 row
  lossy_checkpoints  the lossy path on pool models --lossy-indices (default: the last checkpoint); with
                     21 42 63 it codes, beside the lossy stage's baseline (index 0), the 4 models of
                     each seed's 4-model collection, spread over the whole pool
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import protocol  # noqa: E402
from nncodec_cli.presets import lenet as models  # noqa: E402
from vae_report import BUDGET, report  # noqa: E402

import nncodec  # noqa: E402
from nncodec.budget import search_budget  # noqa: E402
from nncodec.collection import load_model  # noqa: E402
from nncodec.compress.layer_inputs import layer_statistics  # noqa: E402
from nncodec.compress.vae import VaeOptions, vae_compress  # noqa: E402
from nncodec.compress.vae.compress import LATENT_FACTORS  # noqa: E402

CALIBRATION = 4096
POOL = 64


def torchify(state: dict) -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(np.asarray(v)) for k, v in state.items()}


def vae_evaluator(arch: str, data: protocol.ProtocolData):
    """(model name, decoded state) -> per-sample 0/100 on validation: vae_compress's residual choice
    then applies the protocol's paired bound (even and odd halves), as search_budget does."""
    ev = protocol.val_evaluator(arch, data)
    return lambda _name, state: ev(torchify(state))


def file_parts(data: bytes) -> dict[str, int]:
    with nncodec.open(data) as f:
        rep = f.info()
    v = rep["vae"]
    used = v["decoder_bytes"] + v["latent_bytes"] + v["residual_bytes"]
    return {"decoder": v["decoder_bytes"], "latent": v["latent_bytes"], "residual": v["residual_bytes"],
            "other": rep["file_bytes"] - used}


class Store:
    """vae_results.json: one entry per finished unit, rewritten after each."""

    def __init__(self, path: Path, redo: bool = False) -> None:
        self.path = path
        self.redo = redo  # recompute the units asked for and replace their entries
        self.data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}

    def __contains__(self, key: str) -> bool:
        return key in self.data and not self.redo

    def put(self, key: str, value: Any) -> None:
        value = dict(value, load_average=os.getloadavg(), finished=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))
        self.data[key] = value
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        tmp.replace(self.path)
        print(f"{key}: {json.dumps({k: v for k, v in value.items() if k not in ('per_model', 'pool_test')})}", flush=True)


def lossy_peer(arch: str, state: dict, data: protocol.ProtocolData, args: argparse.Namespace) -> dict:
    """nncodec's lossy path under the protocol: search_budget, per-sample validation scores (bound on
    the even samples, confirmed on the odd), OPTQ + bias correction from 4,096 TRAIN images."""
    model = models.build(arch)
    model.load_state_dict(torchify(state))
    t0 = time.monotonic()
    stats = layer_statistics(model, data.train.x[:CALIBRATION])
    r = search_budget(torchify(state), protocol.val_evaluator(arch, data), BUDGET, statistics=stats,
                      max_evals=args.max_evals, progress=False)
    seconds = time.monotonic() - t0
    test = protocol.test_accuracy(arch, nncodec.load(r.data), data)
    return {"bytes": len(r.data), "val_drop": r.baseline - r.score, "val_bound": r.drop_bound, "test": test,
            "evaluations": r.evaluations, "seconds": seconds}


def stage_paper(arch: str, seed: int, latent: int, data: protocol.ProtocolData, store: Store,
                args: argparse.Namespace) -> None:
    key = f"paper/{arch}/s{seed}/l{latent}"
    if key in store:
        return
    state = {k: v.numpy() for k, v in protocol.load_baseline(arch, seed).items()}
    t0 = time.monotonic()
    opt = VaeOptions(latent=latent, hidden=args.hidden, seed=seed, max_drop=BUDGET, max_seconds=args.paper_seconds,
                     val_copies=args.val_copies, latent_factors=tuple(args.latent_factors))
    r = vae_compress(state, vae_evaluator(arch, data), opt, keep_bare=True)
    seconds = time.monotonic() - t0
    base_test = protocol.test_accuracy(arch, torchify(state), data)
    bare_test = protocol.test_accuracy(arch, torchify(nncodec.load(r.bare, framework="np")), data)
    full_test = bare_test if r.data == r.bare else protocol.test_accuracy(
        arch, torchify(nncodec.load(r.data, framework="np")), data)
    store.put(key, {"arch": arch, "seed": seed, "latent": latent, "parameters": r.parameters,
                    "latent_numbers": r.latent_numbers, "raw_bytes": r.raw_bytes, "paper_ratio": r.paper_ratio,
                    "bare_bytes": len(r.bare), "bare_real_ratio": r.raw_bytes / len(r.bare), "file_bytes": len(r.data),
                    "real_ratio": r.real_ratio, "test_original": base_test, "test_bare": bare_test,
                    "test_full": full_test, "val_scores": r.scores[""], "residual_step": r.residual_steps[""],
                    "latent_step": r.latent_steps[""], "latent_step_reconstruction": r.latent_step,
                    "latent_factors": list(opt.latent_factors), "decoder_rel_step": r.decoder_rel_step,
                    "epochs": r.log.epochs, "best_epoch": r.log.best_epoch, "stopped": r.log.stopped,
                    "seconds": seconds, "parts": file_parts(r.data), "bare_parts": file_parts(r.bare)})


def stage_lossy(arch: str, seed: int, data: protocol.ProtocolData, store: Store, args: argparse.Namespace) -> None:
    key = f"lossy/{arch}/s{seed}"
    if key in store:
        return
    state = {k: v.numpy() for k, v in protocol.load_baseline(arch, seed).items()}
    res = lossy_peer(arch, state, data, args)
    res["test_original"] = protocol.test_accuracy(arch, torchify(state), data)
    res["test_drop"] = res["test_original"] - res["test"]
    store.put(key, {"arch": arch, "seed": seed, "raw_bytes": sum(v.nbytes for v in state.values()), **res})


def pool_path(out: Path, seed: int) -> Path:
    return out / f"pool_lenet300_s{seed}.pt"


def stage_checkpoints(seed: int, data: protocol.ProtocolData, store: Store, args: argparse.Namespace) -> None:
    """The converged baseline trained on at a constant Adam LR; a checkpoint every 1/8 epoch."""
    key = f"checkpoints/lenet300/s{seed}"
    path = pool_path(args.out, seed)
    if key in store and path.exists():
        return
    t0 = time.monotonic()
    model = models.build("lenet300")
    model.load_state_dict(protocol.load_baseline("lenet300", seed))
    x, y = data.train.x, data.train.y
    opt = torch.optim.Adam(model.parameters(), lr=args.pool_lr)
    gen = torch.Generator().manual_seed(100 + seed)
    per = len(x) // 8
    pool = [{k: v.detach().clone() for k, v in model.state_dict().items()}]
    model.train()
    while len(pool) < args.pool:
        order = torch.randperm(len(x), generator=gen)
        for q in range(8):
            for i in range(q * per, (q + 1) * per, 128):
                idx = order[i : min(i + 128, (q + 1) * per)]
                opt.zero_grad()
                F.cross_entropy(model(x[idx]), y[idx]).backward()
                opt.step()
            pool.append({k: v.detach().clone() for k, v in model.state_dict().items()})
            if len(pool) == args.pool:
                break
    model.eval()
    torch.save({"pool": pool}, path)
    tests = [protocol.test_accuracy("lenet300", s, data) for s in pool]
    store.put(key, {"seed": seed, "lr": args.pool_lr, "every": "1/8 epoch, batch 128", "seconds": time.monotonic() - t0,
                    "pool_test": tests, "test_min": min(tests), "test_max": max(tests)})


def load_pool(out: Path, seed: int) -> list[dict]:
    return torch.load(pool_path(out, seed), weights_only=True)["pool"]


def pick(n: int, pool: int) -> list[int]:
    return sorted({int(i) for i in np.linspace(0, pool - 1, n).round()}) if n > 1 else [0]


def stage_collection(seed: int, n: int, data: protocol.ProtocolData, store: Store, args: argparse.Namespace) -> None:
    key = f"collection/lenet300/s{seed}/n{n}"
    if key in store:
        return
    pool = load_pool(args.out, seed)
    idx = pick(n, len(pool))
    coll = {f"m{i:02d}": {k: v.numpy() for k, v in pool[i].items()} for i in idx}
    t0 = time.monotonic()
    opt = VaeOptions(latent=args.latent, hidden=args.hidden, seed=seed, max_drop=BUDGET,
                     max_seconds=args.coll_seconds.get(n, args.coll_seconds[max(args.coll_seconds)]), val_copies=1,
                     latent_factors=tuple(args.latent_factors))
    r = vae_compress(coll, vae_evaluator("lenet300", data), opt)
    seconds = time.monotonic() - t0
    per_model = []
    for i in idx:
        name = f"m{i:02d}"
        orig = protocol.test_accuracy("lenet300", pool[i], data)
        dec = protocol.test_accuracy("lenet300", torchify(load_model(r.data, name, framework="np")), data)
        per_model.append({"index": i, "test_original": orig, "test": dec, "drop": orig - dec,
                          "residual_step": r.residual_steps[name], "latent_step": r.latent_steps[name],
                          "val_scores": r.scores[name]})
    drops = [m["drop"] for m in per_model]
    store.put(key, {"seed": seed, "models": len(idx), "file_bytes": len(r.data), "bytes_per_model": len(r.data) / len(idx),
                    "paper_ratio": r.paper_ratio, "real_ratio": r.real_ratio, "parts": file_parts(r.data),
                    "latent_step": r.latent_step, "latent_factors": list(opt.latent_factors),
                    "decoder_rel_step": r.decoder_rel_step, "test_drop_mean": float(np.mean(drops)), "test_drop_max": float(np.max(drops)),
                    "within_1pt": int(sum(d <= BUDGET for d in drops)),
                    "with_residual": int(sum(m["residual_step"] is not None for m in per_model)),
                    "epochs": r.log.epochs, "best_epoch": r.log.best_epoch, "stopped": r.log.stopped,
                    "max_seconds": opt.max_seconds, "seconds": seconds, "per_model": per_model})


def stage_lossy_checkpoint(seed: int, index: int, data: protocol.ProtocolData, store: Store,
                           args: argparse.Namespace) -> None:
    key = f"lossy_checkpoint/lenet300/s{seed}/i{index}"
    if key in store:
        return
    state = {k: v.numpy() for k, v in load_pool(args.out, seed)[index].items()}
    res = lossy_peer("lenet300", state, data, args)
    res["test_original"] = protocol.test_accuracy("lenet300", torchify(state), data)
    res["test_drop"] = res["test_original"] - res["test"]
    store.put(key, {"seed": seed, "index": index, **res})


# ------------------------------------------------------------------------------------------- report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=protocol.DATA_DIR, help="directory with the Fashion-MNIST IDX files")
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_vae"))
    ap.add_argument("--stages", nargs="+", default=[],
                    choices=("paper", "lossy", "checkpoints", "collection", "lossy_checkpoints"))
    ap.add_argument("--redo", action="store_true", help="recompute the selected units even if stored (replace them)")
    ap.add_argument("--report", action="store_true", help="print the tables and write the plot from the results")
    ap.add_argument("--archs", nargs="+", choices=protocol.ARCHS, default=["lenet300"], help="paper / lossy stages")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(protocol.SEEDS))
    ap.add_argument("--latents", type=int, nargs="+", default=[64, 128], help="paper stage")
    ap.add_argument("--sizes", type=int, nargs="+", default=[4, 16, 64], help="collection stage (1 = paper's l64 row)")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--latent", type=int, default=64, help="collection stage: latent size")
    ap.add_argument("--max-evals", type=int, default=80, help="lossy path: search_budget's hard cap")
    ap.add_argument("--paper-seconds", type=float, default=60.0, help="paper stage: wall-clock cap of VAE training")
    ap.add_argument("--coll-seconds", default="4:60,16:90,64:150",
                    help="collection stage: wall-clock cap of VAE training per size (size:seconds,...)")
    ap.add_argument("--latent-factors", type=int, nargs="+", default=list(LATENT_FACTORS),
                    help="VAE: candidate latent steps per model, x the reconstruction rule's step (the budget picks "
                         "the one that codes smallest); 1 alone = the reconstruction rule (the stored tables)")
    ap.add_argument("--val-copies", type=int, default=5, help="paper stage: noisy validation copies (the paper: 20)")
    ap.add_argument("--pool", type=int, default=POOL, help="checkpoints stage: models in a pool (the baseline + checkpoints)")
    ap.add_argument("--lossy-indices", type=int, nargs="+", default=[POOL - 1],
                    help="lossy_checkpoints stage: pool models to code with the lossy path (0 is the lossy stage's)")
    ap.add_argument("--pool-lr", type=float, default=2e-4, help="checkpoints stage: constant Adam LR")
    args = ap.parse_args()
    args.coll_seconds = {int(k): float(v) for k, v in (p.split(":") for p in args.coll_seconds.split(","))}
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.report:
        report(args.out)
        return
    data = protocol.load(args.data)
    store = Store(args.out / "vae_results.json", redo=args.redo)
    t0 = time.monotonic()
    for stage in args.stages:
        for seed in args.seeds:
            if stage == "paper":
                for arch in args.archs:
                    for latent in args.latents:
                        stage_paper(arch, seed, latent, data, store, args)
            elif stage == "lossy":
                for arch in args.archs:
                    stage_lossy(arch, seed, data, store, args)
            elif stage == "checkpoints":
                stage_checkpoints(seed, data, store, args)
            elif stage == "collection":
                for n in args.sizes:
                    stage_collection(seed, n, data, store, args)
            else:
                for index in args.lossy_indices:
                    stage_lossy_checkpoint(seed, index, data, store, args)
    print(f"total {time.monotonic() - t0:.0f} s")


if __name__ == "__main__":
    main()
