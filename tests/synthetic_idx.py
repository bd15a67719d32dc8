"""A tiny Fashion-MNIST-shaped IDX directory for CLI and training tests: class k images are bright
in row block k, so a small network learns them in an epoch. Same seed, same files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np


def write_idx(path: Path, arr: np.ndarray) -> None:
    """One gzipped IDX file of unsigned bytes (the format of the MNIST/Fashion-MNIST files)."""
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in arr.shape)
    path.write_bytes(gzip.compress(header + arr.astype(np.uint8).tobytes()))


def write_tiny_idx(directory: Path, train: int, test: int) -> Path:
    """train-* and t10k-* image and label files with `train` and `test` samples in `directory`."""
    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("t10k", test)):
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 60, (n, 28, 28))
        for k in range(10):
            images[labels == k, 2 * k + 4 : 2 * k + 7, 4:24] += 180
        write_idx(directory / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(directory / f"{split}-labels-idx1-ubyte.gz", labels)
    return directory
