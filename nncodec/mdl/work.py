"""The work of decoding a dataset section, estimated before any of it is done (spec §21.6).

Decoding a prequential code replays the encoder's training, and a few header numbers (`min_steps`,
`batch`, `epochs`, the block list, the model's width) set how much: a 500-byte file could otherwise ask
for days of training. So the decoder estimates the multiply-adds it is asked for and refuses a file
whose estimate is over `Limits.max_dataset_work_per_byte` times its coded bytes, before it trains or
decodes anything; the encoder applies the same rule to the file it is about to write, so that an
honest file never needs a raised limit. The estimate (integers, no timing):

- per-sample cost F of a model: its parameter count (dense layers and the LSTM use each weight once
  per sample), with each convolution's weights counted at every output position instead (measured
  by a forward hook on one sample); a mixture's F is the sum of its members';
- coding: n · (F + SYMBOL_COST);
- training before block k (ending at e, every block but the last), per trained model:
  steps(e) · STEP_COST + 3 · F · samples(e) (forward and backward), with steps and samples exactly
  as `train.train_sequence` / `train.train_classifier` compute them. The fixed costs per step and
  per symbol stand for the interpreter's and coder's overhead, which dominates for tiny models.
"""

from __future__ import annotations

import math

import torch

from ..errors import LimitExceededError
from ..limits import Limits
from .member import DatasetMember
from .mixture import Mixture
from .train import TrainConfig

SLACK_BYTES = 64  # added to a section's coded bytes, so that tiny honest sections are not refused
STEP_COST = 2**24  # a training step's fixed cost (~1-3 ms for the small models here), in multiply-adds
SYMBOL_COST = 2**14  # a coded symbol's fixed cost (coder call, probability table), in multiply-adds


def per_sample(module: torch.nn.Module, sample: torch.Tensor | None) -> int:
    """Multiply-adds of one sample through `module` (see the module docstring): each convolution's
    output elements times the weights behind one of them, measured by forward hooks on one sample,
    and every other parameter once."""
    params = sum(p.numel() for p in module.parameters())
    if sample is None:
        return params
    convs = [m for m in module.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)]
    macs = [0]

    def count(conv, _inputs, output) -> None:
        macs[0] += output.numel() * conv.weight[0].numel() - conv.weight.numel()  # beyond counting it once

    hooks = [c.register_forward_hook(count) for c in convs]
    try:
        with torch.no_grad():
            module.logits(sample) if hasattr(module, "logits") else module(sample)
    finally:
        for h in hooks:
            h.remove()
    return params + max(0, macs[0])


def _one(x) -> torch.Tensor:
    return torch.from_numpy(x[:1].copy())


def model_costs(model, kind: str, inputs) -> list[int]:
    """Per-sample cost of each trained model (one, or one per mixture member)."""
    if isinstance(model, Mixture):
        return [per_sample(m, _one(x) if x is not None and len(x) else None) for m, x in zip(model.members, inputs, strict=True)]
    if kind == "bytes":
        return [per_sample(model, torch.zeros(1, 1, dtype=torch.int64))]
    return [per_sample(model, _one(inputs) if inputs is not None and len(inputs) else None)]


def training(kind: str, end: int, cfg: TrainConfig) -> tuple[int, int]:
    """(steps, samples) of one trained model's training before the block after `end` (samples are
    symbols for sequences), as train.train_sequence / train.train_classifier compute them."""
    if kind == "bytes":
        if end < 2:
            return 0, 0
        seq = min(cfg.seqlen, end - 1)
        steps = cfg.steps(end, cfg.batch * seq)
        return steps, steps * cfg.batch * seq
    if end < 1:
        return 0, 0
    batch = min(cfg.batch, end)
    steps = cfg.steps(end, batch)
    return steps, steps * batch


def estimate(member: DatasetMember, costs: list[int]) -> int:
    """Multiply-adds of coding (and, for a prequential code, replaying the training of) `member`."""
    work = member.n * (sum(costs) + SYMBOL_COST)
    if member.code == "prequential" and member.train is not None:
        for end in (member.blocks or [])[:-1]:
            steps, samples = training(member.kind, end, member.train)
            trained = sum(1 for c in costs if c > 0)  # a member without parameters is not trained
            work += trained * steps * STEP_COST + 3 * samples * sum(costs)
    return work


def budget(coded_bytes: int, limits: Limits) -> int:
    """The most work a decoder does for a section of `coded_bytes` bytes."""
    return limits.max_dataset_work_per_byte * (coded_bytes + SLACK_BYTES)


def refuse(work: int, most: int, limits: Limits) -> None:
    """Decoding side: the file asks for more work than its coded bytes allow."""
    raise LimitExceededError(
        f"decoding this dataset would take ~{work:.3g} multiply-adds, over the {most:.3g} its coded bytes allow "
        f"at {limits.max_dataset_work_per_byte:,} per byte (max_dataset_work_per_byte)")


def check_encoded(work: int, coded_bytes: int, limits: Limits) -> None:
    """Encoding side: refuse to write a file that a decoder with `limits` would refuse."""
    if work > budget(coded_bytes, limits):
        per_byte = math.ceil(work / (coded_bytes + SLACK_BYTES))
        raise LimitExceededError(
            f"decoding this file would take ~{work:.3g} multiply-adds, {per_byte:,} per coded byte, over the "
            f"{limits.max_dataset_work_per_byte:,} a decoder allows by default (max_dataset_work_per_byte): "
            "train for fewer steps or use a smaller model")
