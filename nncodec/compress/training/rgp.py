"""Random Gradient Pruning: remove the weights that can no longer affect the output.

After pruning, some surviving weights hang off dead ends: a unit whose inputs were all pruned feeds
nothing but its bias onward, a unit whose outputs were all pruned feeds nothing at all. Such weights
have an exactly zero gradient for *every* input, so one batch of N(0, 1) inputs with N(0, 1)
targets finds them (a connected weight has a non-zero gradient with probability one, except where
an activation is flat over the whole batch, e.g. a ReLU unit that never fires). Optional real-data
`probes` guard against that case: a weight is removed only if its gradient is zero on the random
batch and on every probe. Under torch.distributed (`sync=True`) "seen" is OR-reduced over the
ranks, whose probes are their own shards of the data, so every rank removes the same weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from .distributed import any_reduce_
from .targets import apply_masks


def output_tensor(out: object) -> torch.Tensor:
    """The prediction tensor of a model's output: itself, `.logits` (Hugging Face), or the first element."""
    if isinstance(out, torch.Tensor):
        return out
    logits = getattr(out, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(out, dict) and isinstance(out.get("logits"), torch.Tensor):
        return out["logits"]
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise TypeError(f"cannot find the output tensor in a {type(out).__name__}")


def _accumulate_gradients(model: nn.Module, x: torch.Tensor, generator: torch.Generator,
                          params: Mapping[str, nn.Parameter], seen: dict[str, torch.Tensor]) -> None:
    model.zero_grad(set_to_none=True)
    with torch.enable_grad():
        out = output_tensor(model(x))
        target = torch.randn(out.shape, generator=generator, dtype=torch.float32).to(out.device, out.dtype)
        ((out - target) ** 2).sum().backward()
    for n, p in params.items():
        if p.grad is not None:
            seen[n] |= p.grad != 0


def random_gradient_pruning(model: nn.Module, params: Mapping[str, nn.Parameter], masks: dict[str, torch.Tensor],
                            input_shape: Sequence[int], *, batch_size: int = 256, generator: torch.Generator | None = None,
                            probes: Sequence[torch.Tensor] = (), dtype: torch.dtype = torch.float32,
                            random_inputs: torch.Tensor | None = None, sync: bool = False) -> int:
    """Zero (and mask out) every weight in `params` whose gradient is exactly zero on a batch of
    random inputs of shape (batch_size, *input_shape) (and on each probe batch); returns how many
    weights were removed. `masks` is updated in place. `random_inputs` replaces the N(0, 1) batch
    (models whose inputs are not real vectors, e.g. token ids); `sync`: OR "seen" over the ranks."""
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    device = next(iter(params.values())).device
    was_training = model.training
    model.eval()
    seen = {n: torch.zeros_like(m) for n, m in masks.items()}
    try:
        if random_inputs is None:
            x = torch.randn((batch_size, *input_shape), generator=gen, dtype=torch.float32).to(device, dtype)
        else:
            x = random_inputs.to(device)
        _accumulate_gradients(model, x, gen, params, seen)
        for probe in probes:
            _accumulate_gradients(model, probe.to(device), gen, params, seen)
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    if sync:
        any_reduce_(seen.values())
    removed = 0
    for n, p in params.items():
        if not p.requires_grad:
            continue
        keep = masks[n] & seen[n]
        removed += int((masks[n] & ~keep).sum())
        masks[n] = keep
    apply_masks(params, masks)
    return removed
