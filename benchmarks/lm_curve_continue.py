"""Continue bench_own_loop.py's dense run from its cached peer: a diagnostic curve, or an annealed dense model.

    nice -n 10 python benchmarks/lm_curve_continue.py --out /work/artifacts/reruns/lm_s0 --steps 6000 --every 600
    nice -n 10 python benchmarks/lm_curve_continue.py --out /work/artifacts/reruns/lm_s0 --anneal 2000 \
        --dest /work/artifacts/s4/lm_anneal --every 500

Both start from dense-peer.pt (the dense run's step dense_steps + 600, constant learning rate) with a
fresh Adam (the optimizer state is not cached) and a batch stream of their own.

Without --anneal: the constant learning rate goes on; writes curve-continued.json (how far from
flat the dense model was). With --anneal N: two runs from the same start and the same batch stream,
each decaying the learning rate from --lr to 0 by a cosine: N steps (the dense model) and
--longer x N steps (the convergence check and the peer). The dense model is converged ("verified")
when the longer run's validation loss is not better than the dense model's by more than --tol
(relative; fixed before looking). If it is, the longer run becomes the dense model and the claim is
"not verified". The longer run is also the peer: it has (longer - 1) x N steps more than the dense
model, which bounds the compression pipeline's steps (bench_own_loop.py refuses more), so the
compressed model gets no training its baseline did not get. --dest then holds dense.pt,
dense-peer.pt and dense.json in bench_own_loop.py's layout (run it with the dense.json's
--dense-schedule).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_own_loop as B  # noqa: E402


def run(bench: B.Bench, start: Path, first: int, steps: int, every: int, lr: float, seed: int, schedule: str):
    """(model, validation curve, seconds) of `steps` steps from checkpoint `start` (whose step is `first`)."""
    model = B.build(bench, bench.args.seed)
    model.load_state_dict(torch.load(start, weights_only=True))
    curve = [(first, bench.loss(model, bench.val))]

    def mark(step: int) -> None:
        if step % every == 0 or step == steps:
            curve.append((first + step, bench.loss(model, bench.val)))
            print(f"  step {first + step}: validation loss {curve[-1][1]:.4f}", flush=True)

    t0 = time.perf_counter()
    bench.train(model, steps, seed, lr, on_step=mark, schedule=schedule)
    return model, curve, time.perf_counter() - t0


def verdict(dense_val: float, longer_val: float, tol: float) -> bool:
    """Converged: the longer run is not better than the dense model by more than `tol` (relative)."""
    return longer_val >= dense_val * (1 - tol)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="bench_own_loop.py's directory of the constant-lr run")
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--every", type=int, default=600)
    ap.add_argument("--anneal", type=int, default=None, help="steps of the cosine decay of the dense model")
    ap.add_argument("--longer", type=float, default=1.5, help="the convergence check's run, in units of --anneal")
    ap.add_argument("--tol", type=float, default=0.005, help="convergence tolerance on validation (relative)")
    ap.add_argument("--dest", type=Path, default=None, help="--anneal: the new directory of dense model and peer")
    a = ap.parse_args()
    torch.set_num_threads(1)
    info = json.loads((a.out / "dense.json").read_text())
    cfg = dict(info["config"])
    args = argparse.Namespace(**{k: cfg[k] for k in ("text", "ctx", "batch", "width", "layers", "heads", "ff", "lr", "seed",
                                                     "eval_windows")})
    bench = B.Bench(args)
    start, first, seed = a.out / "dense-peer.pt", info["peer_steps"], 7919 + args.seed
    if a.anneal is None:
        _, curve, seconds = run(bench, start, first, a.steps, a.every, args.lr, seed, "constant")
        res = {"from": "dense-peer.pt", "fresh_adam": True, "curve": curve, "seconds": seconds,
               "load_average": os.getloadavg()}
        (a.out / "curve-continued.json").write_text(json.dumps(res, indent=1))
        print(f"validation {curve[0][1]:.4f} at step {first} -> {curve[-1][1]:.4f} at step {curve[-1][0]} "
              f"({100 * (curve[-1][1] / curve[0][1] - 1):+.2f} %)")
        return
    if a.dest is None:
        raise SystemExit("--anneal needs --dest")
    n, m = a.anneal, round(a.longer * a.anneal)
    dense, c_dense, s_dense = run(bench, start, first, n, a.every, args.lr, seed, "cosine")
    longer, c_longer, s_longer = run(bench, start, first, m, a.every, args.lr, seed, "cosine")
    v_dense, v_longer = c_dense[-1][1], c_longer[-1][1]
    converged = verdict(v_dense, v_longer, a.tol)
    a.dest.mkdir(parents=True, exist_ok=True)
    torch.save((dense if converged else longer).state_dict(), a.dest / "dense.pt")
    torch.save(longer.state_dict(), a.dest / "dense-peer.pt")
    schedule = f"constant{first}+cosine{n}"
    res = {"dense_steps": first + (n if converged else m), "peer_steps": first + m,
           "peer_extra_steps": m - n if converged else None, "converged": converged,
           "convergence": {"tol": a.tol, "dense_val": v_dense, "longer_val": v_longer, "change": v_longer / v_dense - 1,
                           "dense_anneal": n, "longer_anneal": m, "verified": converged},
           "curve": c_dense, "curve_longer": c_longer, "val_at_dense": v_dense if converged else v_longer,
           "best_val": min(v_dense, v_longer), "dense_seconds": round(info["dense_seconds"] + s_dense, 1),
           "anneal_seconds": [round(s_dense, 1), round(s_longer, 1)], "steps_per_epoch": info["steps_per_epoch"],
           "tail_change": v_longer / v_dense - 1, "load_average": os.getloadavg(),
           "from": {"dir": str(a.out), "checkpoint": "dense-peer.pt", "step": first, "fresh_adam": True,
                    "batch_seed": seed},
           "config": {**cfg, "dense_schedule": schedule if converged else f"constant{first}+cosine{m}"}}
    (a.dest / "dense.json").write_text(json.dumps(res))
    print(f"annealed: validation {v_dense:.4f} after {n} cosine steps, {v_longer:.4f} after {m} "
          f"({100 * res['tail_change']:+.2f} %; tolerance {100 * a.tol:.1f} %): converged "
          f"{'verified' if converged else 'NOT verified'}; --dense-schedule {res['config']['dense_schedule']}")


if __name__ == "__main__":
    main()
