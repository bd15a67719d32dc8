"""Is the coder or the search why nncodec's data-free files were larger than NNCodec's? (issue 8 diagnosis)

    nice -n 10 python benchmarks/lossy_coder_vs_nnr.py [--arch lenet300] [--seed 0] [--qps -34 -30 -26 -22 -18]

Weights only, no accuracy (so no data, no protocol split involved): each weight tensor of the baseline is
coded ALONE by NNCodec 2.1.3 (dependent quantization on, no opt-qp, at each QP; its own venv, as
bench_lossy.py runs it), and nncodec quantizes the same tensor by plain rounding with one step per tensor
at (a) NNCodec's reconstruction grid and (b) the step whose mean squared error equals NNCodec's (bisection),
coding the levels and mask with its own codecs (`prefer=balanced`, contexts on). The ratio at equal MSE is
what the coder and quantizer cost against DeepCABAC + trellis quantization at the same fidelity.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_lossy  # noqa: E402
import protocol  # noqa: E402

from nncodec import codecs  # noqa: E402
from nncodec.codecs.base import EncodeOptions  # noqa: E402
from nncodec.compress.uniform import levels_to_quant_tensor, quantize_uniform  # noqa: E402
from nncodec.dtypes import dtype_by_name  # noqa: E402

OPTIONS = EncodeOptions(prefer="balanced", contexts=True)
F32 = dtype_by_name("float32")


def coded_bytes(levels: np.ndarray, step: float) -> int:
    """Bytes of the levels (+ mask when zeros are masked out, whichever is smaller) and the step."""
    best = None
    for zeros in ("mask", "levels"):
        t = levels_to_quant_tensor(levels, F32, np.float32(step), None, zeros=zeros)
        rows = codecs.levels_ctx.row_counts(t.shape, t.mask)
        n = len(codecs.levels.encode(t.levels, OPTIONS, rows).payload) + 4
        n += len(codecs.mask.encode(t.mask, OPTIONS).payload) if t.mask is not None else 0
        best = n if best is None else min(best, n)
    return best


def ours(x: np.ndarray, step: float) -> tuple[int, float]:
    t = quantize_uniform(x, F32, np.float32(step))
    levels = t.levels.reshape(x.shape)
    return coded_bytes(levels, step), float(np.mean((levels * np.float64(np.float32(step)) - x) ** 2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="lenet300")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--qps", type=int, nargs="+", default=[-34, -30, -26, -22, -18])
    ap.add_argument("--nnr-venv", type=Path, default=bench_lossy.NNR_VENV)
    a = ap.parse_args()
    py = bench_lossy.nnr_python(a.nnr_venv)
    if py is None:
        sys.exit(f"NNCodec 2.1.3 not available at {a.nnr_venv}")
    from safetensors.numpy import load_file, save_file

    state = load_file(str(protocol.baseline_path(a.arch, a.seed)))
    print("| tensor | QP | NNCodec bytes | NNCodec rel. RMSE | nncodec bytes at NNCodec's grid (rel. RMSE) "
          "| nncodec step at equal MSE | nncodec bytes at equal MSE | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, w in state.items():
            if w.ndim < 2:
                continue
            x = w.astype(np.float64)
            rms = float(np.sqrt(np.mean(x * x)))
            ck = Path(tmp) / f"{name}.safetensors"
            save_file({name: np.ascontiguousarray(w)}, str(ck))
            out = Path(tmp) / name
            out.mkdir()
            rows = bench_lossy.run_nnr(py, ck, a.qps, False, out)
            for r in rows:
                dec = load_file(r["decoded"])[name].astype(np.float64)
                mse = float(np.mean((dec - x) ** 2))
                u = np.diff(np.unique(dec))
                grid = float(u[u > 1e-12].min())
                b_grid, mse_grid = ours(x, grid)
                lo, hi = grid * 0.5, grid * 8  # equal MSE: bisection on the step (MSE grows with it)
                for _ in range(12):
                    mid = float(np.sqrt(lo * hi))
                    lo, hi = (lo, mid) if ours(x, mid)[1] > mse else (mid, hi)
                b_eq, _ = ours(x, lo)
                print(f"| {name} | {r['qp']} | {r['bytes']:,} | {np.sqrt(mse) / rms:.3f} | {b_grid:,} "
                      f"({np.sqrt(mse_grid) / rms:.3f}) | {lo / rms:.2f} x RMS | {b_eq:,} | {b_eq / r['bytes']:.2f} |",
                      flush=True)
    print(json.dumps({"arch": a.arch, "seed": a.seed, "qps": a.qps}))


if __name__ == "__main__":
    main()
