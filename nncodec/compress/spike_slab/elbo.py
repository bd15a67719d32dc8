"""The spike-and-slab variational objective per weight, in closed form.

Prior:        z ~ Bernoulli(lam),  w | z=1 ~ N(0, sigma0^2),  w | z=0 = 0.
Variational:  q(w, z) = Bern(z; phi) * [z N(w; mu, s^2) + (1 - z) delta_0].

    KL_j = phi log(phi/lam) + (1-phi) log((1-phi)/(1-lam)) + phi * KL(N(mu, s^2) || N(0, sigma0^2)),
    KL(N(mu, s^2) || N(0, sigma0^2)) = log(sigma0/s) + (s^2 + mu^2) / (2 sigma0^2) - 1/2.

E_q[log p(D|w)] is linear in each phi_j (z_j is Bernoulli), with slope
Delta_j = E[log p(D|w) | z_j=1] - E[log p(D|w) | z_j=0]. Setting the derivative of the ELBO in phi_j
to zero gives the closed-form coordinate update

    logit phi_j = logit lam - KL(N(mu_j, s_j^2) || N(0, sigma0^2)) + Delta_j / a,

where a is the KL weight (1 for the ELBO itself, < 1 while the KL is annealed).
"""

from __future__ import annotations

import math

import torch


def slab_kl(mu: torch.Tensor, s: torch.Tensor, sigma0: float) -> torch.Tensor:
    """KL(N(mu, s^2) || N(0, sigma0^2)), elementwise."""
    return math.log(sigma0) - torch.log(s) + (s * s + mu * mu) / (2 * sigma0 * sigma0) - 0.5


def bernoulli_kl(phi: torch.Tensor, lam: float) -> torch.Tensor:
    """KL(Bern(phi) || Bern(lam)), elementwise (0 log 0 = 0)."""
    return (torch.xlogy(phi, phi) - phi * math.log(lam)
            + torch.xlogy(1 - phi, 1 - phi) - (1 - phi) * math.log1p(-lam))


def spike_slab_kl(phi: torch.Tensor, mu: torch.Tensor, s: torch.Tensor, lam: float, sigma0: float) -> torch.Tensor:
    """KL(q(w, z) || p(w, z)) per weight."""
    return bernoulli_kl(phi, lam) + phi * slab_kl(mu, s, sigma0)


def phi_update(delta: torch.Tensor, mu: torch.Tensor, s: torch.Tensor, lam: float, sigma0: float,
               kl_weight: float = 1.0) -> torch.Tensor:
    """The phi maximising E[log-lik] - kl_weight * KL for the log-likelihood slopes `delta`."""
    logit = math.log(lam) - math.log1p(-lam) - slab_kl(mu, s, sigma0) + delta / kl_weight
    return torch.sigmoid(logit)


def lrt_weight_moments(phi: torch.Tensor, mu: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of w = z * N(mu, s^2), z ~ Bern(phi): phi mu and phi s^2 + phi (1 - phi) mu^2
    (= phi (s^2 + mu^2) - phi^2 mu^2, written so that it is never negative)."""
    return phi * mu, phi * s * s + phi * (1 - phi) * mu * mu


def input_feature_pip(pip: torch.Tensor) -> torch.Tensor:
    """P(at least one outgoing weight of an input is included) = 1 - prod(1 - phi) over the outputs
    (axis 0) and any kernel positions, for a weight of shape (out, in, *kernel)."""
    p = pip.double().clamp(0, 1)
    p = p.transpose(0, 1).reshape(p.shape[1], -1) if p.dim() > 1 else p.reshape(-1, 1)
    return (-torch.expm1(torch.log1p(-p).sum(dim=1))).float()
