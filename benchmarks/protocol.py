"""The evaluation protocol of every benchmark, in code (written down in benchmarks/PROTOCOL.md).

    from protocol import load, val_evaluator, test_accuracy, load_baseline
    data = load("/work/shared/data/fashion-mnist")      # train 55,000 / validation 5,000 / test 10,000
    evaluate = val_evaluator("lenet300", data)          # state dict -> per-sample 0/100 on validation
    ...choose everything with `evaluate` (or data.train / data.val)...
    acc = test_accuracy("lenet300", chosen_state, data)  # once, at the end

Fashion-MNIST: the first 55,000 images of train-images-idx3-ubyte are train, the LAST 5,000 are
validation (nncodec_cli.presets.fashion_mnist.train_validation_split), t10k is test. Every choice (budget search,
hyper-parameters, thresholds, epochs, early stopping) sees train and validation only; the test split
is scored once per reported model and is what the tables report.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from nncodec_cli.presets import lenet
from nncodec_cli.presets.fashion_mnist import VALIDATION_SIZE, load_protocol_splits, preprocess

from nncodec.confidence import DEFAULT_CONFIDENCE, PairedDrop, half_drops, paired_drop

TRAIN_SIZE, TEST_SIZE = 55_000, 10_000
DATA_DIR = os.environ.get("NNCODEC_DATA", "/work/shared/data/fashion-mnist")
BASELINES = Path(os.environ.get("NNCODEC_BASELINES", "/work/artifacts/baselines"))
ARCHS = ("lenet300", "lenet5")
SEEDS = (0, 1, 2)
NAMES = {"lenet300": "LeNet-300-100", "lenet5": "LeNet-5-Caffe"}

__all__ = ["ARCHS", "BASELINES", "DATA_DIR", "DEFAULT_CONFIDENCE", "NAMES", "SEEDS", "Split", "ProtocolData",
           "load", "correct", "accuracy", "val_evaluator", "test_accuracy", "paired_drop", "PairedDrop",
           "baseline_path", "load_baseline", "baseline_info", "bits_hex", "hex_bits", "pooled_halves"]


@dataclass(frozen=True)
class Split:
    x: torch.Tensor  # float32 [N, 784], normalised as nncodec_cli.presets.fashion_mnist.preprocess does (the model's input)
    y: torch.Tensor  # int64 [N]
    name: str

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class ProtocolData:
    train: Split
    val: Split
    test: Split
    images: dict[str, np.ndarray]  # the uint8 images of each split, for code that wants raw pixels


def load(data_dir: str | os.PathLike = DATA_DIR, *, strict: bool = True) -> ProtocolData:
    """The three splits. `strict` checks the Fashion-MNIST sizes (55,000 / 5,000 / 10,000)."""
    raw = load_protocol_splits(data_dir, VALIDATION_SIZE)
    if strict:
        sizes = {k: len(v[1]) for k, v in raw.items()}
        if sizes != {"train": TRAIN_SIZE, "validation": VALIDATION_SIZE, "test": TEST_SIZE}:
            raise ValueError(f"{data_dir}: split sizes {sizes} are not the protocol's 55,000 / 5,000 / 10,000")
    splits = {k: Split(preprocess(x), torch.from_numpy(y.astype(np.int64)), k) for k, (x, y) in raw.items()}
    return ProtocolData(splits["train"], splits["validation"], splits["test"], {k: v[0] for k, v in raw.items()})


def correct(arch_or_model: str | torch.nn.Module, state: Mapping[str, Any] | None, split: Split) -> np.ndarray:
    """Per-sample 0/1 correctness (bool [N]) of a model (or an architecture with `state`) on a split."""
    model = lenet.build(arch_or_model) if isinstance(arch_or_model, str) else arch_or_model
    return lenet.correctness(model, split.x, split.y, state=state)


def accuracy(arch_or_model: str | torch.nn.Module, state: Mapping[str, Any] | None, split: Split) -> float:
    return 100.0 * float(correct(arch_or_model, state, split).mean())


def val_evaluator(arch: str, data: ProtocolData) -> Callable[[Mapping[str, Any]], np.ndarray]:
    """state dict -> per-sample correctness on VALIDATION in percent points (0 or 100 per sample; the
    mean is the accuracy in %): the evaluator to hand to nncodec.compress_to_budget and to sweeps."""
    return lenet.make_evaluator(arch, data.val.x, data.val.y.numpy(), per_sample=True)


def test_accuracy(arch: str, state: Mapping[str, Any], data: ProtocolData) -> float:
    """Test accuracy in % of a finished model: call once per reported model, never inside a choice."""
    return accuracy(arch, state, data.test)


def bits_hex(correct: np.ndarray) -> str:
    """Per-sample 0/1 correctness, packed for a JSON row (the pooled rule needs the samples, not only a mean)."""
    return np.packbits(np.asarray(correct, dtype=bool)).tobytes().hex()


def hex_bits(text: str, n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(bytes.fromhex(text), dtype=np.uint8))[:n].astype(np.float64)


def pooled_halves(rows: list[dict], confidence: float = DEFAULT_CONFIDENCE) -> dict[str, float]:
    """The paired drop of one setting over several seeds, per validation half (PROTOCOL.md, the pooled rule):
    for each validation image the mean over the seeds of (dense of seed s correct) - (file of seed s correct),
    in points; its mean is the mean over the seeds of the drops, and the bound treats images (not seed-image
    pairs) as the independent units. Rows carry val_n, dense_val_correct and val_correct (`bits_hex`)."""
    n = rows[0]["val_n"]
    d = np.mean([hex_bits(r["dense_val_correct"], n) - hex_bits(r["val_correct"], n) for r in rows], axis=0)
    out = {}
    for name, h in zip(("even", "odd"), half_drops(100.0 * d, np.zeros_like(d), confidence), strict=True):
        out[f"val_{name}_drop"], out[f"val_{name}_bound"] = h.drop, h.upper
    return out


def baseline_path(arch: str, seed: int) -> Path:
    return BASELINES / f"{arch}_seed{seed}.safetensors"


def load_baseline(arch: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """The converged dense baseline (benchmarks/train_baselines.py) as a state dict."""
    from safetensors.torch import load_file

    path = baseline_path(arch, seed)
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: run benchmarks/train_baselines.py first")
    return load_file(str(path))


def baseline_info() -> dict[str, Any]:
    """README.json of the baselines: accuracies, epochs, schedule and command."""
    return json.loads((BASELINES / "README.json").read_text())
