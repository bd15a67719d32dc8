"""The training loop every method shares: device, seed, progress bar, logging callback, masks, and a
regulariser hook that adds its exact gradient after the data loss has been back-propagated.

Penalty gradients are added by hand rather than through autograd because they are elementwise
closed forms (cheaper than a graph over every weight), because sign(0) must be 0 so that pruned
weights stay put, and because PMMP needs gradient *ascent* on its multipliers.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from ...errors import BadArgumentError
from .targets import apply_masks, count_nonzero, count_total, mask_gradients

Callback = Callable[[dict[str, Any]], None]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Batch = tuple[torch.Tensor, torch.Tensor]


class Regularizer:
    """A penalty on the pruned parameters, applied either through autograd (`penalty()` added to the
    loss) or through its closed-form gradient (`add_gradients()` after the data loss's backward)."""

    def penalty(self) -> torch.Tensor:
        """The penalty as a differentiable scalar: backward gives the same gradients as `add_gradients`."""
        return torch.zeros(())

    def extra_parameters(self) -> list[torch.Tensor]:
        """Tensors besides the model's that the same optimizer must update (PMMP's w, gamma, u)."""
        return []

    def add_gradients(self) -> None:
        """Add the penalty's gradient to `.grad` (after the data loss's backward pass)."""

    def after_step(self) -> None:
        """Projection after the optimizer step (PMMP clamps gamma to [0, 1])."""

    def value(self) -> float:
        """The penalty's current value, for logging."""
        return 0.0


def resolve_device(device: str | torch.device | None) -> torch.device:
    dev = torch.device("cpu" if device is None else device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BadArgumentError("device 'cuda' was requested but CUDA is not available")
    if dev.type not in ("cpu", "cuda"):
        raise BadArgumentError(f"device must be 'cpu' or 'cuda', not {device!r}")
    return dev


@dataclass
class Runtime:
    """What a method run needs besides the model and the data: where, how reproducibly, how visibly."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    seed: int = 0
    progress: bool = True
    callback: Callback | None = None

    def __post_init__(self) -> None:
        self.device = resolve_device(self.device)
        random.seed(self.seed)
        torch.manual_seed(self.seed)
        self.generator = torch.Generator().manual_seed(self.seed)

    def emit(self, **event: Any) -> None:
        if self.callback is not None:
            self.callback(event)

    def bar(self, total: int | None, desc: str) -> tqdm:
        return tqdm(total=total, desc=desc, file=sys.stderr, disable=not self.progress, leave=False, dynamic_ncols=True)


def split_batch(batch: Any, device: torch.device) -> Batch:
    """(inputs, targets) on `device` from a loader's batch (a 2-sequence, as TensorDataset gives)."""
    if not isinstance(batch, Sequence) or len(batch) != 2:
        raise BadArgumentError("the data loader must yield (inputs, targets) pairs")
    x, y = batch
    return x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def cache_batches(loader: Iterable, n_batches: int | None, device: torch.device) -> list[Batch]:
    """The first `n_batches` batches (all if None), kept in memory: threshold searches need a fixed
    objective, which a shuffling loader would not give."""
    out: list[Batch] = []
    for batch in loader:
        if n_batches is not None and len(out) >= n_batches:
            break
        out.append(split_batch(batch, device))
    if not out:
        raise BadArgumentError("the data loader yielded no batches")
    return out


@torch.no_grad()
def mean_loss(model: nn.Module, batches: Sequence[Batch], loss_fn: LossFn) -> float:
    """The loss over `batches`, weighted by batch size (a mean loss per batch is assumed), in eval mode."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for x, y in batches:
        n = len(x)
        total += float(loss_fn(model(x), y)) * n
        count += n
    model.train(was_training)
    return total / max(count, 1)


def _length(loader: Iterable) -> int | None:
    try:
        return len(loader)  # type: ignore[arg-type]
    except TypeError:
        return None


def run_epochs(model: nn.Module, loader: Iterable, loss_fn: LossFn, optimizer: torch.optim.Optimizer, epochs: int,
               rt: Runtime, *, phase: str, params: Mapping[str, nn.Parameter],
               regularizer: Regularizer | None = None, masks: Mapping[str, torch.Tensor] | None = None,
               piece: Any = None, scheduler: Any = None, on_epoch: Callable[[int], None] | None = None) -> float:
    """Train for `epochs` epochs; returns the last epoch's mean data loss (nan if no epochs ran).

    With `masks`, pruned weights get zero gradient and are re-zeroed after every step (frozen mask).
    A `piece` (pieces.Pruner) adds its penalty gradient after backward and runs its `after_step`.
    A `scheduler` (torch.optim.lr_scheduler) is stepped after every optimizer step; `on_epoch(epoch)`
    runs after every epoch (1-based), e.g. to score the model on validation for early stopping."""
    n = _length(loader)
    last = float("nan")
    model.train()
    with rt.bar(None if n is None else n * epochs, phase) as bar:
        for epoch in range(epochs):
            total, count = 0.0, 0
            for batch in loader:
                x, y = split_batch(batch, rt.device)
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(model(x), y)
                loss.backward()
                if regularizer is not None:
                    regularizer.add_gradients()
                if piece is not None:
                    piece.add_gradients()
                if masks is not None:
                    mask_gradients(params, masks)
                optimizer.step()
                if regularizer is not None:
                    regularizer.after_step()
                if piece is not None:
                    piece.after_step()
                if masks is not None:
                    apply_masks(params, masks)
                if scheduler is not None:
                    scheduler.step()
                value = float(loss.detach())
                total += value * len(x)
                count += len(x)
                bar.update(1)
                bar.set_postfix(loss=f"{value:.4f}", refresh=False)
            last = total / max(count, 1)
            if rt.callback is not None:
                rt.emit(phase=phase, epoch=epoch + 1, epochs=epochs, loss=last,
                        penalty=(regularizer.value() if regularizer is not None else 0.0)
                        + (piece.penalty_value() if piece is not None else 0.0),
                        nonzero=count_nonzero(params), total=count_total(params))
            if on_epoch is not None:
                on_epoch(epoch + 1)
    return last
