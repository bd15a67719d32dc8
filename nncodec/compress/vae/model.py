"""The VAE of arXiv 2408.14513 on parameter chunks, and its training (torch, CPU, deterministic).

Choices the paper leaves open (documented in benchmarks/RESULTS.md):
- architecture: encoder chunk -> hidden (ReLU) -> (mu, log-variance) of `latent` numbers; decoder
  latent -> hidden (ReLU) -> chunk. One hidden layer each side, `hidden` units (default 256).
- data scale: chunks are divided by one global scale s (the sd of all coded parameters) for
  training; s is folded into the decoder's last layer afterwards, so the stored decoder outputs
  weights directly.
- likelihood: Gaussian with the variance of the training noise (noise_rel x s), so the ELBO is
  sum((x - x_hat)^2) / (2 noise^2) + KL(q(z|x) || N(0, I)) per chunk; reparameterization
  z = mu + exp(logvar / 2) * eps.
- noisy copies: every training epoch sees fresh Gaussian noise on the parameters (sd noise_rel x s);
  the validation set is a fixed set of noisy copies. Early stopping on the validation
  *reconstruction loss* of the posterior means (patience `patience` epochs, at most `epochs`),
  keeping the best weights — accuracy is checked afterwards, on the decoded file, by the budget.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


class ChunkVAE(nn.Module):
    def __init__(self, chunk: int, latent: int, hidden: int, activation: str = "relu") -> None:
        super().__init__()
        act = nn.ReLU if activation == "relu" else nn.Tanh
        self.activation = activation
        self.enc = nn.Sequential(nn.Linear(chunk, hidden), act())
        self.mu = nn.Linear(hidden, latent)
        self.logvar = nn.Linear(hidden, latent)
        self.dec = nn.Sequential(nn.Linear(latent, hidden), act(), nn.Linear(hidden, chunk))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.enc(x)
        return self.mu(h), self.logvar(h).clamp(-30.0, 20.0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        return self.dec(z), mu, logvar


@dataclass
class TrainLog:
    epochs: int
    best_epoch: int
    best_val: float
    seconds: float
    stopped: str  # "patience", "max epochs" or "time"


def elbo_loss(model: ChunkVAE, x: torch.Tensor, noise: float) -> torch.Tensor:
    x_hat, mu, logvar = model(x)
    rec = ((x - x_hat) ** 2).sum(1) / (2 * noise**2)
    kl = 0.5 * (mu**2 + logvar.exp() - 1.0 - logvar).sum(1)
    return (rec + kl).mean()


def train_vae(chunks: np.ndarray, *, latent: int, hidden: int, noise_rel: float, epochs: int, patience: int,
              val_copies: int, batch: int, lr: float, seed: int, activation: str = "relu",
              max_seconds: float = 600.0) -> tuple[ChunkVAE, TrainLog]:
    """Train on noisy copies of the (already scaled) chunks [n, chunk]; early stopping on the
    validation reconstruction loss of the posterior means."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(np.ascontiguousarray(chunks, dtype=np.float32))
    n, chunk = x.shape
    model = ChunkVAE(chunk, latent, hidden, activation)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    val = torch.cat([x + noise_rel * torch.randn(x.shape, generator=gen) for _ in range(max(1, val_copies))])
    best, best_state, best_epoch, waited = float("inf"), None, 0, 0
    start = time.monotonic()
    stopped = "max epochs"
    epoch = 0
    for epoch in range(1, epochs + 1):
        model.train()
        noisy = x + noise_rel * torch.randn(x.shape, generator=gen)
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, batch):
            idx = order[i : i + batch]
            opt.zero_grad()
            elbo_loss(model, noisy[idx], noise_rel).backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            mu, _ = model.encode(val)
            v = float(((model.dec(mu) - val) ** 2).mean())
        if v < best * (1 - 1e-4):
            best, best_epoch, waited = v, epoch, 0
            best_state = {k: t.clone() for k, t in model.state_dict().items()}
        else:
            waited += 1
            if waited >= patience:
                stopped = "patience"
                break
        if time.monotonic() - start > max_seconds:
            stopped = "time"
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return model.eval(), TrainLog(epoch, best_epoch, best, time.monotonic() - start, stopped)
