"""bench_own_loop.py's levers beyond penalty / prune / fine-tune (issue 15, session 6).

All of them are things the user's own loop does with the composable pieces; choices on validation only:
- distillation (--kd W): the regularised and fine-tuning losses become (1 - W) * CE + W * KL(dense || model),
  the teacher being the user's own dense model (the one being compressed), frozen;
- quantization of the small tensors too (--quant-small): LayerNorm weights/biases and biases get a
  uniform step chosen by `search_steps` like the weights instead of staying lossless (~28 bits each);
- quantization-aware fine-tuning (--qat-steps N): after fine-tuning, `search_steps` picks the steps
  that keep validation within --qat-budget (looser than the 2 % budget); N more Adam steps then run
  the forward and backward at the quantized weights (`quantized_weights`, straight-through) with the
  mask frozen; the file uses exactly those steps if the decoded model is within the 2 % budget on
  validation, else `search_steps` at 2 % on the fine-tuned weights as they were before QAT (the plain
  path; files of before 08:10 UTC searched the QAT'd float weights instead, which always failed);
- learned steps in the QAT phase (--lsq, session 10): the steps `search_steps` picked are the start of
  a `LearnedSteps` (LSQ: trainable log-steps, Adam at --step-lr, the QAT schedule); --qat-rate R adds R
  nats per kilobyte of its code-length proxy (sum of log2(1 + |w| / s) over nonzero weights, or with
  --rate-kind entropy -log2 of each level's frequency in its tensor) to the loss, pulling the steps up and
  small levels to zero (--step-lr 0: the steps stay fixed, only the rate term acts). The file uses the
  steps and weights as the last update left them (`learned.steps()`; the validation check scores exactly
  that decoded state), under the same 2 % check and fallback as fixed-step QAT;
- confirmation: the final file is also scored on validation windows 512-1023, never used for a choice.
The N steps count against the peer's extra steps like the other phases (bench_own_loop.dense_phase).
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from nncodec.compress.training import LearnedSteps, search_steps


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kd", type=float, default=0.0, help="distillation weight W (0: plain cross-entropy)")
    p.add_argument("--quant-small", action="store_true", help="quantize the tensors below 256 elements too")
    p.add_argument("--qat-steps", type=int, default=0, help="quantization-aware fine-tuning steps (0: none)")
    p.add_argument("--qat-budget", type=float, default=0.04, help="validation increase the QAT steps are chosen at")
    p.add_argument("--qat-relative", action="store_true",
                   help="--qat-budget relative to the model's validation loss before QAT (not to the reference)")
    p.add_argument("--qat-lr", type=float, default=None, help="Adam learning rate of the QAT phase [--pipe-lr]")
    p.add_argument("--skip-test", action="store_true", help="do not score the test split (sweep runs)")
    p.add_argument("--prune-emb", action="store_true",
                   help="prune every matrix, the token and position embeddings too (default: Linear weights)")
    p.add_argument("--qat-shrink", action="store_true",
                   help="a QAT phase that ends over the budget keeps its weights and refines its steps "
                        "(x0.9, x0.8, ...) before falling back to the plain path")
    p.add_argument("--lsq", action="store_true", help="QAT learns its steps (LSQ), starting from the searched ones")
    p.add_argument("--qat-rate", type=float, default=0.0,
                   help="with --lsq: nats per kilobyte of the code-length proxy added to the QAT loss")
    p.add_argument("--rate-kind", choices=("log", "entropy"), default="log",
                   help="with --qat-rate: log2(1 + |w| / s) per weight, or -log2 of the level's frequency")
    p.add_argument("--qat-scale", type=float, default=1.0,
                   help="the QAT grid: the searched steps times this factor (the control for LSQ's finer end)")
    p.add_argument("--step-lr", type=float, default=1e-3, help="with --lsq: Adam learning rate of the log-steps")


def tag(a: argparse.Namespace) -> str:
    """File-name suffix of these options (empty when none is used)."""
    out = f"-kd{a.kd:g}" if a.kd else ""
    out += "-small" if a.quant_small else ""
    if a.qat_steps:
        out += f"-qat{a.qat_steps}{'r' if getattr(a, 'qat_relative', False) else 'b'}{a.qat_budget:g}" + (f"lr{a.qat_lr:g}" if a.qat_lr is not None else "")
    out += "-emb" if getattr(a, "prune_emb", False) else ""
    out += "-shrink" if getattr(a, "qat_shrink", False) else ""
    if getattr(a, "lsq", False):
        out += f"-lsq{a.step_lr:g}" + (f"rate{a.qat_rate:g}" if a.qat_rate else "")
        out += "H" if a.qat_rate and getattr(a, "rate_kind", "log") == "entropy" else ""
    out += f"-scale{a.qat_scale:g}" if getattr(a, "qat_scale", 1.0) != 1.0 else ""
    return out


def targets(a: argparse.Namespace):
    """The pruner's targets: every matrix (embeddings included) with --prune-emb, else its default."""
    if getattr(a, "prune_emb", False):
        return lambda name, param, module: param.dim() >= 2
    return None


def frozen(model: nn.Module) -> nn.Module:
    model.eval()
    for q in model.parameters():
        q.requires_grad_(False)
    return model


def kd_mix(ce: torch.Tensor, logits: torch.Tensor, teacher: nn.Module | None, x: torch.Tensor, w: float) -> torch.Tensor:
    """(1 - w) * ce + w * KL(teacher || model) per token (temperature 1); ce alone without a teacher."""
    if teacher is None or w == 0:
        return ce
    with torch.no_grad():
        t = F.log_softmax(teacher(x), dim=-1).reshape(-1, logits.shape[-1])
    s = F.log_softmax(logits, dim=-1).reshape(-1, logits.shape[-1])
    return (1 - w) * ce + w * F.kl_div(s, t, log_target=True, reduction="batchmean")


def quant_names(model: nn.Module, small: bool) -> list[str]:
    return [n for n, q in model.named_parameters() if small or q.numel() >= 256]


def quantize(bench, net, model, pruner, a, ps: int, lr: float, reference: float, names: list[str],
             teacher) -> tuple[dict[str, float], dict]:
    """The file's quantization steps (and a record of the QAT phase, if any)."""
    def metric(state) -> float:
        return bench.loss(model, bench.val, dict(state))

    limit = reference * (1 + a.budget)
    if not a.qat_steps:
        return search_steps(model, metric, limit, names=names), {}
    base = bench.loss(model, bench.val) if a.qat_relative else reference
    qsteps = search_steps(model, metric, base * (1 + a.qat_budget), names=names)
    qsteps = {n: s * getattr(a, "qat_scale", 1.0) for n, s in qsteps.items()}
    before = metric(pruner.to_state_dict(steps=qsteps))
    finetuned = copy.deepcopy(model.state_dict())
    t0 = time.perf_counter()
    learned = LearnedSteps(qsteps) if getattr(a, "lsq", False) else None
    bench.train(net, a.qat_steps, 10 * ps + 4, lr if a.qat_lr is None else a.qat_lr, pruner, schedule=a.ft_schedule,
                teacher=teacher, kd=a.kd, quant=qsteps, learned=learned, rate=getattr(a, "qat_rate", 0.0),
                step_lr=getattr(a, "step_lr", 1e-3), rate_kind=getattr(a, "rate_kind", "log"))
    t_qat = time.perf_counter() - t0
    lsq = {}
    if learned is not None:
        start, qsteps = qsteps, learned.steps()
        growth = {n: qsteps[n] / start[n] for n in start}
        lsq = {"lsq": True, "qat_rate": a.qat_rate, "rate_kind": a.rate_kind, "step_lr": a.step_lr, "lsq_growth": growth,
               "lsq_growth_geomean": float(torch.tensor(list(growth.values())).log().mean().exp())}
        if bench.rank == 0:
            print(f"LSQ: steps x{lsq['lsq_growth_geomean']:.3f} (geometric mean; "
                  f"{min(growth.values()):.3f}-{max(growth.values()):.3f})", flush=True)
    after = metric(pruner.to_state_dict(steps=qsteps))
    with tempfile.TemporaryDirectory() as tmp:  # the QAT file's size, also when it misses the budget
        lsq["qat_file_bytes"] = pruner.save(Path(tmp) / "qat.nnc", steps=qsteps,
                                            metadata={"model": "TinyLM", "data": "debian fortunes"})
    record = {**lsq, "qat_scale": getattr(a, "qat_scale", 1.0), "qat_steps": a.qat_steps, "qat_budget": a.qat_budget, "qat_relative": a.qat_relative, "qat_lr": a.qat_lr, "qat_val_before": before,
              "qat_val_after": after, "qat_seconds": round(t_qat, 1), "qat_used": after <= limit}
    if bench.rank == 0:
        print(f"QAT: validation at the chosen steps {before:.4f} -> {after:.4f} after {a.qat_steps} steps "
              f"(limit {limit:.4f}; {'used' if after <= limit else 'over: plain search'})", flush=True)
    if after <= limit:
        return qsteps, record
    if getattr(a, "qat_shrink", False):  # just over: the QAT'd weights at slightly finer steps
        for f in (0.9, 0.8, 0.7, 0.6, 0.5):
            trial = {n: s * f for n, s in qsteps.items()}
            val = metric(pruner.to_state_dict(steps=trial))
            if bench.rank == 0:
                print(f"QAT shrink x{f}: validation {val:.4f} (limit {limit:.4f})", flush=True)
            if val <= limit:
                record.update(qat_used=True, qat_shrink=f, qat_val_shrunk=val)
                return trial, record
    model.load_state_dict(finetuned)  # the same mask: QAT keeps pruned weights at zero
    return search_steps(model, metric, limit, names=names), record


def confirm(bench, model, peer, dense, decoded) -> dict:
    """The file on validation windows it was not chosen on (512-1023), against the better baseline there."""
    ref = min(bench.loss(peer, bench.val_confirm), bench.loss(dense, bench.val_confirm))
    val = bench.loss(model, bench.val_confirm, decoded)
    return {"confirm_windows": len(bench.val_confirm), "confirm_reference": ref, "confirm_val": val,
            "confirm_increase": val / ref - 1}
