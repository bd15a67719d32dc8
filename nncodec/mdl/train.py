"""Deterministic training, replayed exactly by the prequential decoder (and used to fit two-part
models). Every random choice comes from one torch.Generator seeded from the header; training runs
under env.deterministic() (one thread, deterministic kernels)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import FormatError


@dataclass(frozen=True)
class TrainConfig:
    lr: float = 3e-3
    batch: int = 32
    seqlen: int = 128  # sequence models: window length
    epochs: float = 2.0  # passes over the data available (per prequential block: over all data so far)
    min_steps: int = 50
    weight_decay: float = 0.0
    clip: float = 1.0
    average: float = 0.0  # > 0: code with the mean of the iterates of the last ceil(average · steps) steps

    def to_json(self) -> dict[str, str]:
        """Floats as repr strings (header numbers are integers); read back with float(). `average` is
        written only when it is used, so files that do not use it are unchanged (FORMAT §21.1)."""
        return {k: repr(v) for k, v in asdict(self).items() if k not in OPTIONAL or v != OPTIONAL[k]}

    @staticmethod
    def from_json(obj: object) -> TrainConfig:
        fields = set(TrainConfig.__dataclass_fields__)
        required = fields - set(OPTIONAL)
        if (not isinstance(obj, dict) or not required <= set(obj) <= fields
                or not all(isinstance(v, str) for v in obj.values())):
            raise FormatError(f"training settings must be strings for exactly {sorted(required)} "
                              f"(and optionally {sorted(OPTIONAL)})")
        try:
            vals = {k: float(v) for k, v in obj.items()}
        except ValueError:
            raise FormatError("training settings must be numbers") from None
        if not all(math.isfinite(v) and v >= 0 for v in vals.values()):
            raise FormatError("training settings must be finite and non-negative")
        ints = {"batch", "seqlen", "min_steps"}
        if any(vals[k] != int(vals[k]) or not 1 <= vals[k] <= 2**20 for k in ints) or vals["epochs"] > 1000:
            raise FormatError("training batch, seqlen and min_steps must be integers in [1, 2**20], epochs <= 1000")
        if vals.get("average", 0.0) > 1:
            raise FormatError("training average must be a fraction in [0, 1]")
        return TrainConfig(**{k: (int(v) if k in ints else v) for k, v in vals.items()})

    def steps(self, available: int, per_step: int) -> int:
        return max(self.min_steps, math.ceil(self.epochs * available / per_step))


OPTIONAL = {"average": 0.0}  # keys a header may omit (added later; the default is what older files did)


def optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def _step(model, opt, loss, cfg: TrainConfig) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
    opt.step()


def train_sequence(model, opt, data: np.ndarray, end: int, cfg: TrainConfig, gen: torch.Generator,
                   steps: int | None = None, progress=None, average_into=None) -> float:
    """Next-symbol training on random windows of data[:end]; returns the mean loss of the last steps."""
    if end < 2:
        return float("nan")
    seq = min(cfg.seqlen, end - 1)
    steps = cfg.steps(end, cfg.batch * seq) if steps is None else steps
    d = torch.from_numpy(np.ascontiguousarray(data[:end], dtype=np.int64))
    ar = torch.arange(seq + 1)

    def batch_loss() -> torch.Tensor:
        starts = torch.randint(0, end - seq, (cfg.batch,), generator=gen)
        chunk = d[starts[:, None] + ar].T  # [seq + 1, batch]
        logits, _ = model(chunk[:-1])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), chunk[1:].reshape(-1))

    return _train_steps(model, opt, cfg, steps, batch_loss, progress, average_into)


def train_classifier(model, opt, inputs: np.ndarray, labels: np.ndarray, end: int, cfg: TrainConfig,
                     gen: torch.Generator, steps: int | None = None, progress=None, average_into=None) -> float:
    """Cross-entropy training on (inputs[:end], labels[:end]) in seeded random mini-batches."""
    if end < 1:
        return float("nan")
    batch = min(cfg.batch, end)
    steps = cfg.steps(end, batch) if steps is None else steps
    x = torch.from_numpy(np.ascontiguousarray(inputs[:end]))
    y = torch.from_numpy(np.ascontiguousarray(labels[:end], dtype=np.int64))
    order = {"perm": torch.randperm(end, generator=gen), "pos": 0}

    def batch_loss() -> torch.Tensor:
        if order["pos"] + batch > end:
            order["perm"], order["pos"] = torch.randperm(end, generator=gen), 0
        idx = order["perm"][order["pos"]:order["pos"] + batch]
        order["pos"] += batch
        return F.cross_entropy(model.logits(x[idx]), y[idx])

    return _train_steps(model, opt, cfg, steps, batch_loss, progress, average_into)


def averaged_steps(cfg: TrainConfig, steps: int) -> int:
    """How many final iterates `average_into` receives the mean of (0: no averaging)."""
    return min(steps, math.ceil(cfg.average * steps)) if cfg.average > 0 else 0


def _train_steps(model, opt, cfg: TrainConfig, steps: int, batch_loss, progress, average_into=None) -> float:
    """`steps` optimizer steps on `batch_loss()` (which draws its own seeded batch), the same loop
    for every kind; returns the mean loss of the last 50 steps. With `average_into` (a module of the
    same architecture) and cfg.average > 0, its parameters become the mean of `model`'s parameters
    after each of the last `averaged_steps` steps (float32 running mean a <- a*(j/(j+1)) + p*(1/(j+1)),
    j = 0, 1, ...); `model` itself goes on from its last iterate (the next block's training does too)."""
    model.train()
    losses = []
    first_avg = steps - averaged_steps(cfg, steps) if average_into is not None else steps
    targets = list(average_into.parameters()) if average_into is not None else []
    for i in range(steps):
        loss = batch_loss()
        _step(model, opt, loss, cfg)
        losses.append(float(loss.detach()))
        if i >= first_avg:
            j = i - first_avg
            with torch.no_grad():
                for a, p in zip(targets, model.parameters(), strict=True):
                    if j == 0:
                        a.copy_(p)
                    else:
                        a.mul_(j / (j + 1)).add_(p, alpha=1 / (j + 1))
        if progress is not None:
            progress(1)
    model.eval()
    return float(np.mean(losses[-50:]))
