"""Diagnostic: continue bench_own_loop.py's dense run from its cached peer and extend the validation curve.

    nice -n 10 python benchmarks/lm_curve_continue.py --out /work/artifacts/reruns/lm_s0 --steps 6000 --every 600

Starts from dense-peer.pt (the dense run's step dense_steps + 600) with a fresh Adam at the same
constant learning rate (the optimizer state is not cached) and a batch stream of its own, and
writes curve-continued.json. It changes nothing the pipeline uses; it tells how far from flat the
dense model was.
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--every", type=int, default=600)
    a = ap.parse_args()
    torch.set_num_threads(1)
    info = json.loads((a.out / "dense.json").read_text())
    cfg = dict(info["config"])
    args = argparse.Namespace(**{k: cfg[k] for k in ("text", "ctx", "batch", "width", "layers", "heads", "ff", "lr", "seed",
                                                     "eval_windows")})
    bench = B.Bench(args)
    model = B.build(bench, args.seed)
    model.load_state_dict(torch.load(a.out / "dense-peer.pt", weights_only=True))
    start = info["peer_steps"]
    curve = [(start, bench.loss(model, bench.val))]

    def mark(step: int) -> None:
        if step % a.every == 0 or step == a.steps:
            curve.append((start + step, bench.loss(model, bench.val)))
            print(f"  step {start + step}: validation loss {curve[-1][1]:.4f}", flush=True)

    t0 = time.perf_counter()
    bench.train(model, a.steps, 7919 + args.seed, args.lr, on_step=mark)
    res = {"from": "dense-peer.pt", "fresh_adam": True, "curve": curve, "seconds": time.perf_counter() - t0,
           "load_average": os.getloadavg()}
    (a.out / "curve-continued.json").write_text(json.dumps(res, indent=1))
    print(f"validation {curve[0][1]:.4f} at step {start} -> {curve[-1][1]:.4f} at step {curve[-1][0]} "
          f"({100 * (curve[-1][1] / curve[0][1] - 1):+.2f} %)")


if __name__ == "__main__":
    main()
