"""The methods as compressors: model + data loader + loss in, pruned and fine-tuned model out.

Every method follows the same procedure (Barth & von Petersenn):
  1. training with the method's sparsity penalty (none for TAMADE and layerwise, which start from a
     trained model),
  2. pruning: Random Gradient Pruning -> TAMADE -> Random Gradient Pruning (layerwise pruning runs
     its per-layer fits before this step),
  3. fine-tuning without the penalty, the mask frozen.
Pruned weights are exactly zero afterwards, so the mask is implied by the model itself and the
result goes straight to `save_pruned`. The model is modified in place and returned.

Each function is a thin loop over the method's piece (pruners.py): the same objects a user's own
training loop, a Hugging Face Trainer or a Lightning module calls (see pieces.py).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ...errors import BadArgumentError
from .loop import Callback, LossFn, Runtime, cache_batches, mean_loss, run_epochs
from .pieces import Pruner
from .pruners import make_pruner
from .rgp import random_gradient_pruning
from .targets import Targets, count_nonzero, count_total, masks_from_weights, select_parameters

SCHEDULES = ("constant", "cosine")


@dataclass
class Options:
    """Settings every method shares (each is a keyword argument of the method functions)."""

    epochs: int = 10  # regularised training epochs (0 for tamade/layerwise, which prune a trained model)
    lr: float = 1e-3  # Adam learning rate of the regularised phase
    finetune_epochs: int = 5  # unregularised epochs with the mask frozen
    finetune_lr: float | None = None  # None: same as lr
    lr_schedule: str = "constant"  # "cosine": each phase's learning rate decays to 0 along a cosine, per step
    # early stopping of the fine-tuning: a score of the model (higher is better, e.g. validation accuracy)
    # after every fine-tuning epoch; the weights of the best epoch are kept (the mask is frozen, so the
    # sparsity is the same in every epoch). Never score on the test set here.
    finetune_select: Callable[[nn.Module], float] | None = None
    delta: float = 0.01  # TAMADE: tolerated relative loss increase
    resolution: float = 1e-7  # TAMADE: bisection resolution
    max_steps: int = 50  # TAMADE: bisection step limit
    calib_batches: int | None = 20  # batches of the loader that TAMADE's loss (and RGP's probes) use
    rgp: bool = True  # Random Gradient Pruning before and after TAMADE
    rgp_batch: int = 256  # size of RGP's random batch
    targets: Targets = None  # which parameters are pruned (see select_parameters)
    device: str | torch.device | None = "cpu"
    seed: int = 0
    progress: bool = False  # a tqdm bar on stderr only when asked (the library prints nothing by default)
    callback: Callback | None = None  # called with a dict after every epoch and pruning step

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.finetune_epochs < 0:
            raise BadArgumentError("epochs and finetune_epochs must be >= 0")
        if self.lr <= 0 or (self.finetune_lr is not None and self.finetune_lr <= 0):
            raise BadArgumentError("learning rates must be positive")
        if self.calib_batches is not None and self.calib_batches < 1:
            raise BadArgumentError("calib_batches must be >= 1 (or None for the whole loader)")
        if self.lr_schedule not in SCHEDULES:
            raise BadArgumentError(f"lr_schedule must be one of {', '.join(SCHEDULES)}, not {self.lr_schedule!r}")


def _options(kwargs: dict[str, Any]) -> Options:
    known = {f.name for f in dataclasses.fields(Options)}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise BadArgumentError(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return Options(**kwargs)


class _Run:
    """One method run: the method's piece (see pieces.py) driven by the shared epoch loop."""

    def __init__(self, model: nn.Module, loader: Iterable, loss_fn: LossFn, opts: Options) -> None:
        if not isinstance(model, nn.Module):
            raise BadArgumentError(f"model must be a torch.nn.Module, not {type(model).__name__}")
        self.opts = opts
        self.rt = Runtime(opts.device, opts.seed, opts.progress, opts.callback)
        self.model = model.to(self.rt.device)
        self.loader, self.loss_fn = loader, loss_fn
        self._batches: list | None = None

    def piece(self, method: str, **kwargs: Any) -> Pruner:
        o = self.opts
        self.pruner = make_pruner(method, self.model, targets=o.targets, delta=o.delta, resolution=o.resolution,
                                  max_steps=o.max_steps, rgp=o.rgp, rgp_batch=o.rgp_batch, generator=self.rt.generator,
                                  callback=lambda event: self.emit(**event), **kwargs)
        return self.pruner

    @property
    def batches(self) -> list:
        if self._batches is None:
            self._batches = cache_batches(self.loader, self.opts.calib_batches, self.rt.device)
        return self._batches

    def emit(self, phase: str, **extra: Any) -> None:
        if self.rt.callback is not None:
            params = self.pruner.params
            self.rt.emit(phase=phase, nonzero=count_nonzero(params), total=count_total(params), **extra)

    def train(self, epochs: int, lr: float, phase: str, select: Callable[[nn.Module], float] | None = None) -> None:
        """Epochs of Adam on the model; the piece adds its penalty (unless the mask is frozen). With
        `select`, the weights of the epoch with the highest select(model) are kept at the end."""
        if epochs == 0:
            return
        opt = torch.optim.Adam(self.model.parameters(), lr=lr, foreach=True)
        scheduler = None
        if self.opts.lr_schedule == "cosine":
            steps = len(self.loader) * epochs if hasattr(self.loader, "__len__") else None
            if steps:
                scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        best: dict[str, Any] = {}

        def on_epoch(epoch: int) -> None:
            score = float(select(self.model))  # type: ignore[misc]
            self.rt.emit(phase=f"{phase}-select", epoch=epoch, score=score)
            if not best or score > best["score"]:
                best.update(score=score, epoch=epoch, state=copy.deepcopy(self.model.state_dict()))

        run_epochs(self.model, self.loader, self.loss_fn, opt, epochs, self.rt, phase=phase, params=self.pruner.params,
                   piece=self.pruner, scheduler=scheduler, on_epoch=on_epoch if select is not None else None)
        if best and best["epoch"] != epochs:
            self.model.load_state_dict(best["state"])  # in place: the piece's parameters and masks stay valid

    def prune_and_finetune(self, calib_inputs: list | None = None) -> nn.Module:
        o = self.opts
        self.pruner.prune(lambda: mean_loss(self.model, self.batches, self.loss_fn), example_inputs=self.batches[0][0],
                          probes=[b[0] for b in self.batches[:4]], calib_inputs=calib_inputs)
        self.train(o.finetune_epochs, o.finetune_lr or o.lr, "finetune", select=o.finetune_select)
        self.pruner.unfreeze()  # the model is the user's again: no hooks left behind
        self.model.eval()
        return self.model


def pmmp(model: nn.Module, loader: Iterable, loss_fn: LossFn, *, alpha: float = 1e-3, init_gamma: float = 1.0,
         u_scale: float = 1.0, companion_lr: float | None = None, **options: Any) -> nn.Module:
    """Probabilistic minimax pruning (see `pmmp.PMMP`), then RGP -> TAMADE -> RGP and fine-tuning.

    `alpha` multiplies sum(gamma) next to a per-batch *mean* loss (the paper's alpha divided by the
    training-set size). With Adam every gamma moves by about `companion_lr` per step whatever its
    gradient's size, so gamma needs roughly 1/companion_lr steps to reach 0 or 1: raise
    `companion_lr` (the learning rate of w, gamma and u; default `lr`) when there are few steps."""
    run = _Run(model, loader, loss_fn, _options(options))
    piece = run.piece("pmmp", alpha=alpha, init_gamma=init_gamma, u_scale=u_scale,
                      companion_lr=companion_lr or run.opts.lr)
    run.train(run.opts.epochs, run.opts.lr, "pmmp")
    run.emit("pmmp-gamma", undecided=piece.undecided_fraction())
    return run.prune_and_finetune()


def drr(model: nn.Module, loader: Iterable, loss_fn: LossFn, *, alpha: float = 1e-4, beta: float = 5.0,
        normalize_layers: bool = False, **options: Any) -> nn.Module:
    """DRR (smooth l0 penalty alpha*sum(1 - exp(-beta|theta|))), then RGP -> TAMADE -> RGP and fine-tuning."""
    run = _Run(model, loader, loss_fn, _options(options))
    run.piece("drr", alpha=alpha, beta=beta, normalize_layers=normalize_layers)
    run.train(run.opts.epochs, run.opts.lr, "drr")
    return run.prune_and_finetune()


def rl1(model: nn.Module, loader: Iterable, loss_fn: LossFn, *, alpha: float = 3e-4, **options: Any) -> nn.Module:
    """Relaxed L1: training with alpha*||theta||_1, then RGP -> TAMADE -> RGP and fine-tuning without it."""
    run = _Run(model, loader, loss_fn, _options(options))
    run.piece("rl1", alpha=alpha)
    run.train(run.opts.epochs, run.opts.lr, "rl1")
    return run.prune_and_finetune()


def tamade_prune(model: nn.Module, loader: Iterable, loss_fn: LossFn, **options: Any) -> nn.Module:
    """TAMADE alone, a post-training method: (optional plain training) RGP -> TAMADE -> RGP -> fine-tuning."""
    options.setdefault("epochs", 0)
    run = _Run(model, loader, loss_fn, _options(options))
    run.piece("tamade")
    run.train(run.opts.epochs, run.opts.lr, "train")
    return run.prune_and_finetune()


def layerwise(model: nn.Module, loader: Iterable, loss_fn: LossFn, *, alpha: float = 0.1, layer_lr: float = 1e-3,
              init: float = 0.3, layer_steps: int = 500, layer_batches: int = 4, train_weights: bool = True,
              **options: Any) -> nn.Module:
    """Layerwise exact-gradient pruning of a trained model (see `layerwise`), then RGP -> TAMADE -> RGP
    and fine-tuning. `layer_batches` batches of the loader are the calibration data of the fits."""
    options.setdefault("epochs", 0)
    run = _Run(model, loader, loss_fn, _options(options))
    run.piece("layerwise", alpha=alpha, layer_lr=layer_lr, init=init, layer_steps=layer_steps,
              train_weights=train_weights)
    run.train(run.opts.epochs, run.opts.lr, "train")
    calib = cache_batches(run.loader, layer_batches, run.rt.device)
    return run.prune_and_finetune(calib_inputs=[x for x, _ in calib])


def random_gradient_prune(model: nn.Module, input_shape: tuple[int, ...], *, targets: Targets = None,
                          batch_size: int = 256, seed: int = 0) -> int:
    """Standalone Random Gradient Pruning of a model (inputs of shape (batch, *input_shape)); returns
    the number of weights removed."""
    params = select_parameters(model, targets)
    masks = masks_from_weights(params)
    return random_gradient_pruning(model, params, masks, input_shape, batch_size=batch_size,
                                   generator=torch.Generator().manual_seed(seed))


METHODS = {"pmmp": pmmp, "drr": drr, "rl1": rl1, "tamade": tamade_prune, "layerwise": layerwise}


def prune(model: nn.Module, loader: Iterable, loss_fn: LossFn, method: str = "pmmp", **kwargs: Any) -> nn.Module:
    """Run the named method ("pmmp", "drr", "rl1", "tamade" or "layerwise")."""
    if method not in METHODS:
        raise BadArgumentError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    return METHODS[method](model, loader, loss_fn, **kwargs)
