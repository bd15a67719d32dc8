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

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn

from ...errors import BadArgumentError
from .targets import unwrap


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
