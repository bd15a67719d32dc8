"""PMMP, probabilistic minimax pruning (Barth & von Petersenn, arXiv 2505.17469).

Every pruned weight theta (the one the forward pass uses) gets three companions of its shape: a slab
value w, an inclusion probability gamma in [0, 1] and a multiplier u. The method solves

    min over theta, w, gamma   max over u   L(theta) + alpha*sum(gamma) + sum(u * B),
    B = (theta - w*gamma)^2 + w^2*gamma*(1 - gamma)  =  E[(theta - w*z)^2],  z ~ Bernoulli(gamma),

so the expected l0 norm sum(gamma) is minimised subject to theta being a sample of the spike-and-slab
w*z. Because B is the exact expectation, no Monte-Carlo sampling is needed. The multipliers only grow
(dB >= 0), which tightens the constraint over time: gamma is driven to {0, 1} and theta to w*gamma.
One Adam updates all four tensors (u by ascent), gamma is clamped to [0, 1] after each step.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ...errors import BadArgumentError
from .loop import Regularizer


def pmmp_bracket(theta: torch.Tensor, w: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """E[(theta - w z)^2] for z ~ Bernoulli(gamma), elementwise."""
    return (theta - w * gamma) ** 2 + w**2 * gamma * (1 - gamma)


def pmmp_penalty(theta: torch.Tensor, w: torch.Tensor, gamma: torch.Tensor, u: torch.Tensor, alpha: float,
                 u_scale: float = 1.0) -> torch.Tensor:
    """alpha*sum(gamma) + sum(u_scale*u*B): the part of the PMMP objective besides the data loss."""
    return alpha * gamma.sum() + (u_scale * u * pmmp_bracket(theta, w, gamma)).sum()


def pmmp_gradients(theta: torch.Tensor, w: torch.Tensor, gamma: torch.Tensor, u: torch.Tensor, alpha: float,
                   u_scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of `pmmp_penalty` for theta, w and gamma, and the *negated* gradient for u (so that
    a descent step on u is the ascent the minimax needs)."""
    su = u_scale * u
    r = theta - w * gamma
    g_theta = 2 * su * r
    g_w = -2 * su * gamma * r + 2 * su * w * gamma * (1 - gamma)
    g_gamma = -2 * su * w * r + su * w**2 * (1 - 2 * gamma) + alpha
    g_u = -u_scale * (r**2 + w**2 * gamma * (1 - gamma))
    return g_theta, g_w, g_gamma, g_u


class _Ascent(torch.autograd.Function):
    """Identity whose gradient is negated: autograd then gives u the ascent direction the minimax needs."""

    @staticmethod
    def forward(ctx: object, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return x.view_as(x)

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return -grad


class PMMP(Regularizer):
    """The PMMP penalty on `params`; its w, gamma and u are exposed for inspection (gamma = the
    inclusion probabilities)."""

    def __init__(self, params: Mapping[str, nn.Parameter], alpha: float, *, init_gamma: float = 1.0,
                 init_u: float = 0.0, u_scale: float = 1.0) -> None:
        if alpha < 0 or not 0 <= init_gamma <= 1 or u_scale <= 0:
            raise BadArgumentError("PMMP needs alpha >= 0, 0 <= init_gamma <= 1 and u_scale > 0")
        self.params, self.alpha, self.u_scale = dict(params), float(alpha), float(u_scale)
        self.w = {n: nn.Parameter(p.detach().clone()) for n, p in self.params.items()}
        self.gamma = {n: nn.Parameter(torch.full_like(p.detach(), init_gamma)) for n, p in self.params.items()}
        self.u = {n: nn.Parameter(torch.full_like(p.detach(), init_u)) for n, p in self.params.items()}

    def extra_parameters(self) -> list[torch.Tensor]:
        return [*self.w.values(), *self.gamma.values(), *self.u.values()]

    def penalty(self) -> torch.Tensor:
        """`pmmp_penalty` summed over the parameters; backward gives theta, w and gamma their descent
        gradients and u the negated one, exactly as `add_gradients` does."""
        total = torch.zeros(())
        for n, theta in self.params.items():
            total = total + pmmp_penalty(theta, self.w[n], self.gamma[n], _Ascent.apply(self.u[n]), self.alpha,
                                         self.u_scale)
        return total

    @torch.no_grad()
    def add_gradients(self) -> None:
        for n, theta in self.params.items():
            g_theta, g_w, g_gamma, g_u = pmmp_gradients(theta, self.w[n], self.gamma[n], self.u[n], self.alpha, self.u_scale)
            theta.grad = g_theta if theta.grad is None else theta.grad.add_(g_theta)
            self.w[n].grad, self.gamma[n].grad, self.u[n].grad = g_w, g_gamma, g_u

    @torch.no_grad()
    def after_step(self) -> None:
        for g in self.gamma.values():
            g.clamp_(0.0, 1.0)

    @torch.no_grad()
    def value(self) -> float:
        return float(sum(float(pmmp_penalty(p, self.w[n], self.gamma[n], self.u[n], self.alpha, self.u_scale))
                         for n, p in self.params.items()))

    @torch.no_grad()
    def undecided_fraction(self, margin: float = 0.05) -> float:
        """Share of gammas still farther than `margin` from both 0 and 1."""
        total = sum(g.numel() for g in self.gamma.values())
        mid = sum(int(((g > margin) & (g < 1 - margin)).sum()) for g in self.gamma.values())
        return mid / max(total, 1)
