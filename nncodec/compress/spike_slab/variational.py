"""Spike-and-slab variational pruning as pieces a training loop calls (see elbo.py for the formulas).

    ss = SpikeSlab(model, data_size=len(train_set))
    opt = torch.optim.Adam([*model.parameters(), *ss.parameters()], lr=1e-3)
    for x, y in loader:
        loss = F.cross_entropy(model(x), y) + ss.penalty()   # mean loss + KL / N
        opt.zero_grad(); loss.backward(); opt.step(); ss.after_step()
    ss.freeze_mask()    # keep phi > threshold, weights = mu; fine-tune as usual, pruned weights stay 0
    pips = ss.pips()

The model's own weights are the slab means mu. While attached, every pruned Linear/Conv layer runs
with the local reparameterization trick: its pre-activation is sampled from N(x (phi mu), x^2 var_w)
with var_w = phi s^2 + phi (1 - phi) mu^2 (eval mode: the mean only). phi is not trained by the
optimizer: after each step it is set by the closed-form update, with

    Delta_j = N * d(mean minibatch log-likelihood)/d phi_j     (bias-corrected moving average over steps),

the slope of the expected log-likelihood in phi_j. For the exact mean-field expectation this slope
*is* E[ll | z_j=1] - E[ll | z_j=0] (the expectation is linear in phi_j); under the local
reparameterization it is the same difference whenever the log-likelihood is locally quadratic in
each pre-activation (the phi^2 terms of the mean and of the variance cancel).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import BadArgumentError
from ..training.targets import Targets, select_parameters
from .elbo import lrt_weight_moments, phi_update, spike_slab_kl

_SUPPORTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _owners(model: nn.Module) -> dict[str, nn.Module]:
    return {(f"{m}." if m else "") + "weight": mod for m, mod in model.named_modules() if isinstance(mod, _SUPPORTED)}


def _apply(module: nn.Module, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    if isinstance(module, nn.Linear):
        return F.linear(x, weight, bias)
    return module._conv_forward(x, weight, bias)  # type: ignore[operator]


def _inverse_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y))


class SpikeSlab:
    """A spike-and-slab posterior over the weights of a model's Linear/Conv layers."""

    def __init__(self, model: nn.Module, *, data_size: int, prior_inclusion: float = 1e-2, prior_sd: float = 0.1,
                 init_phi: float = 0.9, init_sd: float = 1e-3, ema: float = 0.99, kl_weight: float = 1.0,
                 threshold: float = 0.5, targets: Targets = None) -> None:
        if not 0 < prior_inclusion < 1 or not 0 < init_phi < 1:
            raise BadArgumentError("prior_inclusion and init_phi must be within (0, 1)")
        if prior_sd <= 0 or init_sd <= 0 or data_size < 1 or not 0 <= ema < 1 or not 0 <= threshold <= 1:
            raise BadArgumentError("need prior_sd > 0, init_sd > 0, data_size >= 1, 0 <= ema < 1, 0 <= threshold <= 1")
        self.model, self.n = model, int(data_size)
        self.lam, self.sigma0, self.ema, self.threshold = float(prior_inclusion), float(prior_sd), float(ema), float(threshold)
        self.kl_weight = float(kl_weight)
        owners = _owners(model)
        self.params = select_parameters(model, targets)
        bad = [n for n in self.params if n not in owners]
        if bad:
            raise BadArgumentError(f"spike-and-slab covers Linear and Conv1d/2d/3d weights only, not {', '.join(bad)}")
        self.modules = {n: owners[n] for n in self.params}
        self.rho = {n: nn.Parameter(torch.full_like(p.detach(), _inverse_softplus(init_sd))) for n, p in self.params.items()}
        self.phi = {n: torch.full_like(p.detach(), init_phi).requires_grad_(True) for n, p in self.params.items()}
        self.delta: dict[str, torch.Tensor] = {}
        self._acc: dict[str, torch.Tensor] = {}
        self.steps = 0
        self.frozen: dict[str, torch.Tensor] | None = None
        self._hooks: list[Any] = []
        self._attach()

    # ------------------------------------------------------------------ the variational layers

    def _attach(self) -> None:
        for name, module in self.modules.items():
            module.forward = self._forward_for(name, module)  # instance attribute shadows the class method

    def _detach(self) -> None:
        for module in self.modules.values():
            module.__dict__.pop("forward", None)

    def _forward_for(self, name: str, module: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        def forward(x: torch.Tensor) -> torch.Tensor:
            mean_w, var_w = lrt_weight_moments(self.phi[name], module.weight, self.sd(name))
            m = _apply(module, x, mean_w, module.bias)
            if not module.training:
                return m
            v = _apply(module, x * x, var_w, None)
            return m + torch.sqrt(v + 1e-16) * torch.randn_like(m)

        return forward

    def sd(self, name: str) -> torch.Tensor:
        return F.softplus(self.rho[name])

    def parameters(self) -> list[nn.Parameter]:
        """What the optimizer must update besides the model: the slab scales' rho (s = softplus(rho))."""
        return list(self.rho.values())

    # ------------------------------------------------------------------ the loop's calls

    def penalty(self) -> torch.Tensor:
        """kl_weight * KL / N: added to a *mean* per-example loss it makes the negative ELBO per example.
        phi enters detached, its KL part acts only through the closed-form update."""
        if self.frozen is not None:
            return torch.zeros(())
        total = sum(spike_slab_kl(self.phi[n].detach(), p, self.sd(n), self.lam, self.sigma0).sum()
                    for n, p in self.params.items())
        return total * (self.kl_weight / self.n)

    @torch.no_grad()
    def after_step(self) -> None:
        """The closed-form phi update from this step's gradient (call after loss.backward() and the
        optimizer step); once the mask is frozen: re-zero the pruned weights."""
        if self.frozen is not None:
            for n, p in self.params.items():
                p.mul_(self.frozen[n].to(p.dtype))
            return
        for n, mu in self.params.items():
            phi = self.phi[n]
            if phi.grad is None:
                continue
            d = -self.n * phi.grad  # loss = mean negative log-likelihood: slope of the total log-likelihood
            acc = self._acc[n] = self.ema * self._acc.get(n, torch.zeros_like(d)) + (1 - self.ema) * d
            self.delta[n] = acc / (1 - self.ema ** (self.steps + 1))  # bias-corrected average, as Adam's moments
            new = phi_update(self.delta[n], mu, self.sd(n), self.lam, self.sigma0, max(self.kl_weight, 1e-6))
            phi.copy_(new.clamp(1e-6, 1 - 1e-6))
            phi.grad = None
        self.steps += 1

    def pips(self) -> dict[str, torch.Tensor]:
        """The posterior inclusion probabilities, by parameter name (detached copies on the CPU)."""
        return {n: p.detach().cpu().clone() for n, p in self.phi.items()}

    def masks(self, threshold: float | None = None) -> dict[str, torch.Tensor]:
        """phi > threshold (default: the median-probability model, 0.5)."""
        tau = self.threshold if threshold is None else float(threshold)
        return {n: p.detach() > tau for n, p in self.phi.items()}

    @torch.no_grad()
    def prune(self, threshold: float | None = None) -> dict[str, torch.Tensor]:
        """End the variational phase: weights become mu where phi > threshold, exactly 0 elsewhere,
        and the layers run deterministically again. Returns the masks."""
        if threshold is not None:
            self.threshold = float(threshold)
        masks = self.masks()
        self._detach()
        for n, p in self.params.items():
            p.mul_(masks[n].to(p.dtype))
        self.frozen = masks
        return masks

    def freeze_mask(self) -> dict[str, torch.Tensor]:
        """Prune (if not yet) and keep pruned weights at zero through further training: their gradients
        are zeroed by hooks and `after_step` re-zeroes them."""
        masks = self.frozen if self.frozen is not None else self.prune()
        if not self._hooks:
            for n, p in self.params.items():
                m = masks[n]
                self._hooks.append(p.register_hook(lambda g, m=m: g * m.to(g.dtype)))
        return masks

    def release(self) -> None:
        """Remove the variational layers and gradient hooks (the model is a plain model again)."""
        self._detach()
        for h in self._hooks:
            h.remove()
        self._hooks.clear()

    def kl(self) -> float:
        """The total KL(q || p) in nats (for logging)."""
        with torch.no_grad():
            return float(sum(spike_slab_kl(self.phi[n], p, self.sd(n), self.lam, self.sigma0).sum()
                             for n, p in self.params.items()))

    def to_state_dict(self) -> dict[str, torch.Tensor]:
        """The variational state by name: `<param>.pip`, `<param>.slab_sd` and `<param>.delta`."""
        out: dict[str, torch.Tensor] = {}
        for n in self.params:
            out[f"{n}.pip"] = self.phi[n].detach().cpu().clone()
            out[f"{n}.slab_sd"] = self.sd(n).detach().cpu().clone()
            if n in self.delta:
                out[f"{n}.delta"] = self.delta[n].detach().cpu().clone()
        return out
