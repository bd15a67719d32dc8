"""Regenerate nncodec/data/demo_mlp.safetensors, the model `nncodec demo` encodes.

A 784-64-10 ReLU MLP trained for a few epochs on Fashion-MNIST with a fixed seed (~50 k float32
parameters, ~200 kB). Usage:

    python benchmarks/make_demo_checkpoint.py --data ../shared/data/fashion-mnist
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from nncodec_cli.presets.fashion_mnist import load_fashion_mnist
from nncodec_cli.presets.lenet import evaluate, train

import nncodec
from nncodec.io import write_checkpoint

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "nncodec" / "data" / "demo_mlp.safetensors"
MAX_BYTES = 250_000


def mlp() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="directory with the Fashion-MNIST IDX .gz files")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    torch.set_num_threads(1)  # fewer sources of run-to-run float differences
    x_train, y_train = load_fashion_mnist(args.data, "train")
    x_test, y_test = load_fashion_mnist(args.data, "test")
    torch.manual_seed(args.seed)
    model = train(mlp(), x_train, y_train, epochs=args.epochs, seed=args.seed)  # Adam 1e-3, cosine, batch 128
    acc = evaluate(model, x_test, y_test) / 100.0
    # Names without the Sequential's indices of parameter-free layers would be nicer, but keeping
    # torch's own names means load_state_dict works on mlp() as is.
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    metadata = {
        "arch": "mlp-784-64-10 (Flatten, Linear, ReLU, Linear)",
        "dataset": "fashion-mnist",
        "test_accuracy": f"{acc:.4f}",
        "epochs": str(args.epochs),
        "seed": str(args.seed),
        "input_normalisation": "(x/255 - 0.2860) / 0.3530",
        "made_by": "benchmarks/make_demo_checkpoint.py",
        "torch": torch.__version__,
        "nncodec": nncodec.__version__,
    }
    size = write_checkpoint(state, args.out, metadata, overwrite=True)
    print(f"wrote {args.out}: {size:,} bytes, test accuracy {acc:.2%}")
    if size > MAX_BYTES:
        print(f"error: {size} bytes is over the {MAX_BYTES}-byte budget for a file shipped in the package", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
