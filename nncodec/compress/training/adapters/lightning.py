"""A Lightning `Callback` driving a training-aware piece.

    pruner = make_pruner("pmmp", lit_module.net, alpha=1e-3)
    cb = NNCodecCallback(pruner, prune_at_step=500, save_path="model.nnc")
    lightning.Trainer(callbacks=[cb], max_steps=800).fit(lit_module, train_loader)

Until `prune_at_step` the penalty's gradient is added before every optimizer step and the method's
own parameters are updated after each batch; at that step RGP -> TAMADE -> RGP runs, with TAMADE's
loss the module's `training_step` loss over `eval_batches` batches of the train dataloader
(`evaluate=` overrides it), all-reduced across ranks; then fine-tuning with the mask frozen; at the
end of `fit` rank 0 writes `save_path`. Works with strategy="ddp".
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import islice
from typing import Any

import torch

try:
    from lightning.pytorch import Callback
except ImportError:  # pragma: no cover - depends on the environment
    try:
        from pytorch_lightning import Callback
    except ImportError as e:
        raise ImportError("nncodec's Lightning adapter needs lightning: pip install 'nncodec[lightning]'") from e

from .common import DriverCallback, first_tensor, loss_over


def _step_loss(output: Any) -> torch.Tensor:
    return output["loss"] if isinstance(output, Mapping) else output


def _to(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, Mapping):
        return {k: _to(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to(v, device) for v in batch)
    return batch


class NNCodecCallback(DriverCallback, Callback):
    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self.driver.pruner.sync()

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        self.driver.before_optimizer_step()

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.driver.after_optimizer_step()  # harmless on accumulation batches: no gradient, nothing moves
        if not self.driver.due(trainer.global_step):
            return
        evaluate = None
        example = None
        loader = trainer.train_dataloader
        if loader is not None:
            batches = [_to(b, pl_module.device) for b in islice(loader, self.eval_batches)]
            example = first_tensor(batches[0]) if batches else None

            def evaluate() -> tuple[float, int]:
                was = pl_module.training
                pl_module.eval()
                try:
                    return loss_over(batches, lambda b: _step_loss(pl_module.training_step(b, 0)), self.eval_batches)
                finally:
                    pl_module.train(was)

        self.driver.prune(evaluate if self.driver.evaluate is None else None, example)

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        self.driver.finish()
