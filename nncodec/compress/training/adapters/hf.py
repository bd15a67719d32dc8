"""A Hugging Face `transformers.Trainer` callback driving a training-aware piece.

    pruner = make_pruner("drr", model, alpha=1e-5, beta=20)
    cb = NNCodecCallback(pruner, prune_at_step=800, save_path="model.nnc", save_options={"levels": 64})
    Trainer(model=model, args=args, train_dataset=..., eval_dataset=..., callbacks=[cb]).train()

Until `prune_at_step` the penalty's gradient is added before every optimizer step (after gradient
clipping) and the method's own parameters are updated after it; at that step RGP -> TAMADE -> RGP
runs with TAMADE's loss taken over `eval_batches` batches of the eval dataloader (the train
dataloader without one; `evaluate=` overrides it), all-reduced across ranks; the remaining steps
fine-tune with the mask frozen; at the end rank 0 writes `save_path`. Works under torchrun/DDP.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import islice
from typing import Any

import torch

try:
    from transformers import TrainerCallback
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("nncodec's Hugging Face adapter needs transformers: pip install 'nncodec[hf]'") from e

from .common import DriverCallback, first_tensor, loss_over


def _to(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, Mapping):
        return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    return batch


def _loss(output: Any) -> torch.Tensor:
    return output["loss"] if isinstance(output, Mapping) else output.loss  # ModelOutput is a Mapping too


class NNCodecCallback(DriverCallback, TrainerCallback):
    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.driver.pruner.sync()

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.driver.before_optimizer_step()

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.driver.after_optimizer_step()

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, train_dataloader: Any = None,
                    eval_dataloader: Any = None, **kwargs: Any) -> None:
        if not self.driver.due(state.global_step):
            return
        loader = eval_dataloader if eval_dataloader is not None else train_dataloader
        evaluate, example = None, None
        if loader is not None and model is not None:
            device = next(model.parameters()).device
            batches = [_to(b, device) for b in islice(loader, self.eval_batches)]
            example = first_tensor(batches[0]) if batches else None

            def evaluate() -> tuple[float, int]:
                was = model.training
                model.eval()
                try:
                    return loss_over(batches, lambda b: _loss(model(**b)), self.eval_batches)
                finally:
                    model.train(was)

        self.driver.prune(evaluate if self.driver.evaluate is None else None, example)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.driver.finish()
