"""`spike_slab(model, loader, loss_fn, ...)`: the method as one call, shaped like pmmp and drr, and a
thin loop over the piece (`SpikeSlab`, a training.pieces.Pruner) through the shared epoch loop.

Variational training, pruning to the median-probability model (phi > threshold), then fine-tuning of
the survivors with the mask frozen. The model is modified in place and returned; its inclusion
probabilities are left on it as `model.spike_slab_pips` (name -> CPU tensor) and the threshold as
`model.spike_slab_threshold`, which `save_spike_slab(..., keep_pip=True)` stores.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

from ...errors import BadArgumentError
from ..training.loop import Callback, LossFn, Runtime, _length, run_epochs
from ..training.targets import Targets
from .variational import SpikeSlab


def _data_size(loader: Iterable) -> int:
    for attr in ("dataset", "x"):
        obj = getattr(loader, attr, None)
        if obj is not None:
            try:
                return len(obj)
            except TypeError:
                pass
    return sum(len(batch[0]) for batch in loader)


def spike_slab(model: nn.Module, loader: Iterable, loss_fn: LossFn, *, epochs: int = 10, lr: float = 1e-3,
               finetune_epochs: int = 5, finetune_lr: float | None = None, prior_inclusion: float | Mapping[str, float] = 1e-2,
               prior_sd: float = 0.1, init_phi: float = 0.9, init_sd: float = 1e-3, ema: float = 0.99,
               kl_weight: float = 1.0, anneal_epochs: float = 0.0, threshold: float = 0.5, sd_lr: float | None = None,
               data_size: int | None = None, targets: Targets = None, device: str | torch.device | None = "cpu",
               seed: int = 0, progress: bool = True, callback: Callback | None = None, elbo_samples: int = 0,
               cosine: bool = False) -> nn.Module:
    """Spike-and-slab variational pruning of the Linear/Conv weights of `model` (see `SpikeSlab`).

    `prior_inclusion` is lambda for every pruned tensor, or a mapping name -> lambda ("*": the rest).
    `loss_fn(outputs, targets)` must be the *mean* negative log-likelihood of a batch (cross-entropy,
    or a Gaussian NLL); `data_size` (default: the loader's dataset size) scales the KL to one example.
    `kl_weight` < 1 tempers the ELBO; `anneal_epochs` > 0 ramps the KL weight linearly up to
    `kl_weight` over that many epochs. With `elbo_samples` > 0 the untempered ELBO on `loader` at the
    end of the variational phase is left on the model as `model.spike_slab_elbo` (`SpikeSlab.elbo`):
    the criterion for choosing the prior on training data (empirical Bayes). With `cosine` the step size
    of the variational phase decays to 0 over its steps (cosine), so that the PIPs settle instead of
    flickering with the stochastic gradient's noise (a stochastic-approximation step schedule; it needs
    a loader with a length, and is skipped without one)."""
    if epochs < 0 or finetune_epochs < 0 or lr <= 0:
        raise BadArgumentError("epochs and finetune_epochs must be >= 0 and lr > 0")
    if not isinstance(model, nn.Module):
        raise BadArgumentError(f"model must be a torch.nn.Module, not {type(model).__name__}")
    rt = Runtime(device, seed, progress, callback)
    model.to(rt.device)
    size = data_size if data_size is not None else _data_size(loader)
    n = _length(loader)
    anneal_steps = round(anneal_epochs * n) if anneal_epochs > 0 and n else 0
    ss = SpikeSlab(model, data_size=size, prior_inclusion=prior_inclusion, prior_sd=prior_sd, init_phi=init_phi,
                   init_sd=init_sd, ema=ema, threshold=threshold, kl_weight=kl_weight, anneal_steps=anneal_steps,
                   targets=targets, callback=(lambda event: rt.emit(**event)) if callback else None)
    opt = torch.optim.Adam([{"params": list(model.parameters())},
                            {"params": ss.parameters(), "lr": sd_lr or lr}], lr=lr)
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs * n))
             if cosine and n and epochs else None)
    run_epochs(model, loader, loss_fn, opt, epochs, rt, phase="spike-slab", params=ss.params, piece=ss, scheduler=sched)
    if elbo_samples > 0:
        model.spike_slab_elbo = ss.elbo(loader, loss_fn, elbo_samples)  # type: ignore[assignment]
    ss.prune()
    if finetune_epochs:
        opt = torch.optim.Adam(model.parameters(), lr=finetune_lr or lr)
        run_epochs(model, loader, loss_fn, opt, finetune_epochs, rt, phase="finetune", params=ss.params, piece=ss)
    ss.release()
    model.eval()
    model.spike_slab_pips = ss.pips()  # type: ignore[assignment]
    model.spike_slab_threshold = ss.threshold  # type: ignore[assignment]
    return model
