"""The methods as pieces (see pieces.py): one `Pruner` subclass per method, and `make_pruner` by name.

    PMMPPruner   probabilistic minimax pruning; its w, gamma, u are updated by its own Adam in after_step
    DRRPruner    smooth l0 penalty alpha*sum(1 - exp(-beta|theta|))
    RL1Pruner    alpha*||theta||_1 while training (relaxed L1), nothing afterwards
    TamadePruner no penalty: RGP -> TAMADE -> RGP on a trained model
    LayerwisePruner  per-layer exact-gradient fits (on `calib_inputs`) before RGP -> TAMADE -> RGP
    "spike-slab"     nncodec.compress.spike_slab.SpikeSlab (needs data_size=): a method family of its
                     own that builds on this package, so it is named here and imported on first use
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ...errors import BadArgumentError
from . import distributed as dist_
from .layerwise import layerwise_prune
from .penalties import DRR, L1
from .pieces import Pruner, unwrap
from .pmmp import PMMP
from .targets import select_parameters


class PMMPPruner(Pruner):
    """PMMP (see pmmp.py). `companion_lr` is the learning rate of w, gamma and u: with Adam each gamma
    moves by about that much per step, so gamma needs roughly 1/companion_lr steps to reach 0 or 1."""

    method = "pmmp"

    def __init__(self, model: nn.Module, alpha: float = 1e-3, *, init_gamma: float = 1.0, u_scale: float = 1.0,
                 companion_lr: float = 1e-3, targets: Any = None, **options: Any) -> None:
        reg = PMMP(select_parameters(unwrap(model), targets), alpha, init_gamma=init_gamma, u_scale=u_scale)
        super().__init__(model, reg, targets=targets, companion_lr=companion_lr, **options)

    def undecided_fraction(self, margin: float = 0.05) -> float:
        assert isinstance(self.regularizer, PMMP)
        return self.regularizer.undecided_fraction(margin)


class DRRPruner(Pruner):
    method = "drr"

    def __init__(self, model: nn.Module, alpha: float = 1e-4, *, beta: float = 5.0, normalize_layers: bool = False,
                 targets: Any = None, **options: Any) -> None:
        reg = DRR(select_parameters(unwrap(model), targets), alpha, beta, normalize_layers)
        super().__init__(model, reg, targets=targets, **options)


class RL1Pruner(Pruner):
    method = "rl1"

    def __init__(self, model: nn.Module, alpha: float = 3e-4, *, targets: Any = None, **options: Any) -> None:
        super().__init__(model, L1(select_parameters(unwrap(model), targets), alpha), targets=targets, **options)


class TamadePruner(Pruner):
    method = "tamade"

    def __init__(self, model: nn.Module, *, targets: Any = None, **options: Any) -> None:
        super().__init__(model, None, targets=targets, **options)


class LayerwisePruner(Pruner):
    """Layerwise pruning (see layerwise.py) fitted on `calib_inputs` (given to `prune`). Under
    torch.distributed the fits run on rank 0's inputs and their result is broadcast."""

    method = "layerwise"

    def __init__(self, model: nn.Module, alpha: float = 0.1, *, layer_lr: float = 1e-3, init: float = 0.3,
                 layer_steps: int = 500, train_weights: bool = True, targets: Any = None, **options: Any) -> None:
        super().__init__(model, None, targets=targets, **options)
        self.layer_options = {"alpha": alpha, "lr": layer_lr, "init": init, "steps": layer_steps,
                              "train_weights": train_weights}

    def _before_tamade(self, example_inputs: torch.Tensor | None, probes: Sequence[torch.Tensor],
                       calib_inputs: Sequence[torch.Tensor] | None) -> None:
        inputs = list(calib_inputs) if calib_inputs else ([example_inputs] if example_inputs is not None else [])
        if not inputs:
            raise BadArgumentError("layerwise pruning needs calib_inputs= (batches of model inputs)")
        layerwise_prune(self.model, self.params, self._masks, [(x, None) for x in inputs], alpha=self.layer_options["alpha"],
                        lr=self.layer_options["lr"], init=self.layer_options["init"], steps=self.layer_options["steps"],
                        train_weights=self.layer_options["train_weights"], rgp=self.rgp, rgp_batch=self.rgp_batch,
                        generator=self.generator,
                        on_layer=lambda name, kept, total: self._emit("layerwise", layer=name, kept=kept, layer_total=total))
        if dist_.active():  # fits on local data differ between ranks: rank 0's result for all
            dist_.broadcast_([p.data for p in self.model.parameters()])
            dist_.broadcast_(list(self._masks.values()))


PRUNERS: dict[str, type[Pruner]] = {"pmmp": PMMPPruner, "drr": DRRPruner, "rl1": RL1Pruner, "tamade": TamadePruner,
                                    "layerwise": LayerwisePruner}
# Pieces of other compressor families (they import this package, so this one must not import them at load).
FAMILY_PRUNERS: dict[str, str] = {"spike-slab": "nncodec.compress.spike_slab:SpikeSlab"}


def pruner_class(method: str) -> type[Pruner]:
    """The piece class of the named method (see `make_pruner` for the names)."""
    if method in PRUNERS:
        return PRUNERS[method]
    if method in FAMILY_PRUNERS:
        module, _, name = FAMILY_PRUNERS[method].partition(":")
        return getattr(importlib.import_module(module), name)
    raise BadArgumentError(f"unknown method {method!r}; choose one of {', '.join([*PRUNERS, *FAMILY_PRUNERS])}")


def make_pruner(method: str, model: nn.Module, **kwargs: Any) -> Pruner:
    """The piece for the named method ("pmmp", "drr", "rl1", "tamade", "layerwise", or "spike-slab",
    which needs `data_size=`, the number of training examples) with its options."""
    cls = pruner_class(method)
    try:
        return cls(model, **kwargs)
    except TypeError as e:
        raise BadArgumentError(f"{method}: {e}") from None
