"""The plain training loop the piece tests share: loss + piece.penalty(), backward, step, after_step."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn


def train_with_penalty(model: nn.Module, piece, opt: torch.optim.Optimizer, batches: Iterable, epochs: int,
                       loss_fn: Callable[..., torch.Tensor]) -> None:
    """`epochs` passes over `batches` with the piece's penalty route (what a user's own loop does)."""
    for _ in range(epochs):
        for x, y in batches:
            opt.zero_grad()
            (loss_fn(model(x), y) + piece.penalty()).backward()
            opt.step()
            piece.after_step()
