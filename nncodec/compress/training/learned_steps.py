"""Quantization steps learned with the weights (LSQ, Esser et al. 2020) and a code-length proxy.

    learned = LearnedSteps(search_steps(model, metric, looser_limit))   # start from the searched grid
    opt_steps = torch.optim.Adam(learned.parameters(), lr=1e-3)
    for x, y in loader:
        opt.zero_grad(); opt_steps.zero_grad()
        with learned.quantized(model):                  # the weights hold what the file decodes to
            loss = loss_fn(model(x), y) + lam * learned.code_length(model)
            loss.backward()                             # on exit: the step gradients (LSQ) are added
        opt.step(); opt_steps.step(); pruner.after_step()
    pruner.save("model.nnc", steps=learned.steps())    # exactly the grid that was trained

Each step is a trainable log-step. Inside `quantized` the parameters hold round(w / s) * s (the
export's quantizer, `quantized_weights`); the weights get the straight-through gradient and each step
LSQ's gradient sum(dL/dq * (round(w / s) - w / s)), the derivative of s * round(w / s) with the
rounding passed straight through. There is no clipping (the file's levels are unbounded), so LSQ's
gradient scale is left out: the steps are meant for Adam, which is invariant to a constant factor.
`code_length` is a differentiable stand-in for the levels' bits, sum over nonzero weights of
log2(1 + |w| / s): it pulls the steps up and the small levels to zero. Whatever the block's backward
puts on the (quantized) weights, a rate term included, reaches the steps through q = s * round(w / s).
`entropy_bits` is a closer stand-in: each level priced at -log2 of its frequency in the tensor.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn

from ...errors import BadArgumentError
from .quantize_aware import quantized_weights
from .targets import unwrap


class LearnedSteps(nn.Module):
    """Per-tensor uniform quantization steps as trainable parameters (log-steps, float32)."""

    def __init__(self, steps: Mapping[str, float]) -> None:
        super().__init__()
        if not steps:
            raise BadArgumentError("LearnedSteps needs at least one step")
        for name, step in steps.items():
            if not (isinstance(step, (int, float)) and math.isfinite(step) and step > 0):
                raise BadArgumentError(f"{name}: step must be positive and finite, not {step!r}")
        self.names = list(steps)
        start = torch.tensor([float(steps[n]) for n in self.names], dtype=torch.float32)
        self.log_step = nn.Parameter(torch.log(start))

    def steps(self) -> dict[str, float]:
        """The current steps as the file stores them (their float32 values)."""
        values = torch.exp(self.log_step.detach())
        return {n: float(v) for n, v in zip(self.names, values, strict=True)}

    def _step_tensor(self) -> torch.Tensor:
        return torch.exp(self.log_step)

    def code_length(self, model: nn.Module) -> torch.Tensor:
        """sum over the nonzero weights of log2(1 + |w| / s), in bits; differentiable in w and s."""
        params = dict(unwrap(model).named_parameters())
        s = self._step_tensor()
        total = s.new_zeros(())
        for i, name in enumerate(self.names):
            w = params[name]
            total = total + torch.log2(1 + w.abs() / s[i]).sum()
        return total

    def entropy_bits(self, model: nn.Module) -> torch.Tensor:
        """Bits of the levels round(w / s) under each tensor's own level histogram (zeros included, so
        the mask is priced too): sum of -log2 p(level). Differentiable through a central difference of
        that code length between neighbouring levels: it pulls weights towards the cheaper neighbour."""
        params = dict(unwrap(model).named_parameters())
        s = self._step_tensor()
        total = s.new_zeros(())
        for i, name in enumerate(self.names):
            x = params[name].reshape(-1) / s[i]
            k = torch.round(x.detach()).long()
            lo = int(k.min()) - 1
            counts = torch.bincount(k - lo, minlength=int(k.max()) - lo + 2).to(x.dtype)
            cost = -torch.log2((counts + 0.5) / (counts.sum() + 0.5 * len(counts)))  # bits per level
            slope = torch.zeros_like(cost)
            slope[1:-1] = 0.5 * (cost[2:] - cost[:-2])
            idx = k - lo
            total = total + (cost[idx] + slope[idx] * (x - x.detach())).sum()
        return total

    @contextmanager
    def quantized(self, model: nn.Module) -> Iterator[dict[str, float]]:
        """`quantized_weights(model, self.steps())`; on a normal exit each step's `.grad` gains LSQ's
        gradient from what the block's backward added to the parameters' `.grad`."""
        params = dict(unwrap(model).named_parameters())
        unknown = sorted(set(self.names) - set(params))
        if unknown:
            raise BadArgumentError(f"steps name parameters the model does not have: {', '.join(unknown)}")
        steps = self.steps()
        floats = {n: params[n].detach().to(torch.float32).clone() for n in self.names}
        before = {n: None if params[n].grad is None else params[n].grad.detach().clone() for n in self.names}
        with quantized_weights(model, steps):
            yield steps
            grad = torch.zeros_like(self.log_step)
            for i, name in enumerate(self.names):
                g = params[name].grad
                if g is None:
                    continue
                g = g.detach().to(torch.float32) - (0 if before[name] is None else before[name].to(torch.float32))
                s = torch.tensor(steps[name], dtype=torch.float32)
                x = floats[name] / s
                grad[i] = s * (g * (torch.round(x) - x)).sum()  # d/d log s = s * d/ds
            if self.log_step.grad is None:
                self.log_step.grad = grad
            else:
                self.log_step.grad += grad
