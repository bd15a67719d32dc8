"""Smooth sparsity penalties applied through their exact gradients: DRR (a smooth l0) and L1.

DRR:  alpha * sum(1 - exp(-beta*|theta|)),  gradient alpha*beta*sign(theta)*exp(-beta*|theta|).
      Near zero it pulls like L1 with strength alpha*beta; far from zero it lets go, so large
      weights are not shrunk (the bias L1 is known for). With `normalize_layers`, tensor t's
      penalty is scaled by total/(size_t * tensors): each tensor's penalty becomes its mean over
      its weights times total/tensors, so every tensor weighs the same in the sum whatever its
      size. Per weight, that pulls small tensors (biases, the last layer) harder than large ones,
      which a large first layer would otherwise dominate.
L1:   alpha * sum(|theta|), gradient alpha*sign(theta).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ...errors import BadArgumentError
from .loop import Regularizer


def drr_penalty(theta: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    return alpha * (1 - torch.exp(-beta * theta.abs())).sum()


def drr_gradient(theta: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    return (alpha * beta) * torch.sign(theta) * torch.exp(-beta * theta.abs())


def _layer_scales(params: Mapping[str, nn.Parameter], normalize: bool) -> dict[str, float]:
    if not normalize:
        return dict.fromkeys(params, 1.0)
    total = sum(p.numel() for p in params.values())
    return {n: total / (max(p.numel(), 1) * len(params)) for n, p in params.items()}


class DRR(Regularizer):
    def __init__(self, params: Mapping[str, nn.Parameter], alpha: float, beta: float = 5.0,
                 normalize_layers: bool = False) -> None:
        if alpha < 0 or beta <= 0:
            raise BadArgumentError(f"DRR needs alpha >= 0 and beta > 0 (got alpha={alpha}, beta={beta})")
        self.params, self.alpha, self.beta = dict(params), float(alpha), float(beta)
        self.scales = _layer_scales(self.params, normalize_layers)

    def penalty(self) -> torch.Tensor:
        return sum((drr_penalty(p, self.alpha * self.scales[n], self.beta) for n, p in self.params.items()),
                   torch.zeros(()))

    @torch.no_grad()
    def add_gradients(self) -> None:
        for n, p in self.params.items():
            g = drr_gradient(p, self.alpha * self.scales[n], self.beta)
            p.grad = g if p.grad is None else p.grad.add_(g)

    @torch.no_grad()
    def value(self) -> float:
        return float(sum(float(drr_penalty(p, self.alpha * self.scales[n], self.beta)) for n, p in self.params.items()))


class L1(Regularizer):
    def __init__(self, params: Mapping[str, nn.Parameter], alpha: float) -> None:
        if alpha < 0:
            raise BadArgumentError(f"L1 needs alpha >= 0 (got {alpha})")
        self.params, self.alpha = dict(params), float(alpha)

    def penalty(self) -> torch.Tensor:
        return self.alpha * sum((p.abs().sum() for p in self.params.values()), torch.zeros(()))

    @torch.no_grad()
    def add_gradients(self) -> None:
        for p in self.params.values():
            g = self.alpha * torch.sign(p)
            p.grad = g if p.grad is None else p.grad.add_(g)

    @torch.no_grad()
    def value(self) -> float:
        return self.alpha * float(sum(float(p.abs().sum()) for p in self.params.values()))
