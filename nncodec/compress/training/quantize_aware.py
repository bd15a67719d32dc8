"""Quantization-aware fine-tuning in the user's own loop (straight-through weights).

    steps = search_steps(model, metric, looser_limit)        # the steps the file will use
    for x, y in loader:
        opt.zero_grad()
        with quantized_weights(model, steps):                 # forward + backward at the decoded values
            loss_fn(model(x), y).backward()
        opt.step()                                            # ... the update goes to the float weights
        pruner.after_step()
    pruner.save("model.nnc", steps=steps)

Inside the block every parameter named in `steps` holds the value the saved file decodes it to
(round(w / step) * step, the export's uniform quantizer); on leaving it gets its float value back, with
the gradients taken at the quantized point (BinaryConnect / straight-through estimator). Pruned weights
are zero and stay zero. Under DistributedDataParallel the parameters are identical on every rank, so
the quantized values are too; only local tensors change, nothing is communicated.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn

from ...errors import BadArgumentError
from .targets import Targets, apply_masks, mask_gradients, masks_from_weights, select_parameters, unwrap


def quantize_(param: torch.Tensor, step: float) -> None:
    """`param` rounded in place to the uniform grid of `step` (float32 arithmetic, as the export)."""
    with torch.no_grad():
        x = param.detach().to(torch.float32)
        s = torch.tensor(step, dtype=torch.float32)
        param.copy_((torch.round(x / s) * s).to(param.dtype))


@contextmanager
def quantized_weights(model: nn.Module, steps: Mapping[str, float] | None) -> Iterator[None]:
    """Parameters named in `steps` hold their quantized values inside the block (None or {}: no-op)."""
    steps = dict(steps or {})
    params = dict(unwrap(model).named_parameters())
    unknown = sorted(set(steps) - set(params))
    if unknown:
        raise BadArgumentError(f"steps name parameters the model does not have: {', '.join(unknown)}")
    for name, step in steps.items():
        if not (isinstance(step, (int, float)) and math.isfinite(step) and step > 0):
            raise BadArgumentError(f"{name}: step must be positive and finite, not {step!r}")
    saved = {name: params[name].detach().clone() for name in steps}
    for name, step in steps.items():
        quantize_(params[name], float(step))
    try:
        yield
    finally:
        with torch.no_grad():
            for name, value in saved.items():
                params[name].copy_(value)


def finetune_quantized(model: nn.Module, loader: Iterable, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                       steps: Mapping[str, float], *, epochs: int, lr: float = 1e-3, cosine: bool = True,
                       select: Callable[[nn.Module], float] | None = None, targets: Targets = None) -> list[float]:
    """Quantization-aware fine-tuning at fixed `steps` (the loop of the module docstring), for a pruned
    model: the weights of the pruned parameters (`targets`) that are zero now stay zero. Adam, the
    learning rate decayed to 0 along a cosine over all steps when `cosine`. With `select` (higher is
    better, e.g. validation accuracy; never the test set) the model is scored at its quantized point before
    training and after every epoch, and the float weights of the best of these are kept (so QAT never ends
    worse than it started). Returns the scores: [before, after epoch 1, ...] ([] without `select`)."""
    if epochs < 0 or not (math.isfinite(lr) and lr > 0):
        raise BadArgumentError("epochs must be >= 0 and lr positive")
    params = select_parameters(unwrap(model), targets)
    masks = masks_from_weights(params)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    total = epochs * len(loader) if hasattr(loader, "__len__") else 0
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total) if cosine and total else None
    scores: list[float] = []
    best: dict = {}

    def score() -> None:
        if select is None:
            return
        model.eval()
        with quantized_weights(model, steps):
            scores.append(float(select(model)))
        if not best or scores[-1] > best["score"]:
            best.update(score=scores[-1], state=copy.deepcopy(model.state_dict()))

    score()
    for _ in range(epochs):
        model.train()
        for x, y in loader:
            opt.zero_grad(set_to_none=True)
            with quantized_weights(model, steps):
                loss_fn(model(x), y).backward()
            mask_gradients(params, masks)
            opt.step()
            apply_masks(params, masks)
            if sched is not None:
                sched.step()
        score()
    model.eval()
    if best:
        model.load_state_dict(best["state"])
    return scores
