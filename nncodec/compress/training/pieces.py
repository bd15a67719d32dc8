"""Training-aware compression as pieces that the user's own training loop calls.

    pruner = PMMPPruner(model, alpha=1e-3)              # or make_pruner("drr", model, alpha=1e-4)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for x, y in loader:                                 # 1. regularised training
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y) + pruner.penalty()
        loss.backward()
        opt.step()
        pruner.after_step()                             #    PMMP: its own Adam step on w, gamma, u; clamp
    pruner.prune(lambda: val_loss(model), example_inputs=x)   # 2. RGP -> TAMADE -> RGP; freezes the mask
    for x, y in loader:                                 # 3. fine-tuning: pruned weights stay exactly zero
        ...; opt.step(); pruner.after_step()
    pruner.save("model.nnc")                            # mask + quantized survivors, through the codecs

The protocol every piece follows (`CompressionPiece`; spike-and-slab implements it too):
  penalty()        differentiable scalar to add to the loss (zero once the mask is frozen);
  after_step()     call after every optimizer step: the method's own parameter updates, clamping,
                   and, with a frozen mask, re-zeroing the pruned weights;
  prune(evaluate, ...)  the pruning step; `evaluate()` returns the current loss on fixed data
                   (a float, a 0-dim tensor, or a (sum, count) pair), all-reduced under DDP;
  masks            name -> bool tensor of the surviving weights;
  freeze_mask()    fine-tuning: gradient hooks zero the pruned weights' gradients (so Adam's moments
                   stay zero) and `after_step` re-applies the mask;
  to_state_dict(...)  exactly what the saved file decodes to; save(path, ...) writes it (rank 0 only).

Why an object and not a loop: users train with their own loop, Hugging Face `Trainer` or Lightning,
often under DistributedDataParallel; the object only needs four calls from them. See
`distributed.py` for what is synchronised across ranks.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from ...errors import BadArgumentError
from . import distributed as dist_
from .export import quantized_state_dict, save_pruned, steps_for_levels
from .loop import Regularizer
from .rgp import random_gradient_pruning
from .tamade import TamadeResult, prune_at_threshold
from .targets import Targets, apply_masks, count_nonzero, count_total, masks_from_weights, select_parameters, unwrap

Evaluate = Callable[[], Any]


@runtime_checkable
class CompressionPiece(Protocol):
    """What a training loop (or an adapter: Hugging Face, Lightning) may rely on."""

    @property
    def masks(self) -> dict[str, torch.Tensor]: ...

    def penalty(self) -> torch.Tensor: ...

    def after_step(self) -> None: ...

    def prune(self, evaluate: Evaluate, **kwargs: Any) -> Any: ...

    def freeze_mask(self) -> None: ...

    def to_state_dict(self, **kwargs: Any) -> dict[str, torch.Tensor]: ...

    def save(self, path: str | os.PathLike, **kwargs: Any) -> int: ...


@dataclass(frozen=True)
class PruneReport:
    rgp_before: int  # weights Random Gradient Pruning removed before TAMADE
    tamade: TamadeResult
    rgp_after: int
    nonzero: int  # surviving weights in the pruned parameters
    total: int


def global_loss(evaluate: Evaluate) -> Callable[[], float]:
    """`evaluate` made global: (sum, count) pairs or per-rank means, averaged over the ranks."""

    def run() -> float:
        value = evaluate()
        if isinstance(value, tuple):
            total, count = float(value[0]), float(value[1])
        else:
            total, count = float(value), 1.0
        return dist_.all_reduce_mean(total, count)

    return run


class Pruner:
    """Masks, a sparsity regulariser (or none), the pruning step and the export for one model.

    Common options: targets (which parameters; see select_parameters), delta / resolution /
    max_steps (TAMADE), rgp / rgp_batch (Random Gradient Pruning), seed or generator (RGP's random
    batches; the same on every rank)."""

    method = "tamade"

    def __init__(self, model: nn.Module, regularizer: Regularizer | None = None, *, targets: Targets = None,
                 companion_lr: float = 1e-3, delta: float = 0.01, resolution: float = 1e-7, max_steps: int = 50,
                 rgp: bool = True, rgp_batch: int = 256, seed: int = 0, generator: torch.Generator | None = None,
                 callback: Callable[[dict[str, Any]], None] | None = None) -> None:
        if not isinstance(model, nn.Module):
            raise BadArgumentError(f"model must be a torch.nn.Module, not {type(model).__name__}")
        if companion_lr <= 0:
            raise BadArgumentError("companion_lr must be positive")
        self.model = unwrap(model)
        self.targets = targets
        self.params = select_parameters(self.model, targets)
        self._masks = masks_from_weights(self.params)
        self.delta, self.resolution, self.max_steps = float(delta), float(resolution), int(max_steps)
        self.rgp, self.rgp_batch = bool(rgp), int(rgp_batch)
        self.generator = generator if generator is not None else torch.Generator().manual_seed(seed)
        self.callback = callback
        self.regularizer = regularizer
        self.frozen = False
        self._hooks: list[Any] = []
        extra = regularizer.extra_parameters() if regularizer is not None else []
        self.sync()  # identical method parameters on every rank from the start
        self.companion_optimizer = torch.optim.Adam(extra, lr=companion_lr, foreach=True) if extra else None

    def sync(self) -> None:
        """Copy rank 0's method parameters and masks to every rank (done at construction; call it again
        if the process group was initialised after the piece was made, as Trainer/Lightning do)."""
        if self.regularizer is not None:
            dist_.broadcast_(self.regularizer.extra_parameters())
        dist_.broadcast_(list(self._masks.values()))

    # -- training ------------------------------------------------------------------------------
    @property
    def masks(self) -> dict[str, torch.Tensor]:
        return self._masks

    def penalty(self) -> torch.Tensor:
        if self.regularizer is None or self.frozen:
            return torch.zeros(())
        return self.regularizer.penalty()

    def add_gradients(self) -> None:
        """The penalty's closed-form gradient added to `.grad` (instead of `penalty()` in the loss:
        call after backward, before the optimizer step; cheaper, no graph over the weights)."""
        if self.regularizer is not None and not self.frozen:
            self.regularizer.add_gradients()

    def penalty_value(self) -> float:
        return 0.0 if self.regularizer is None or self.frozen else self.regularizer.value()

    def after_step(self) -> None:
        if self.regularizer is not None and not self.frozen:
            if self.companion_optimizer is not None:
                self.companion_optimizer.step()
                self.companion_optimizer.zero_grad(set_to_none=True)
            self.regularizer.after_step()
        if self.frozen:
            apply_masks(self.params, self._masks)

    def freeze_mask(self) -> None:
        """From now on the pruned weights stay zero (and the penalty is off): fine-tuning."""
        self._masks = {n: m & (self.params[n].detach() != 0) for n, m in self._masks.items()}
        apply_masks(self.params, self._masks)
        if not self.frozen:
            self._hooks = [p.register_hook(lambda g, n=n: g * self._masks[n].to(g.dtype))
                           for n, p in self.params.items() if p.requires_grad]
        self.frozen = True

    def unfreeze(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks, self.frozen = [], False

    # -- pruning -------------------------------------------------------------------------------
    def _emit(self, phase: str, **extra: Any) -> None:
        if self.callback is not None:
            self.callback({"phase": phase, **extra})

    def _random_inputs(self, example: torch.Tensor) -> torch.Tensor | None:
        """None (N(0, 1) batches) for real-valued inputs; for integer inputs (token ids) uniform ids
        below the largest id seen on any rank."""
        if example.is_floating_point():
            return None
        high = int(dist_.all_reduce_max(float(example.max()))) + 1
        return torch.randint(0, max(high, 1), (self.rgp_batch, *example.shape[1:]), generator=self.generator,
                             dtype=example.dtype)

    def random_gradient_prune(self, example_inputs: torch.Tensor | None, probes: Sequence[torch.Tensor] = ()) -> int:
        """Random Gradient Pruning (see rgp.py) with "seen" OR-reduced over ranks."""
        if not self.rgp:
            return 0
        if example_inputs is None:
            if not probes:
                raise BadArgumentError("Random Gradient Pruning needs example_inputs= (one batch of model inputs), "
                                       "or pass rgp=False")
            example_inputs = probes[0]
        removed = random_gradient_pruning(self.model, self.params, self._masks, example_inputs.shape[1:],
                                          batch_size=self.rgp_batch, generator=self.generator, probes=list(probes),
                                          dtype=example_inputs.dtype, random_inputs=self._random_inputs(example_inputs),
                                          sync=True)
        self._emit("rgp", removed=removed)
        return removed

    def _before_tamade(self, example_inputs: torch.Tensor | None, probes: Sequence[torch.Tensor],
                       calib_inputs: Sequence[torch.Tensor] | None) -> None:
        """Method-specific pruning before RGP -> TAMADE -> RGP (layerwise fits); none by default."""

    def prune(self, evaluate: Evaluate, *, example_inputs: torch.Tensor | None = None,
              probes: Sequence[torch.Tensor] = (), calib_inputs: Sequence[torch.Tensor] | None = None,
              delta: float | None = None, freeze: bool = True) -> PruneReport:
        """RGP -> TAMADE -> RGP. `evaluate()` is the loss of the model as it is now on fixed data
        (TAMADE keeps it within (1 + delta) of the unpruned value); `example_inputs` is one batch of
        inputs (shape and dtype of RGP's random batch), `probes` real batches RGP also checks.
        With `freeze` (default) the mask is frozen for fine-tuning afterwards."""
        if example_inputs is None and calib_inputs:
            example_inputs = calib_inputs[0]
        self.unfreeze()
        self._masks = {n: m & (self.params[n].detach() != 0) for n, m in self._masks.items()}
        self._before_tamade(example_inputs, probes, calib_inputs)
        self._masks = {n: m & (self.params[n].detach() != 0) for n, m in self._masks.items()}
        before = self.random_gradient_prune(example_inputs, probes)
        result = prune_at_threshold(self.params, self._masks, global_loss(evaluate),
                                    delta=self.delta if delta is None else delta, resolution=self.resolution,
                                    max_steps=self.max_steps)
        self._emit("tamade", threshold=result.threshold, base_loss=result.base_loss, loss=result.loss,
                   removed=result.pruned)
        after = self.random_gradient_prune(example_inputs, probes)
        if freeze:
            self.freeze_mask()
        return PruneReport(before, result, after, count_nonzero(self.params), count_total(self.params))

    # -- export --------------------------------------------------------------------------------
    def steps(self, steps: Mapping[str, float] | None = None, levels: float | None = None) -> dict[str, float] | None:
        """Explicit `steps` (name -> quantization step), or steps giving each pruned tensor `levels`
        levels per sign, or None (survivors kept exactly)."""
        if steps is not None and levels is not None:
            raise BadArgumentError("give steps= or levels=, not both")
        if levels is not None:
            return steps_for_levels(self.model, levels, list(self.params))
        return None if steps is None else dict(steps)

    def to_state_dict(self, *, steps: Mapping[str, float] | None = None,
                      levels: float | None = None) -> dict[str, torch.Tensor]:
        """The state dict the saved file decodes to, bit for bit (on the CPU)."""
        return quantized_state_dict(self.model, self.steps(steps, levels), self.targets)

    def save(self, path: str | os.PathLike, *, steps: Mapping[str, float] | None = None, levels: float | None = None,
             metadata: Mapping[str, str] | None = None, prefer: str = "size") -> int:
        """Write the .nnc file (rank 0 only; every rank waits for it) and return its size in bytes."""
        size = 0
        if dist_.is_main():
            meta = {"nncodec.training": self.method, **dict(metadata or {})}
            size = save_pruned(self.model, path, steps=self.steps(steps, levels), targets=self.targets,
                               metadata=meta, prefer=prefer)
        dist_.barrier()
        return dist_.broadcast_int(size)

    def density(self) -> float:
        return count_nonzero(self.params) / max(count_total(self.params), 1)
