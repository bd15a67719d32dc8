"""Layerwise exact-gradient pruning: fit each layer's output with a Bernoulli-masked copy of itself.

For one Linear/Conv layer with inputs X and (unpruned) outputs Y, and keep-probabilities P for the
weights W (p for the bias b, when the bias is pruned too), minimise

    E ||Y - layer(X; W*Z, b*z)||^2 + alpha*(sum(P) + sum(p)),   Z ~ Bernoulli(P), z ~ Bernoulli(p)
  = ||Y - layer(X; W*P, b*p)||^2 + sum(layer(X^2; W^2*P*(1-P), 0)) + n*sum(b^2*p*(1-p)) + alpha*(...)

(the expectation is exact: a layer is linear in its weights, so the mean is the layer with W*P and
the variance of each output entry is the layer applied to X^2 with weights W^2*P*(1-P); n = output
entries per channel). Adam updates P (clamped to [0, 1]) together with W and b; P is rounded at 0.5
and W <- W*P. Layers are done last to first, with Random Gradient Pruning after each, so that units
a later layer stopped using lose their incoming weights before their own layer is fitted.
The sums run over one calibration batch, so alpha's scale goes with the batch size (0.1 for 500).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import BadArgumentError
from .loop import Batch, Runtime
from .rgp import random_gradient_pruning
from .targets import apply_masks

SUPPORTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass


def layer_forward(module: nn.Module, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """The layer's own operation with substitute weights (padding, stride, groups are the module's)."""
    if isinstance(module, nn.Linear):
        return F.linear(x, weight, bias)
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return module._conv_forward(x, weight, bias)
    raise BadArgumentError(f"layerwise pruning supports Linear and Conv layers, not {type(module).__name__}")


def expected_squared_error(module: nn.Module, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor,
                           bias: torch.Tensor | None, P: torch.Tensor, p: torch.Tensor | None) -> torch.Tensor:
    """E over Z ~ Bernoulli(P), z ~ Bernoulli(p) of ||y - layer(x; weight*Z, bias*z)||^2, in closed form
    (p = None: the bias is always kept)."""
    kept_bias = None if bias is None else (bias if p is None else bias * p)
    fit = ((y - layer_forward(module, x, weight * P, kept_bias)) ** 2).sum()
    var = layer_forward(module, x * x, weight * weight * P * (1 - P), None).sum()
    if bias is not None and p is not None:
        channels = y.shape[-1] if isinstance(module, nn.Linear) else y.shape[1]
        var = var + (bias * bias * p * (1 - p)).sum() * (y.numel() // max(channels, 1))
    return fit + var


def layerwise_objective(module: nn.Module, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor,
                        bias: torch.Tensor | None, P: torch.Tensor, p: torch.Tensor | None, alpha: float) -> torch.Tensor:
    reg = P.sum() + (p.sum() if p is not None else 0)
    return expected_squared_error(module, x, y, weight, bias, P, p) + alpha * reg


def _module_names(model: nn.Module, params: Mapping[str, nn.Parameter]) -> list[str]:
    ids = {id(p) for p in params.values()}
    return [n for n, m in model.named_modules() if isinstance(m, SUPPORTED) and id(m.weight) in ids]


@torch.no_grad()
def _call_order(model: nn.Module, names: list[str], x: torch.Tensor) -> list[str]:
    """Layers in the order the forward pass calls them (registration order may differ)."""
    modules = dict(model.named_modules())
    order: list[str] = []
    hooks = [modules[n].register_forward_hook(lambda _m, _i, _o, n=n: order.append(n) if n not in order else None)
             for n in names]
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    return order + [n for n in names if n not in order]


@torch.no_grad()
def _collect(model: nn.Module, module: nn.Module, inputs: Sequence[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(layer input, layer output) pairs for each calibration batch, from the current model."""
    pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
    hook = module.register_forward_hook(lambda _m, i, o: pairs.append((i[0].detach(), o.detach())))
    try:
        for x in inputs:
            model(x)
    finally:
        hook.remove()
    return pairs


def prune_layer(module: nn.Module, pairs: Sequence[tuple[torch.Tensor, torch.Tensor]], weight_mask: torch.Tensor,
                bias_mask: torch.Tensor | None, *, alpha: float, lr: float, init: float, steps: int,
                train_weights: bool) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
    """Fit one layer; returns (new weight, new bias, weight keep-mask, bias keep-mask or None)."""
    w = module.weight.detach().clone().requires_grad_(train_weights)
    has_bias = getattr(module, "bias", None) is not None
    b = module.bias.detach().clone().requires_grad_(train_weights) if has_bias else None
    P = torch.where(weight_mask, init, 0.0).to(w.dtype).requires_grad_(True)
    p = torch.where(bias_mask, init, 0.0).to(w.dtype).requires_grad_(True) if (has_bias and bias_mask is not None) else None
    leaves = [P] + ([p] if p is not None else []) + ([w] + ([b] if b is not None else []) if train_weights else [])
    opt = torch.optim.Adam(leaves, lr=lr)
    for step in range(steps):
        x, y = pairs[step % len(pairs)]
        opt.zero_grad(set_to_none=True)
        layerwise_objective(module, x, y, w, b, P, p, alpha).backward()
        opt.step()
        with torch.no_grad():
            P.clamp_(0.0, 1.0).mul_(weight_mask)
            if p is not None:
                p.clamp_(0.0, 1.0).mul_(bias_mask)
        if step % 50 == 49 and bool(((P == 0) | (P == 1)).all()) and (p is None or bool(((p == 0) | (p == 1)).all())):
            break
    keep_w = (P.detach() > 0.5) & weight_mask
    keep_b = None if p is None else (p.detach() > 0.5) & bias_mask
    new_b = None if b is None else b.detach() * (keep_b if keep_b is not None else 1)
    return w.detach() * keep_w, new_b, keep_w, keep_b


def layerwise_prune(model: nn.Module, params: Mapping[str, nn.Parameter], masks: dict[str, torch.Tensor],
                    batches: Sequence[Batch], rt: Runtime | None = None, *, alpha: float = 0.1, lr: float = 1e-3,
                    init: float = 0.3, steps: int = 500, train_weights: bool = True, rgp: bool = True,
                    rgp_batch: int = 256, on_layer: Callable[[str, int, int], None] | None = None,
                    generator: torch.Generator | None = None) -> None:
    """Prune every Linear/Conv layer whose weight is in `params`, last to first (updates `masks`).
    Only the inputs of `batches` are used. Without `rt`: no progress bar, RGP draws from `generator`."""
    if not 0 <= init <= 1 or steps < 1 or alpha < 0:
        raise BadArgumentError("layerwise pruning needs 0 <= init <= 1, steps >= 1 and alpha >= 0")
    names = _module_names(model, params)
    if not names:
        raise BadArgumentError("layerwise pruning found no Linear/Conv layer among the pruned parameters")
    modules = dict(model.named_modules())
    by_id = {id(p): n for n, p in params.items()}
    inputs = [x for x, _ in batches]
    gen = rt.generator if rt is not None else (generator if generator is not None else torch.Generator().manual_seed(0))
    bar_of = rt.bar if rt is not None else (lambda total, desc: nullcontext(_NoBar()))
    was_training = model.training
    model.eval()
    try:
        order = _call_order(model, names, inputs[0])
        with bar_of(len(order), "layerwise") as bar:
            for name in reversed(order):
                module = modules[name]
                wname = by_id[id(module.weight)]
                bname = by_id.get(id(module.bias)) if getattr(module, "bias", None) is not None else None
                pairs = _collect(model, module, inputs)
                new_w, new_b, keep_w, keep_b = prune_layer(
                    module, pairs, masks[wname], masks[bname] if bname else None, alpha=alpha, lr=lr, init=init,
                    steps=steps, train_weights=train_weights)
                with torch.no_grad():
                    module.weight.copy_(new_w)
                    if new_b is not None:
                        module.bias.copy_(new_b)
                masks[wname] = keep_w
                if bname is not None and keep_b is not None:
                    masks[bname] = keep_b
                apply_masks(params, masks)
                if rgp:
                    random_gradient_pruning(model, params, masks, inputs[0].shape[1:], batch_size=rgp_batch,
                                            generator=gen, probes=inputs[:1])
                kept = int(masks[wname].sum())
                if on_layer is not None:
                    on_layer(name, kept, masks[wname].numel())
                bar.update(1)
    finally:
        model.train(was_training)
