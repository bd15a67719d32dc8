"""What each named lossy configuration costs in accuracy, on a real model (the README's table).

The model is the demo MLP shipped in the package (784-64-10, trained on Fashion-MNIST). Every
configuration of `nncodec.compress.config.CONFIGS` (and lossless coding) encodes it to a whole .nnc
file; the file is decoded and scored on the validation split (the last 5,000 training images) and on
the test set. Nothing is tuned here: the configs are fixed, so test accuracy is only reported. The
encodes are deterministic, so one run per config (no seeds involved). Usage:

    python benchmarks/bench_configs.py --data /path/to/fashion-mnist [--markdown]
"""

from __future__ import annotations

import argparse
import time
from importlib import resources

import numpy as np
import torch
from nncodec_cli.presets.fashion_mnist import load_fashion_mnist
from nncodec_cli.presets.lenet import evaluate

import nncodec
from nncodec.compress.config import CONFIGS, make_compressor
from nncodec.io import read_checkpoint

VALIDATION = 5_000  # the fixed split: the last 5,000 training images are validation


def mlp() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="directory with the Fashion-MNIST IDX .gz files")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table (for the README)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    x_train, y_train = load_fashion_mnist(args.data, "train")
    x_val, y_val = x_train[-VALIDATION:], y_train[-VALIDATION:]
    x_test, y_test = load_fashion_mnist(args.data, "test")
    with resources.as_file(resources.files("nncodec") / "data" / "demo_mlp.safetensors") as path:
        tensors, meta, _ = read_checkpoint(path)
    model = mlp()
    f32 = 4 * sum(int(np.prod(t.shape)) for t in tensors.values())

    rows = []
    for name in ["lossless", *CONFIGS]:
        compressor = None if name == "lossless" else make_compressor(name, tensors=tensors)
        t0 = time.perf_counter()
        data = nncodec.save(tensors, compressor=compressor)
        seconds = time.perf_counter() - t0
        with nncodec.open(data) as f:
            decoded = {k: f.get_tensor(k) for k in f}
            summary = f.error_summary() or {}
            sparsity = [t.get("sparsity", 0.0) for t in f.info()["tensors"] if len(t.get("shape", [])) >= 2]
        val = evaluate(model, x_val, y_val, state=decoded)
        test = evaluate(model, x_test, y_test, state=decoded)
        rel = summary.get("weights", {}).get("rel_l2", 0.0)
        rows.append((name, len(data), f32 / len(data), rel, max(sparsity, default=0.0), val, test, seconds))

    base_val, base_test = rows[0][5], rows[0][6]
    if args.markdown:
        print("| config | file bytes | × vs float32 | weights' rel. L2 error | zeros | validation acc. | "
              "test acc. (Δ vs lossless) |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name, size, ratio, rel, zeros, val, test, _ in rows:
            delta = "" if name == "lossless" else f" ({test - base_test:+.2f})"
            print(f"| `{name}` | {size:,} | ×{ratio:.1f} | {rel:.1%} | {zeros:.0%} | {val:.2f} % | {test:.2f} %{delta} |")
    else:
        print(f"{'config':<12}{'bytes':>9}{'ratio':>8}{'rel L2':>9}{'zeros':>7}{'val %':>8}{'test %':>8}{'d test':>8}{'enc s':>7}")
        for name, size, ratio, rel, zeros, val, test, seconds in rows:
            print(f"{name:<12}{size:>9,}{ratio:>8.1f}{rel:>9.2%}{zeros:>7.0%}{val:>8.2f}{test:>8.2f}"
                  f"{test - base_test:>+8.2f}{seconds:>7.2f}")
    print(f"\nvalidation = last {VALIDATION:,} training images ({base_val:.2f} % lossless), test = the 10,000 "
          f"test images; float32 size {f32:,} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
