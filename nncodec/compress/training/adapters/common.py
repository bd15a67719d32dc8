"""What both framework adapters do: penalty gradients before each optimizer step, `after_step` after
it, the pruning step at a chosen optimizer step, the file at the end of training.

The penalty goes in through `Pruner.add_gradients` (its closed-form gradient added to `.grad` just
before the optimizer step) because trainers own the loss: the result is the same as adding
`penalty()` to the loss once per optimizer step, whatever the gradient accumulation.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch

from ....errors import BadArgumentError
from ..pieces import Pruner, PruneReport

Evaluate = Callable[[], Any]


def first_tensor(batch: Any) -> torch.Tensor | None:
    """The model inputs of a batch: `input_ids` of a dict, the first element of a tuple, or the tensor."""
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, Mapping):
        value = batch.get("input_ids", next(iter(batch.values()), None))
        return value if isinstance(value, torch.Tensor) else None
    if isinstance(batch, Sequence) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0]
    return None


def loss_over(batches: Iterable[Any], loss_of: Callable[[Any], torch.Tensor], limit: int) -> tuple[float, int]:
    """(sum of batch losses weighted by batch size, count) over the first `limit` batches, no grad."""
    total, count = 0.0, 0
    with torch.no_grad():
        for i, batch in enumerate(batches):
            if i >= limit:
                break
            x = first_tensor(batch)
            n = len(x) if x is not None else 1
            total += float(loss_of(batch)) * n
            count += n
    if count == 0:
        raise BadArgumentError("no batches to evaluate the pruning loss on")
    return total, count


class Driver:
    """The schedule: prune once at optimizer step `prune_at` (if given), save at the end (if asked)."""

    def __init__(self, pruner: Pruner, *, prune_at: int | None = None, evaluate: Evaluate | None = None,
                 example_inputs: torch.Tensor | None = None, probes: Sequence[torch.Tensor] = (),
                 calib_inputs: Sequence[torch.Tensor] | None = None, save_path: str | os.PathLike | None = None,
                 save_options: Mapping[str, Any] | None = None) -> None:
        if not isinstance(pruner, Pruner):
            raise BadArgumentError(f"expected an nncodec Pruner, not {type(pruner).__name__}")
        if prune_at is not None and prune_at < 1:
            raise BadArgumentError("prune_at must be an optimizer step >= 1")
        self.pruner, self.prune_at, self.evaluate = pruner, prune_at, evaluate
        self.example_inputs, self.probes, self.calib_inputs = example_inputs, list(probes), calib_inputs
        self.save_path, self.save_options = save_path, dict(save_options or {})
        self.report: PruneReport | None = None
        self.file_bytes: int | None = None

    def before_optimizer_step(self) -> None:
        self.pruner.add_gradients()

    def after_optimizer_step(self) -> None:
        self.pruner.after_step()

    def due(self, step: int) -> bool:
        return self.report is None and self.prune_at is not None and step >= self.prune_at

    def prune(self, evaluate: Evaluate | None = None, example_inputs: torch.Tensor | None = None) -> PruneReport:
        ev = evaluate or self.evaluate
        if ev is None:
            raise BadArgumentError("pruning needs evaluate= (the loss on fixed data) or data to derive it from")
        self.report = self.pruner.prune(ev, example_inputs=self.example_inputs if example_inputs is None else example_inputs,
                                        probes=self.probes, calib_inputs=self.calib_inputs)
        return self.report

    def finish(self) -> None:
        if self.save_path is not None:
            self.file_bytes = self.pruner.save(self.save_path, **self.save_options)


class DriverCallback:
    """What the framework callbacks share: a Driver built from the same options, and its results.
    Mixed in before the framework's own Callback class."""

    def __init__(self, pruner: Pruner, *, prune_at_step: int | None = None, evaluate: Evaluate | None = None,
                 eval_batches: int = 8, example_inputs: torch.Tensor | None = None, probes: Sequence[torch.Tensor] = (),
                 calib_inputs: Sequence[torch.Tensor] | None = None, save_path: str | os.PathLike | None = None,
                 save_options: Mapping[str, Any] | None = None) -> None:
        self.driver = Driver(pruner, prune_at=prune_at_step, evaluate=evaluate, example_inputs=example_inputs,
                             probes=probes, calib_inputs=calib_inputs, save_path=save_path, save_options=save_options)
        self.eval_batches = eval_batches

    @property
    def report(self) -> Any:
        return self.driver.report

    @property
    def file_bytes(self) -> int | None:
        return self.driver.file_bytes
