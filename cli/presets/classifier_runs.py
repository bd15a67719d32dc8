"""The LeNet / Fashion-MNIST side of the ready-made pruning runs (`nncodec prune --arch`,
benchmarks/bench_prune.py, bench_spike_slab.py): the IDX data as recipes.ClassifierData under the
protocol's split, and the dense baseline of a built-in LeNet. The pruning, quantization and report
(nncodec.compress.training.recipes, nncodec.compress.spike_slab.recipe) work on any classifier.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nncodec.compress.training.loop import Callback, Runtime, run_epochs
from nncodec.compress.training.recipes import (
    BATCH_SIZE,
    VALIDATION,
    ClassifierData,
    Split,
    load_state,
    make_loader,
    save_state,
)
from nncodec.compress.training.targets import select_parameters
from nncodec.errors import UnsupportedInputError

from . import lenet
from .fashion_mnist import load_fashion_mnist, preprocess, train_validation_split


def load_data(data_dir: str | os.PathLike, validation: int = VALIDATION) -> ClassifierData:
    """Fashion-MNIST (or MNIST) from an IDX directory, split as the evaluation protocol says
    (fashion_mnist.train_validation_split): train minus the last `validation` images, those images as
    validation, and the test split; inputs normalised as the LeNets expect (fashion_mnist.preprocess)."""
    (xi, yi), (xv, yv) = train_validation_split(*load_fashion_mnist(data_dir, "train"), validation)
    xt, yt = load_fashion_mnist(data_dir, "test")

    def split(x: np.ndarray, y: np.ndarray) -> Split:
        return Split(preprocess(x), torch.from_numpy(y.astype(np.int64)))

    return ClassifierData(split(xi, yi), split(xv, yv), split(xt, yt))


def train_dense(arch: str, data: ClassifierData, epochs: int, *, lr: float = 1e-3, batch_size: int = BATCH_SIZE,
                seed: int = 0, device: str = "cpu", progress: bool = True, callback: Callback | None = None,
                cache: str | os.PathLike | None = None) -> nn.Module:
    """The dense baseline (plain Adam), loaded from `cache` when that file exists, else trained and saved there."""
    torch.manual_seed(seed)
    model = lenet.build(arch)
    if cache is not None and Path(cache).exists():
        try:
            model.load_state_dict(load_state(cache))
        except RuntimeError as e:
            raise UnsupportedInputError(f"{cache}: not a {arch} checkpoint ({str(e).splitlines()[0]})") from None
        return model.to(device).eval()
    rt = Runtime(device, seed, progress, callback)
    model.to(rt.device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    run_epochs(model, make_loader(data.train, batch_size, seed), F.cross_entropy, opt, epochs, rt, phase="dense",
               params=select_parameters(model))
    if cache is not None:
        save_state(model, cache)
    return model.eval()
