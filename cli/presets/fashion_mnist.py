"""The Fashion-MNIST preset: its IDX files under the standard names, the evaluation protocol's fixed
train / validation / test split, and the input normalisation the built-in LeNets (presets.lenet) expect.

Used by `nncodec budget` / `nncodec prune` with `--data DIR`, the benchmarks and the demo-checkpoint
script; the package never downloads anything. The IDX bytes are parsed by nncodec.mdl.idx.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from nncodec.errors import BadArgumentError, UnsupportedInputError
from nncodec.mdl.idx import read_idx

MEAN, STD = 0.2860, 0.3530
SPLIT_PREFIX = {"train": "train", "test": "t10k"}


def preprocess(images: np.ndarray) -> torch.Tensor:
    """uint8 images [N, 28, 28] (or [N, 784]) -> normalised float32 tensor [N, 784]."""
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8).reshape(len(images), -1))
    return (x.to(torch.float32) / 255.0 - MEAN) / STD


def _find(directory: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f"{directory / stem}[.gz] not found (expected the standard MNIST file names)")


def load_fashion_mnist(data_dir: str | os.PathLike, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 28, 28], labels uint8 [N]) of a Fashion-MNIST (or MNIST) split in `data_dir`,
    stored under the standard file names (``train-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz``...)."""
    if split not in SPLIT_PREFIX:
        raise BadArgumentError(f"split must be 'train' or 'test', not {split!r}")
    d = Path(data_dir)
    prefix = SPLIT_PREFIX[split]
    images = read_idx(_find(d, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_find(d, f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise UnsupportedInputError(f"{d}: {split} images {images.shape} and labels {labels.shape} do not match")
    return images, labels


# The evaluation protocol's fixed split (benchmarks/PROTOCOL.md): the LAST 5,000 images of the training
# file are validation, the first 55,000 train; the test file is scored once, at the end, and never
# used for a choice.
VALIDATION_SIZE = 5000


def train_validation_split(images: np.ndarray, labels: np.ndarray, validation: int = VALIDATION_SIZE
                           ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """((train images, labels), (validation images, labels)): the last `validation` samples are held out."""
    if len(images) != len(labels):
        raise BadArgumentError(f"{len(images)} images but {len(labels)} labels")
    if not 0 < validation < len(images):
        raise BadArgumentError(f"{len(images)} training images are too few to hold out {validation} for validation")
    cut = len(images) - validation
    return (images[:cut], labels[:cut]), (images[cut:], labels[cut:])


def load_protocol_splits(data_dir: str | os.PathLike, validation: int = VALIDATION_SIZE
                         ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train", "validation", "test"} -> (uint8 images, labels) of an IDX directory under the fixed split."""
    train, val = train_validation_split(*load_fashion_mnist(data_dir, "train"), validation)
    return {"train": train, "validation": val, "test": load_fashion_mnist(data_dir, "test")}
