"""Which parameters the training-aware methods prune, and the masks that keep pruned weights at zero.

By default the weights of Linear and Conv layers: biases and normalisation parameters are few, and
pruning them rarely pays for the accuracy they cost. Masks are boolean tensors on the parameter's
device; a pruned weight is exactly zero, so the mask can always be recovered from the weights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import torch
from torch import nn

from ...errors import BadArgumentError


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / DataParallel (masks and names refer to it)."""
    while isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    return model

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)

Targets = str | Iterable[str] | Callable[[str, nn.Parameter, nn.Module], bool] | None


def _layer_params(model: nn.Module, with_bias: bool) -> dict[str, nn.Parameter]:
    out: dict[str, nn.Parameter] = {}
    for mname, module in model.named_modules():
        if isinstance(module, _LAYERS):
            prefix = f"{mname}." if mname else ""
            if isinstance(module.weight, nn.Parameter):
                out[prefix + "weight"] = module.weight
            if with_bias and isinstance(getattr(module, "bias", None), nn.Parameter):
                out[prefix + "bias"] = module.bias
    return out


def select_parameters(model: nn.Module, targets: Targets = None) -> dict[str, nn.Parameter]:
    """The parameters to prune, by name (in registration order).

    targets: None or "weights" (Linear/Conv weights), "weights+biases" (their biases too), "all"
    (every floating-point parameter), a list of parameter names, or a predicate(name, param, module).
    """
    named = dict(model.named_parameters())
    if targets is None or targets == "weights":
        chosen = _layer_params(model, with_bias=False)
    elif targets == "weights+biases":
        chosen = _layer_params(model, with_bias=True)
    elif targets == "all":
        chosen = {n: p for n, p in named.items() if p.is_floating_point()}
    elif isinstance(targets, str):
        raise BadArgumentError(f"targets must be 'weights', 'weights+biases', 'all', names or a predicate, not {targets!r}")
    elif callable(targets):
        owners = {}
        for mname, module in model.named_modules():
            for pname, _ in module.named_parameters(recurse=False):
                owners[f"{mname}.{pname}" if mname else pname] = module
        chosen = {n: p for n, p in named.items() if targets(n, p, owners[n])}
    else:
        names = list(targets)
        missing = [n for n in names if n not in named]
        if missing:
            raise BadArgumentError(f"no parameter named {', '.join(map(repr, missing))} in the model")
        chosen = {n: named[n] for n in names}
    bad = [n for n, p in chosen.items() if not p.is_floating_point()]
    if bad:
        raise BadArgumentError(f"only floating-point parameters can be pruned: {', '.join(bad)}")
    if not chosen:
        raise BadArgumentError("the model has no parameters to prune (no Linear/Conv layers?); pass targets=")
    return chosen


def masks_from_weights(params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Masks of the non-zero entries: a pruned weight is exactly zero, so this recovers the mask."""
    return {n: p.detach() != 0 for n, p in params.items()}


@torch.no_grad()
def apply_masks(params: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]) -> None:
    """Zero every masked-out weight (in place)."""
    for n, p in params.items():
        p.mul_(masks[n].to(p.dtype))


def mask_gradients(params: Mapping[str, nn.Parameter], masks: Mapping[str, torch.Tensor]) -> None:
    """Zero the gradients of pruned weights, so Adam's moments for them stay zero and they stay pruned."""
    for n, p in params.items():
        if p.grad is not None:
            p.grad.mul_(masks[n].to(p.grad.dtype))


def count_nonzero(params: Mapping[str, torch.Tensor]) -> int:
    return int(sum(int(torch.count_nonzero(p.detach())) for p in params.values()))


def count_total(params: Mapping[str, torch.Tensor]) -> int:
    return int(sum(p.numel() for p in params.values()))
