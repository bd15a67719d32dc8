"""1 process vs 2 DDP processes (torchrun, gloo) for bench_own_loop.py's compression pipeline:
interleaved runs (1, 2, 1, 2, ...), medians, their ratio, the load average around every run.

    nice -n 10 python benchmarks/time_own_loop.py --from /work/artifacts/reruns/lm_s0 --out /tmp/lm_time \
        --deadline 21:59:30 -- --method drr --alpha 2e-5

The dense model and its peer are copied from --from (bench_own_loop.py trains and caches them), so
every run times the same pipeline: regularised steps, prune, fine-tuning, quantization search,
save. Pairs are started only while the slower kind's longest run so far (x 1.15) still ends before
--deadline (UTC, today), so the run stays inside its quiet window. Each process uses one torch thread.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(kind: int, out: Path, extra: list[str]) -> dict:
    script = str(HERE / "bench_own_loop.py")
    cmd = ([sys.executable, script] if kind == 1 else
           [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533", script])
    env = dict(os.environ, OMP_NUM_THREADS="1")
    before = os.getloadavg()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd + ["--out", str(out), *extra], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{kind}-process run failed:\n{proc.stderr[-2000:]}")
    files = sorted(out.glob(f"result-*-world{kind}.json"), key=lambda p: p.stat().st_mtime)
    res = json.loads(files[-1].read_text())
    return {"processes": kind, "process_wall": wall, "pipeline": res["seconds"]["pipeline"], "phases": res["seconds"],
            "file_bytes": res["file_bytes"], "val_increase": res["val_increase"], "load_before": before,
            "load_after": os.getloadavg(), "started": dt.datetime.now(dt.UTC).strftime("%H:%M:%S")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--from", dest="src", type=Path, required=True, help="bench_own_loop --out with the cached dense model")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--deadline", required=True, help="HH:MM:SS UTC today (or +SECONDS from now): no run may end after it")
    ap.add_argument("--max-pairs", type=int, default=10)
    ap.add_argument("--guess", type=float, default=150.0, help="seconds a run is assumed to take before one was timed")
    ap.add_argument("extra", nargs="*", help="arguments for bench_own_loop.py (after --)")
    a = ap.parse_args()
    now = dt.datetime.now(dt.UTC)
    if a.deadline.startswith("+"):
        deadline = now + dt.timedelta(seconds=float(a.deadline[1:]))
    else:
        h, m, s = map(int, a.deadline.split(":"))
        deadline = now.replace(hour=h, minute=m, second=s, microsecond=0)
    a.out.mkdir(parents=True, exist_ok=True)
    for name in ("dense.pt", "dense-peer.pt", "dense.json"):
        shutil.copy(a.src / name, a.out / name)
    runs: list[dict] = []
    guess = {1: a.guess, 2: a.guess}
    for _ in range(a.max_pairs):
        for kind in (1, 2):
            longest = max([r["process_wall"] for r in runs if r["processes"] == kind], default=guess[kind])
            if dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1.15 * longest) > deadline:
                break
            runs.append(run(kind, a.out, a.extra))
            print(json.dumps(runs[-1]), flush=True)
        else:
            continue
        break
    pairs = min(sum(r["processes"] == 1 for r in runs), sum(r["processes"] == 2 for r in runs))
    summary: dict = {"runs": runs, "pairs": pairs, "args": a.extra}
    for key in ("pipeline", "process_wall"):
        med = {k: statistics.median([r[key] for r in runs if r["processes"] == k] or [float("nan")]) for k in (1, 2)}
        summary[key] = {"median_1": med[1], "median_2": med[2], "speedup": med[1] / med[2]}
    summary["load_range"] = [min(r["load_before"][0] for r in runs), max(r["load_after"][0] for r in runs)] if runs else None
    (a.out / "timing.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=1))


if __name__ == "__main__":
    main()
