"""Built-in example architectures (LeNet-300-100, LeNet-5-Caffe) with a small trainer and evaluator.

They exist so that the CLI's budget search and the benchmarks can turn an IDX dataset into a trained
checkpoint and score decoded state dicts without user code. Inputs are uint8 images [N, 28, 28];
they are scaled to [0, 1] and normalised with the Fashion-MNIST mean and standard deviation
(fashion_mnist.preprocess, re-exported here as the models' input pipeline).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nncodec.errors import BadArgumentError

from .fashion_mnist import MEAN, STD, preprocess

__all__ = ["LeNet300100", "LeNet5Caffe", "ARCHITECTURES", "build", "train", "as_input", "correctness",
           "evaluate", "make_evaluator", "preprocess", "MEAN", "STD"]


class LeNet300100(nn.Module):
    """784-300-100-10 fully connected network with ReLU (266,610 parameters)."""

    conv = False

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], -1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class LeNet5Caffe(nn.Module):
    """conv 20@5x5, max-pool 2, conv 50@5x5, max-pool 2, fc 800->500, fc 500->10, ReLU (431,080 parameters)."""

    conv = True

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.fc1 = nn.Linear(800, 500)
        self.fc2 = nn.Linear(500, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], 1, 28, 28)
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


ARCHITECTURES: dict[str, type[nn.Module]] = {"lenet300": LeNet300100, "lenet5": LeNet5Caffe}
_ALIASES = {"lenet-300-100": "lenet300", "lenet300100": "lenet300", "lenet-5": "lenet5", "lenet5caffe": "lenet5"}


def build(arch: str) -> nn.Module:
    """A freshly initialised model of a built-in architecture ("lenet300" or "lenet5")."""
    key = _ALIASES.get(arch.lower(), arch.lower())
    if key not in ARCHITECTURES:
        raise BadArgumentError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[key]()


def train(model: nn.Module, images: np.ndarray, labels: np.ndarray, *, epochs: int = 3, lr: float = 1e-3,
          batch_size: int = 128, weight_decay: float = 0.0, seed: int = 0, cosine: bool = True,
          regularizer: Callable[[nn.Module], torch.Tensor] | None = None,
          after_step: Callable[[nn.Module], None] | None = None,
          progress: Callable[[int, float], None] | None = None) -> nn.Module:
    """Adam with a fixed seed (deterministic on one machine), the learning rate annealed to zero on a
    cosine schedule unless `cosine=False` (converges in few epochs). `regularizer(model)` is added to the loss
    and `after_step(model)` runs after every optimizer step (hooks for training-aware compression);
    `progress(epoch, mean_loss)` is called after each epoch. Returns the model in eval mode."""
    torch.manual_seed(seed)
    x = as_input(images)
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    steps = epochs * ((len(x) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1)) if cosine else None
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        total, batches = 0.0, 0
        for i in range(0, len(x), batch_size):
            idx = order[i : i + batch_size]
            opt.zero_grad()
            loss = F.cross_entropy(model(x[idx]), y[idx])
            if regularizer is not None:
                loss = loss + regularizer(model)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            if after_step is not None:
                after_step(model)
            total += float(loss.detach())
            batches += 1
        if progress is not None:
            progress(epoch, total / max(batches, 1))
    return model.eval()


def as_input(data: np.ndarray | torch.Tensor) -> torch.Tensor:
    """The model's input: uint8 images are preprocessed, float tensors/arrays are taken as already fed."""
    if isinstance(data, torch.Tensor):
        if not data.is_floating_point():
            raise BadArgumentError(f"model inputs must be float (as fed in inference), got {data.dtype}")
        return data
    arr = np.asarray(data)
    if arr.dtype == np.uint8:
        return preprocess(arr)
    if arr.dtype.kind != "f":
        raise BadArgumentError(f"model inputs must be uint8 images or float inputs, got {arr.dtype}")
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))


@torch.no_grad()
def correctness(model: nn.Module, images: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor, *,
                state: Mapping[str, Any] | None = None, batch_size: int = 1024) -> np.ndarray:
    """Per-sample correctness (bool [N]) of the model's top-1 prediction; with `state`, after loading it.
    `images`: uint8 images (preprocessed here) or the float input as fed to the model."""
    if state is not None:
        model.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()}, strict=True)
    model.eval()
    x = as_input(images)
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    out = torch.empty(len(x), dtype=torch.bool)
    for i in range(0, len(x), batch_size):
        out[i : i + batch_size] = model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]
    return out.numpy()


def evaluate(model: nn.Module, images: np.ndarray | torch.Tensor, labels: np.ndarray, *,
             state: Mapping[str, Any] | None = None, batch_size: int = 1024) -> float:
    """Accuracy in percent; with `state`, of the model after loading that state dict."""
    c = correctness(model, images, labels, state=state, batch_size=batch_size)
    return 100.0 * float(c.mean()) if len(c) else 0.0


def make_evaluator(arch: str, images: np.ndarray | torch.Tensor, labels: np.ndarray, *, per_sample: bool = False
                   ) -> Callable[[Mapping[str, Any]], Any]:
    """`evaluate(state_dict)` for `compress_to_budget` (inputs preprocessed once): the accuracy in percent,
    or with `per_sample=True` a float array of 0 / 100 per sample (its mean is the accuracy), which
    lets the search bound the paired drop instead of trusting one noisy number. Pass validation data,
    never the test set: the search selects on what it is given."""
    model = build(arch)
    x = as_input(images)

    def score(state: Mapping[str, Any]) -> Any:
        c = correctness(model, x, labels, state=state)
        return 100.0 * c.astype(np.float64) if per_sample else (100.0 * float(c.mean()) if len(c) else 0.0)

    return score
