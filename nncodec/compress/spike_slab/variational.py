"""Spike-and-slab variational pruning as pieces a training loop calls (see elbo.py for the formulas).

    ss = SpikeSlab(model, data_size=len(train_set), kl_weight=0.1)   # a Pruner (training/pieces.py)
    opt = torch.optim.Adam([*model.parameters(), *ss.parameters()], lr=1e-3)
    for x, y in loader:
        loss = F.cross_entropy(model(x), y) + ss.penalty()   # mean loss + kl_weight * KL / N
        opt.zero_grad(); loss.backward(); opt.step(); ss.after_step()
    ss.prune()          # keep phi > threshold, weights = mu; the mask is frozen: fine-tune as usual
    ...
    ss.save("model.nnc", levels=..., keep_pip=True)   # mask (or PIPs) + quantized survivors

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
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...api import save_file
from ...codecs.pip import DEFAULT_BITS, DEFAULT_LIMIT
from ...errors import BadArgumentError
from ..training import distributed as dist_
from ..training.export import pruned_compressor
from ..training.pieces import Pruner
from ..training.targets import Targets, apply_masks
from .elbo import lrt_weight_moments, phi_update, spike_slab_kl
from .export import pip_compressor

_SUPPORTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _owners(model: nn.Module) -> dict[str, nn.Module]:
    return {(f"{m}." if m else "") + "weight": mod for m, mod in model.named_modules() if isinstance(mod, _SUPPORTED)}


def _apply(module: nn.Module, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    if isinstance(module, nn.Linear):
        return F.linear(x, weight, bias)
    return module._conv_forward(x, weight, bias)  # type: ignore[operator]


def _mean_over_ranks(grad: torch.Tensor) -> torch.Tensor:
    if not dist_.active():
        return grad
    grad = grad.clone()
    dist_.all_reduce_mean_([grad])
    return grad


def _inverse_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y))


class SpikeSlab(Pruner):
    """A spike-and-slab posterior over the weights of a model's Linear/Conv layers, as a training piece
    (`Pruner`, see training/pieces.py): penalty / add_gradients / after_step / prune / freeze_mask /
    masks / to_state_dict / save, like PMMPPruner and the others.

    `kl_weight` a < 1 tempers the ELBO (E[log-lik] - a KL: the likelihood counts 1/a times); with
    `anneal_steps` > 0 the weight ramps linearly from a/anneal_steps to a over that many steps."""

    method = "spike-slab"

    def __init__(self, model: nn.Module, *, data_size: int, prior_inclusion: float | Mapping[str, float] = 1e-2, prior_sd: float = 0.1,
                 init_phi: float = 0.9, init_sd: float = 1e-3, ema: float = 0.99, kl_weight: float = 1.0,
                 anneal_steps: int = 0, threshold: float = 0.5, targets: Targets = None,
                 callback: Callable[[dict[str, Any]], None] | None = None) -> None:
        lams = dict(prior_inclusion) if isinstance(prior_inclusion, Mapping) else {}
        default_lam = float(lams.pop("*", 1e-2)) if isinstance(prior_inclusion, Mapping) else float(prior_inclusion)
        if not all(0 < v < 1 for v in (default_lam, *lams.values())) or not 0 < init_phi < 1:
            raise BadArgumentError("prior_inclusion and init_phi must be within (0, 1)")
        if prior_sd <= 0 or init_sd <= 0 or data_size < 1 or not 0 <= ema < 1 or not 0 <= threshold <= 1:
            raise BadArgumentError("need prior_sd > 0, init_sd > 0, data_size >= 1, 0 <= ema < 1, 0 <= threshold <= 1")
        if not 0 < kl_weight <= 1 or anneal_steps < 0:
            raise BadArgumentError("need 0 < kl_weight <= 1 and anneal_steps >= 0")
        super().__init__(model, None, targets=targets, rgp=False, callback=callback)
        owners = _owners(self.model)
        bad = [n for n in self.params if n not in owners]
        if bad:
            raise BadArgumentError(f"spike-and-slab covers Linear and Conv1d/2d/3d weights only, not {', '.join(bad)}")
        self.n = int(data_size)
        unknown = sorted(set(lams) - set(self.params))
        if unknown:
            raise BadArgumentError(f"prior_inclusion names tensors that are not pruned: {', '.join(unknown)}")
        # per-tensor prior inclusion probability: a sparser prior on the input layer is a different prior
        # on *features* (benchmarks/RESULTS.md, "Feature selection on fresh seeds (session 5)")
        self.lams = {n: float(lams.get(n, default_lam)) for n in self.params}
        self.lam, self.sigma0, self.ema, self.threshold = default_lam, float(prior_sd), float(ema), float(threshold)
        self.target_kl_weight, self.anneal_steps = float(kl_weight), int(anneal_steps)
        self.modules = {n: owners[n] for n in self.params}
        self.rho = {n: nn.Parameter(torch.full_like(p.detach(), _inverse_softplus(init_sd))) for n, p in self.params.items()}
        for r in self.rho.values():  # rho is not a module parameter, so DDP does not average its gradient: this
            r.register_hook(_mean_over_ranks)  # does, during backward (before the optimizer step uses it)
        self.phi = {n: torch.full_like(p.detach(), init_phi).requires_grad_(True) for n, p in self.params.items()}
        self.delta: dict[str, torch.Tensor] = {}
        self._acc: dict[str, torch.Tensor] = {}
        self.steps_done = 0
        self.pruned = False
        self.kl_weight = self._scheduled_kl_weight()
        self._attach()

    def _scheduled_kl_weight(self) -> float:
        if self.anneal_steps <= 0:
            return self.target_kl_weight
        return self.target_kl_weight * min(1.0, (self.steps_done + 1) / self.anneal_steps)

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

    @property
    def masks(self) -> dict[str, torch.Tensor]:
        """Before `prune`: phi > threshold (the median-probability model at 0.5); after: the frozen mask."""
        return self._masks if self.pruned else self.masks_at()

    def masks_at(self, threshold: float | None = None) -> dict[str, torch.Tensor]:
        tau = self.threshold if threshold is None else float(threshold)
        return {n: p.detach() > tau for n, p in self.phi.items()}

    def penalty(self) -> torch.Tensor:
        """kl_weight * KL / N: added to a *mean* per-example loss it makes the negative (tempered) ELBO
        per example. phi enters detached, its KL part acts only through the closed-form update."""
        if self.pruned:
            return torch.zeros(())
        total = sum(spike_slab_kl(self.phi[n].detach(), p, self.sd(n), self.lams[n], self.sigma0).sum()
                    for n, p in self.params.items())
        return total * (self.kl_weight / self.n)

    def add_gradients(self) -> None:
        """The penalty's gradient added to `.grad` (instead of `penalty()` in the loss; what the shared
        epoch loop and the framework adapters call after backward)."""
        if not self.pruned:
            self.penalty().backward()

    def penalty_value(self) -> float:
        return 0.0 if self.pruned else self.kl() * self.kl_weight / self.n

    @torch.no_grad()
    def after_step(self) -> None:
        """The closed-form phi update from this step's gradient (call after loss.backward() and the
        optimizer step); once the mask is frozen: re-zero the pruned weights."""
        if self.pruned:
            if self.frozen:
                apply_masks(self.params, self._masks)
            return
        if dist_.active():  # phi is not a module parameter: DDP does not average its gradient (rho's: a hook)
            dist_.all_reduce_mean_([p.grad for p in self.phi.values() if p.grad is not None])
        for n, mu in self.params.items():
            phi = self.phi[n]
            if phi.grad is None:
                continue
            d = -self.n * phi.grad  # loss = mean negative log-likelihood: slope of the total log-likelihood
            acc = self._acc[n] = self.ema * self._acc.get(n, torch.zeros_like(d)) + (1 - self.ema) * d
            self.delta[n] = acc / (1 - self.ema ** (self.steps_done + 1))  # bias-corrected, as Adam's moments
            new = phi_update(self.delta[n], mu, self.sd(n), self.lams[n], self.sigma0, max(self.kl_weight, 1e-6))
            phi.copy_(new.clamp(1e-6, 1 - 1e-6))
            phi.grad = None
        self.steps_done += 1
        self.kl_weight = self._scheduled_kl_weight()

    def pips(self) -> dict[str, torch.Tensor]:
        """The posterior inclusion probabilities, by parameter name (detached copies on the CPU)."""
        return {n: p.detach().cpu().clone() for n, p in self.phi.items()}

    @torch.no_grad()
    def prune(self, evaluate: Any = None, *, threshold: float | None = None, freeze: bool = True,
              **_ignored: Any) -> dict[str, torch.Tensor]:
        """End the variational phase: weights become mu where phi > threshold, exactly 0 elsewhere, and
        the layers run deterministically again; with `freeze` (default) the mask is frozen for
        fine-tuning. Returns the masks. `evaluate` and the other Pruner options (example_inputs, ...)
        are accepted and not needed: the PIPs alone decide."""
        if threshold is not None:
            self.threshold = float(threshold)
        self._masks = self.masks_at()
        dist_.broadcast_(list(self._masks.values()))
        self._detach()
        apply_masks(self.params, self._masks)
        self.pruned = True
        self._emit("spike-slab-prune", threshold=self.threshold, kept=sum(int(m.sum()) for m in self._masks.values()))
        if freeze:
            self.freeze_mask()
        return self._masks

    def freeze_mask(self) -> dict[str, torch.Tensor]:  # type: ignore[override]
        """Prune at the threshold (if not yet) and keep pruned weights at zero through further training:
        their gradients are zeroed by hooks and `after_step` re-zeroes them. The mask stays the PIPs'
        (a kept weight that happens to be 0 keeps its slot)."""
        if not self.pruned:
            return self.prune(freeze=True)
        if not self.frozen:
            self._hooks = [p.register_hook(lambda g, n=n: g * self._masks[n].to(g.dtype))
                           for n, p in self.params.items() if p.requires_grad]
            self.frozen = True
        return self._masks

    def release(self) -> None:
        """Remove the variational layers and gradient hooks (the model is a plain model again)."""
        self._detach()
        self.unfreeze()

    def kl(self) -> float:
        """The total KL(q || p) in nats (for logging)."""
        with torch.no_grad():
            return float(sum(spike_slab_kl(self.phi[n], p, self.sd(n), self.lams[n], self.sigma0).sum()
                             for n, p in self.params.items()))

    @torch.no_grad()
    def elbo(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], loss_fn: Callable[..., torch.Tensor],
             samples: int = 4) -> dict[str, float]:
        """The (untempered) ELBO in nats on `batches`, before `prune`: E_q[log p(D|w)] estimated with
        `samples` local-reparameterization passes (loss_fn = the mean negative log-likelihood of a batch,
        as in training; constants it leaves out cancel between runs on the same data) minus KL(q || p).
        What empirical Bayes maximises to choose the prior (lambda, sigma0) on the training data."""
        if self.pruned:
            raise BadArgumentError("elbo() is the variational phase's: call it before prune()")
        was = self.model.training
        self.model.train()
        total, count = 0.0, 0
        for _ in range(max(1, int(samples))):
            for x, y in batches:
                total += float(loss_fn(self.model(x), y)) * len(x)
                count += len(x)
        self.model.train(was)
        n = count / max(1, int(samples))
        expected_ll = -total / max(1, int(samples))
        kl = self.kl()
        return {"expected_log_likelihood": expected_ll, "kl": kl, "elbo": expected_ll - kl, "examples": n}

    def variational_state(self) -> dict[str, torch.Tensor]:
        """The variational state by name: `<param>.pip`, `<param>.slab_sd` and `<param>.delta`."""
        out: dict[str, torch.Tensor] = {}
        for n in self.params:
            out[f"{n}.pip"] = self.phi[n].detach().cpu().clone()
            out[f"{n}.slab_sd"] = self.sd(n).detach().cpu().clone()
            if n in self.delta:
                out[f"{n}.delta"] = self.delta[n].detach().cpu().clone()
        return out

    # ------------------------------------------------------------------ export (Pruner.to_state_dict: what the file decodes to)

    def compressor(self, steps: Mapping[str, float] | None = None, *, keep_pip: bool = False, bits: int = DEFAULT_BITS,
                   limit: int = DEFAULT_LIMIT) -> Callable[[str, Any], Any]:
        """The per-tensor compressor of the file: mask + levels, or with `keep_pip` PIPs + levels."""
        if not keep_pip:
            return pruned_compressor(self.model, steps, self.targets)
        return pip_compressor(self.model, steps, self.targets, pips=self.pips(), threshold=self.threshold, bits=bits,
                              limit=limit)

    def save(self, path: str | os.PathLike, *, steps: Mapping[str, float] | None = None, levels: float | None = None,
             keep_pip: bool = False, bits: int = DEFAULT_BITS, limit: int = DEFAULT_LIMIT,
             metadata: Mapping[str, str] | None = None, prefer: str = "size") -> int:
        """Write the .nnc file (rank 0 only; every rank waits): mask + quantized survivors, with
        `keep_pip` the PIPs instead of the mask (the mask is then derived from them). Call after `prune`."""
        if not self.pruned:
            raise BadArgumentError("prune() first: the file holds the pruned model")
        size = 0
        if dist_.is_main():
            meta = {"nncodec.training": self.method, **dict(metadata or {})}
            comp = self.compressor(self.steps(steps, levels), keep_pip=keep_pip, bits=bits, limit=limit)
            size = save_file(self.model.state_dict(), path, metadata=meta, prefer=prefer, compressor=comp)
        dist_.barrier()
        return dist_.broadcast_int(size)
