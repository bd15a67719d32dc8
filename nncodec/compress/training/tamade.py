"""TAMADE: one global magnitude threshold, the largest the loss tolerates.

Bisection on eps in [0, 2*max|theta|] for the largest eps such that pruning every weight with
|theta| <= eps keeps the loss within (1 + delta) of the unpruned loss (for a negative loss, such as
a Gaussian code length, within delta*|loss|). The loss is measured on a fixed set of batches so
that the bisection sees one deterministic function; thresholds that prune the same weights share
one evaluation, so the search costs about log2(#weights) loss evaluations, not `max_steps`.

The search itself only needs `evaluate()`, the loss of the model as it currently is (`search_threshold`):
the composable pieces pass a closure over the user's data, all-reduced across ranks under
torch.distributed so that every rank bisects on the same numbers and finds the same threshold.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ...errors import BadArgumentError
from .loop import Batch, LossFn, mean_loss
from .targets import apply_masks


@dataclass(frozen=True)
class TamadeResult:
    threshold: float
    base_loss: float
    loss: float  # the loss after pruning at `threshold`
    pruned: int  # weights newly pruned
    evaluations: int


def tolerance(base: float, delta: float) -> float:
    """The largest acceptable loss: (1 + delta)*base, or base + delta*|base| when base is negative."""
    return base + delta * abs(base)


def tamade_threshold(model: nn.Module, params: Mapping[str, nn.Parameter], masks: Mapping[str, torch.Tensor],
                     batches: Sequence[Batch], loss_fn: LossFn, *, delta: float = 0.01, resolution: float = 1e-7,
                     max_steps: int = 50) -> TamadeResult:
    """Find the TAMADE threshold without changing the model (it is restored after each trial)."""
    return search_threshold(params, masks, lambda: mean_loss(model, batches, loss_fn), delta=delta,
                            resolution=resolution, max_steps=max_steps)


def search_threshold(params: Mapping[str, nn.Parameter], masks: Mapping[str, torch.Tensor],
                     evaluate: Callable[[], float], *, delta: float = 0.01, resolution: float = 1e-7,
                     max_steps: int = 50) -> TamadeResult:
    """The TAMADE threshold for the loss `evaluate()` of the model that owns `params` (each trial
    prunes the parameters in place and restores them)."""
    if delta < 0 or resolution <= 0 or max_steps < 0:
        raise BadArgumentError("TAMADE needs delta >= 0, resolution > 0 and max_steps >= 0")
    originals = {n: p.detach().clone() for n, p in params.items()}
    mags = {n: originals[n].abs() * masks[n] for n in params}
    top = max((float(m.max()) for m in mags.values() if m.numel()), default=0.0)
    base = float(evaluate())
    limit = tolerance(base, delta)
    alive = sum(int(m.sum()) for m in masks.values())
    cache: dict[int, float] = {0: base}

    def loss_at(eps: float) -> tuple[int, float]:
        pruned = alive - sum(int(((mags[n] > eps) & masks[n]).sum()) for n in params)
        if pruned not in cache:
            with torch.no_grad():
                for n, p in params.items():
                    p.copy_(originals[n] * (mags[n] > eps))
            try:
                cache[pruned] = float(evaluate())
            finally:
                with torch.no_grad():
                    for n, p in params.items():
                        p.copy_(originals[n])
        return pruned, cache[pruned]

    lo, hi = 0.0, 2.0 * top
    if top == 0.0:
        return TamadeResult(0.0, base, base, 0, 0)
    pruned_hi, loss_hi = loss_at(hi)
    if loss_hi <= limit:
        return TamadeResult(hi, base, loss_hi, pruned_hi, len(cache) - 1)
    for _ in range(max_steps):
        if hi - lo <= resolution:
            break
        mid = 0.5 * (lo + hi)
        if loss_at(mid)[1] <= limit:
            lo = mid
        else:
            hi = mid
    pruned, loss = loss_at(lo)
    return TamadeResult(lo, base, loss, pruned, len(cache) - 1)


def tamade(model: nn.Module, params: Mapping[str, nn.Parameter], masks: dict[str, torch.Tensor],
           batches: Sequence[Batch], loss_fn: LossFn, **kwargs: Any) -> TamadeResult:
    """Prune at the TAMADE threshold: updates `masks` in place and zeroes the pruned weights."""
    return prune_at_threshold(params, masks, lambda: mean_loss(model, batches, loss_fn), **kwargs)


def prune_at_threshold(params: Mapping[str, nn.Parameter], masks: dict[str, torch.Tensor],
                       evaluate: Callable[[], float], **kwargs: Any) -> TamadeResult:
    """`search_threshold`, then prune there: updates `masks` in place and zeroes the pruned weights."""
    result = search_threshold(params, masks, evaluate, **kwargs)
    with torch.no_grad():
        for n, p in params.items():
            masks[n] = masks[n] & (p.detach().abs() > result.threshold)
    apply_masks(params, masks)
    return result
