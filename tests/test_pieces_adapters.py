"""The Hugging Face and Lightning adapters drive a piece through a real trainer (skipped without them)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nncodec
from nncodec.compress.training import DRRPruner, PMMPPruner


def task(n: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 8, generator=g)
    return x, (x[:, 0] - x[:, 2] > 0).long()


def check_result(pruner, callback, path, nonzero_at_prune: int) -> None:
    assert callback.report is not None
    assert 0 < callback.report.nonzero < callback.report.total
    for n, p in pruner.params.items():  # fine-tuning kept the pruned weights at zero
        assert torch.all(p.detach()[~pruner.masks[n]] == 0)
    assert sum(int(m.sum()) for m in pruner.masks.values()) == nonzero_at_prune
    assert callback.file_bytes == path.stat().st_size
    decoded, expected = nncodec.load_file(path), pruner.to_state_dict(levels=32)
    assert all(torch.equal(decoded[k], expected[k]) for k in expected)


class HFNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2))

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None) -> dict:
        logits = self.net(input_ids)
        return {"logits": logits, "loss": F.cross_entropy(logits, labels) if labels is not None else None}


def test_hugging_face_trainer_callback(tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    from nncodec.compress.training.adapters.hf import NNCodecCallback

    torch.manual_seed(0)
    x, y = task()
    rows = [{"input_ids": x[i], "labels": y[i]} for i in range(len(x))]
    model = HFNet()
    pruner = DRRPruner(model, alpha=2e-3)
    path = tmp_path / "hf.nnc"
    cb = NNCodecCallback(pruner, prune_at_step=24, eval_batches=4, save_path=path, save_options={"levels": 32})
    seen: dict[str, int] = {}

    class Spy(transformers.TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 24:
                seen["nonzero"] = sum(int(m.sum()) for m in pruner.masks.values())

    args = transformers.TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=32, per_device_train_batch_size=32,
                                          per_device_eval_batch_size=64, learning_rate=1e-2, report_to=[],
                                          use_cpu=True, save_strategy="no", logging_strategy="no", disable_tqdm=True,
                                          remove_unused_columns=False, dataloader_num_workers=0)
    transformers.Trainer(model=model, args=args, train_dataset=rows, eval_dataset=rows[:128],
                         callbacks=[cb, Spy()]).train()
    check_result(pruner, cb, path, seen["nonzero"])


def test_lightning_callback(tmp_path):
    lightning = pytest.importorskip("lightning")
    from torch.utils.data import DataLoader, TensorDataset

    from nncodec.compress.training.adapters.lightning import NNCodecCallback

    torch.manual_seed(0)
    x, y = task()

    class Lit(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2))

        def training_step(self, batch, batch_idx):
            xb, yb = batch
            return F.cross_entropy(self.net(xb), yb)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-2)

    lit = Lit()
    pruner = PMMPPruner(lit.net, alpha=2e-3, companion_lr=2e-2)
    path = tmp_path / "pl.nnc"
    cb = NNCodecCallback(pruner, prune_at_step=24, eval_batches=4, save_path=path, save_options={"levels": 32})
    seen: dict[str, int] = {}

    class Spy(lightning.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step == 24 and "nonzero" not in seen:
                seen["nonzero"] = sum(int(m.sum()) for m in pruner.masks.values())

    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)
    trainer = lightning.Trainer(max_steps=32, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                                enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path),
                                callbacks=[cb, Spy()])
    trainer.fit(lit, loader)
    gamma = torch.cat([g.detach().reshape(-1) for g in pruner.regularizer.gamma.values()])
    assert gamma.min() >= 0 and gamma.max() <= 1 and gamma.min() < 1  # PMMP's own parameters moved
    check_result(pruner, cb, path, seen["nonzero"])
