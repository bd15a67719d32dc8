"""`spike_slab(model, loader, loss_fn, ...)`: the method as one call, shaped like pmmp and drr.

Variational training (SpikeSlab), pruning to the median-probability model (phi > threshold), then
fine-tuning of the survivors with the mask frozen. The model is modified in place and returned; its
inclusion probabilities are left on it as `model.spike_slab_pips` (name -> CPU tensor) and the
threshold as `model.spike_slab_threshold`, which `save_spike_slab(..., keep_pip=True)` stores.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from ...errors import BadArgumentError
from ..training.loop import Callback, LossFn, Runtime, split_batch
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


def _epochs(model: nn.Module, loader: Iterable, loss_fn: LossFn, ss: SpikeSlab, opt: torch.optim.Optimizer,
            epochs: int, rt: Runtime, phase: str, anneal_epochs: float = 0.0) -> None:
    n = getattr(loader, "__len__", lambda: None)()
    model.train()
    step = 0
    with rt.bar(None if n is None else n * epochs, phase) as bar:
        for epoch in range(epochs):
            total, count = 0.0, 0
            for batch in loader:
                if anneal_epochs > 0 and n:
                    ss.kl_weight = min(1.0, (step + 1) / (anneal_epochs * n))
                x, y = split_batch(batch, rt.device)
                opt.zero_grad(set_to_none=True)
                data_loss = loss_fn(model(x), y)
                (data_loss + ss.penalty()).backward()
                opt.step()
                ss.after_step()
                total += float(data_loss.detach()) * len(x)
                count += len(x)
                step += 1
                bar.update(1)
            if rt.callback is not None:
                kept = sum(int(m.sum()) for m in ss.masks().values())
                rt.emit(phase=phase, epoch=epoch + 1, epochs=epochs, loss=total / max(count, 1),
                        kl=ss.kl() if ss.frozen is None else 0.0, kept=kept,
                        total=sum(p.numel() for p in ss.params.values()))


def spike_slab(model: nn.Module, loader: Iterable, loss_fn: LossFn, *, epochs: int = 10, lr: float = 1e-3,
               finetune_epochs: int = 5, finetune_lr: float | None = None, prior_inclusion: float = 1e-2,
               prior_sd: float = 0.1, init_phi: float = 0.9, init_sd: float = 1e-3, ema: float = 0.99,
               anneal_epochs: float = 0.0, threshold: float = 0.5, sd_lr: float | None = None,
               data_size: int | None = None, targets: Targets = None, device: str | torch.device | None = "cpu",
               seed: int = 0, progress: bool = True, callback: Callback | None = None) -> nn.Module:
    """Spike-and-slab variational pruning of the Linear/Conv weights of `model` (see `SpikeSlab`).

    `loss_fn(outputs, targets)` must be the *mean* negative log-likelihood of a batch (cross-entropy,
    or a Gaussian NLL); `data_size` (default: the loader's dataset size) scales the KL to one example.
    `anneal_epochs` > 0 ramps the KL weight linearly from 0 to 1 over that many epochs."""
    if epochs < 0 or finetune_epochs < 0 or lr <= 0:
        raise BadArgumentError("epochs and finetune_epochs must be >= 0 and lr > 0")
    if not isinstance(model, nn.Module):
        raise BadArgumentError(f"model must be a torch.nn.Module, not {type(model).__name__}")
    rt = Runtime(device, seed, progress, callback)
    model.to(rt.device)
    size = data_size if data_size is not None else _data_size(loader)
    ss = SpikeSlab(model, data_size=size, prior_inclusion=prior_inclusion, prior_sd=prior_sd, init_phi=init_phi,
                   init_sd=init_sd, ema=ema, threshold=threshold, kl_weight=0.0 if anneal_epochs > 0 else 1.0,
                   targets=targets)
    opt = torch.optim.Adam([{"params": list(model.parameters())},
                            {"params": ss.parameters(), "lr": sd_lr or lr}], lr=lr)
    _epochs(model, loader, loss_fn, ss, opt, epochs, rt, "spike-slab", anneal_epochs)
    ss.freeze_mask()
    if finetune_epochs:
        opt = torch.optim.Adam(model.parameters(), lr=finetune_lr or lr)
        _epochs(model, loader, loss_fn, ss, opt, finetune_epochs, rt, "finetune")
    ss.release()
    model.eval()
    model.spike_slab_pips = ss.pips()  # type: ignore[assignment]
    model.spike_slab_threshold = ss.threshold  # type: ignore[assignment]
    return model


def spike_slab_state(model: nn.Module) -> tuple[dict[str, torch.Tensor], float]:
    """The PIPs and threshold that `spike_slab` left on `model`."""
    pips = getattr(model, "spike_slab_pips", None)
    if not isinstance(pips, dict):
        raise BadArgumentError("this model carries no inclusion probabilities (run spike_slab on it first)")
    return pips, float(getattr(model, "spike_slab_threshold", 0.5))
