"""Training-aware compression in a user's own training loop: a small transformer language model.

A byte-level causal transformer (not a LeNet) is trained on the fortune-cookie texts that Debian's
`fortunes` package ships (/usr/share/games/fortunes; `apt-get install fortunes`), then compressed with
the composable pieces (nncodec.compress.training.pieces): DRR or PMMP penalty in a plain PyTorch loop,
prune (RGP -> TAMADE -> RGP, tolerance on validation loss), fine-tuning with the mask frozen, the
coarsest quantization steps whose decoded model keeps validation loss within the budget, `save`.

Split (contiguous, fixed): the first 90 % of the bytes train, the next 5 % validation, the last 5 %
test. Every choice (TAMADE's tolerance, quantization steps) is made on validation; the test loss is
scored once at the end. The peer is the dense model trained for the same total number of steps (the
dense phase plus as many further steps as the compression pipeline's regularised and fine-tuning
phases), so the compressed model gets no extra training its baseline did not get.

    nice -n 10 python benchmarks/bench_own_loop.py --out /tmp/lm                       # one process
    nice -n 10 torchrun --nproc_per_node 2 benchmarks/bench_own_loop.py --out /tmp/lm  # DDP (gloo, CPU)

The dense model is trained (and cached in --out) by the first run; later runs, e.g. the DDP one,
reuse it, so that both time the same compression pipeline. Each rank takes half of every global batch.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import time
from pathlib import Path

import lm_levers as L  # a sibling in benchmarks/ (the script's directory)
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from nncodec.api import load_file
from nncodec.compress.training import distributed as D
from nncodec.compress.training import make_pruner, quantized_weights

FORTUNES = Path("/usr/share/games/fortunes")


# ------------------------------------------------------------------------------------------ data
def load_text(root: Path) -> bytes:
    files = sorted(p for p in root.iterdir() if p.is_file() and not p.is_symlink() and p.suffix not in (".dat", ".u8"))
    if not files:
        raise SystemExit(f"{root}: no text files (apt-get install fortunes)")
    return b"".join(p.read_bytes() for p in files)


def split(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n = len(ids)
    a, b = int(n * 0.90), int(n * 0.95)
    return ids[:a], ids[a:b], ids[b:]


def windows(ids: torch.Tensor, ctx: int, limit: int) -> torch.Tensor:
    """Non-overlapping (ctx + 1)-token windows from the start of a split (at most `limit`)."""
    n = min((len(ids) - 1) // ctx, limit)
    return torch.stack([ids[i * ctx : i * ctx + ctx + 1] for i in range(n)])


# ----------------------------------------------------------------------------------------- model
class Block(nn.Module):
    def __init__(self, d: int, heads: int, ff: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc, self.out = nn.Linear(d, ff), nn.Linear(ff, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, c)
        x = x + self.proj(a)
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class TinyLM(nn.Module):
    """GPT-style byte model: token + position embeddings, pre-LN blocks, a linear head."""

    def __init__(self, vocab: int, ctx: int, d: int = 64, layers: int = 2, heads: int = 4, ff: int = 256) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(ctx, d) * 0.02)
        self.blocks = nn.ModuleList(Block(d, heads, ff) for _ in range(layers))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx) + self.pos[: idx.shape[1]]
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln(x))


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def lr_at(step: int, steps: int, lr: float, schedule: str) -> float:
    """Learning rate of 0-based `step` of `steps`: constant, or cosine decay from lr towards 0 (the
    last step still moves: lr * (1 + cos(pi * step / steps)) / 2 > 0), as the LeNet baselines use."""
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        return lr * 0.5 * (1 + math.cos(math.pi * step / steps))
    raise ValueError(f"unknown learning-rate schedule {schedule!r}")


# ------------------------------------------------------------------------------------- the run
class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        text = load_text(Path(args.text))
        vocab = sorted(set(text))
        lut = torch.zeros(256, dtype=torch.long)
        lut[torch.tensor(vocab)] = torch.arange(len(vocab))
        ids = lut[torch.frombuffer(bytearray(text), dtype=torch.uint8).long()]
        self.train_ids, val, test = split(ids)
        self.vocab, self.ctx = len(vocab), args.ctx
        self.val = windows(val, args.ctx, args.eval_windows)
        self.val_confirm = windows(val, args.ctx, 2 * args.eval_windows)[args.eval_windows :]  # never chosen on
        self.test = windows(test, args.ctx, len(test))
        self.rank, self.world = D.rank(), D.world_size()
        self.text_bytes = len(text)

    def batches(self, steps: int, seed: int):
        """`steps` global batches of random windows (the same on every rank); this rank's share of each."""
        g = torch.Generator().manual_seed(seed)
        b, share = self.args.batch, self.args.batch // self.world
        for _ in range(steps):
            starts = torch.randint(0, len(self.train_ids) - self.ctx - 1, (b,), generator=g)
            mine = starts[self.rank * share : (self.rank + 1) * share]
            w = torch.stack([self.train_ids[s : s + self.ctx + 1] for s in mine.tolist()])
            yield w[:, :-1], w[:, 1:]

    @torch.no_grad()
    def loss_sum(self, model: nn.Module, data: torch.Tensor, state: dict | None = None) -> tuple[float, int]:
        """This rank's (sum of token losses, tokens) over its shard of `data`."""
        if state is not None:
            model = copy.deepcopy(model)
            model.load_state_dict(state)
        was = model.training
        model.eval()
        mine = data[self.rank :: self.world]
        total = 0.0
        for i in range(0, len(mine), 64):
            w = mine[i : i + 64]
            logits = model(w[:, :-1])
            total += float(F.cross_entropy(logits.reshape(-1, self.vocab), w[:, 1:].reshape(-1), reduction="sum"))
        model.train(was)
        return total, mine[:, 1:].numel()

    def loss(self, model: nn.Module, data: torch.Tensor, state: dict | None = None) -> float:
        return D.all_reduce_mean(*self.loss_sum(model, data, state))

    def train(self, net: nn.Module, steps: int, seed: int, lr: float, pruner=None, on_step=None,
              schedule: str = "constant", teacher: nn.Module | None = None, kd: float = 0.0, quant=None,
              learned=None, rate: float = 0.0, step_lr: float = 1e-3, rate_kind: str = "log") -> float:
        """Adam steps; `teacher`/`kd`: distillation term (lm_levers.kd_mix); `quant`: name -> step, the
        forward and backward at the quantized weights (quantization-aware fine-tuning); `learned`: a
        LearnedSteps whose steps train too (Adam at `step_lr`, same schedule), with `rate` nats per
        kilobyte of its code-length proxy added to the loss (`rate_kind` "log": code_length, "entropy":
        entropy_bits)."""
        groups = [{"params": list(net.parameters()), "base": lr}]
        if learned is not None:
            groups.append({"params": list(learned.parameters()), "base": step_lr})
        opt = torch.optim.Adam(groups, lr=lr)
        t0 = time.perf_counter()
        for i, (x, y) in enumerate(self.batches(steps, seed)):
            for group in opt.param_groups:
                group["lr"] = lr_at(i, steps, group["base"], schedule)
            opt.zero_grad(set_to_none=True)
            with learned.quantized(net) if learned is not None else quantized_weights(net, quant):
                logits = net(x)
                loss = L.kd_mix(lm_loss(logits, y), logits, teacher, x, kd)
                if pruner is not None:
                    loss = loss + pruner.penalty()
                if learned is not None and rate:
                    bits = learned.entropy_bits(net) if rate_kind == "entropy" else learned.code_length(net)
                    loss = loss + rate * bits / 8192
                loss.backward()
            opt.step()
            if pruner is not None:
                pruner.after_step()
            if on_step is not None:
                on_step(i + 1)
            if self.rank == 0 and on_step is None and (i + 1) % max(steps // 5, 1) == 0:
                print(f"  step {i + 1}/{steps}: loss {float(loss.detach()):.4f} ({time.perf_counter() - t0:.0f} s)", flush=True)
        return time.perf_counter() - t0


def build(bench: Bench, seed: int) -> TinyLM:
    torch.manual_seed(seed)
    a = bench.args
    return TinyLM(bench.vocab, bench.ctx, a.width, a.layers, a.heads, a.ff)


def choose_dense_steps(curve: list[tuple[int, float]], extra: int, flat: float) -> tuple[int, bool]:
    """Epochs chosen on validation: the first curve point whose validation loss is within `flat`
    (relative) of the best loss of the whole curve, among the points that leave `extra` more steps
    on the curve for the peer (so that the peer's and the dense model's curves are both measured)."""
    last = curve[-1][0]
    best = min(v for _, v in curve)
    room = [(step, v) for step, v in curve if step + extra <= last]
    if not room:
        raise SystemExit(f"the validation curve (to step {last}) leaves no room for {extra} more steps")
    for step, v in room:
        if v <= best * (1 + flat):
            return step, True
    return room[-1][0], False  # still improving: the last admissible point, reported as not converged


def dense_phase(bench: Bench, out: Path) -> dict:
    """The dense model and its peer (cached in --out), from ONE dense run with a validation curve.

    The dense run trains for --dense-steps + the pipeline's steps (--dense-steps auto: --max-dense-steps)
    and scores validation every --curve-every steps. The dense model is the state at the chosen step
    (auto: the first point within --flat of the curve's best validation loss, i.e. where more training
    stops helping); the peer is the same run `reg_steps + ft_steps` steps later, so the compressed
    model gets no training its baseline did not get."""
    a = bench.args
    dense_path, peer_path, info_path = out / "dense.pt", out / "dense-peer.pt", out / "dense.json"
    config = {k: getattr(a, k) for k in ("width", "layers", "heads", "ff", "ctx", "batch", "lr", "seed", "dense_steps",
                                         "max_dense_steps", "curve_every", "flat", "eval_windows", "reg_steps",
                                         "ft_steps", "text")}
    config["dense_schedule"] = a.dense_schedule
    if info_path.exists():
        info = json.loads(info_path.read_text())
        info.get("config", {}).setdefault("dense_schedule", "constant")  # files of before the option
        if "peer_extra_steps" in info:  # built by lm_curve_continue.py --anneal: its peer is a longer run
            pipeline = a.reg_steps + a.ft_steps + getattr(a, "qat_steps", 0)
            if info["peer_extra_steps"] is None:  # not verified: the peer is the dense model itself
                print(f"the dense model is not verified converged; the pipeline's {pipeline} steps are extra training")
            elif pipeline > info["peer_extra_steps"]:
                raise SystemExit(f"the pipeline trains {pipeline} steps, more than the peer's "
                                 f"{info['peer_extra_steps']} over the dense model: the peer would be unfair")
            config = {k: v for k, v in config.items() if k not in ("reg_steps", "ft_steps")}
            info = {**info, "config": {k: v for k, v in info["config"].items() if k not in ("reg_steps", "ft_steps")}}
        if info.get("config", config) != config:
            raise SystemExit(f"{out} holds a dense model of another configuration; use another --out")
        return info
    if a.dense_schedule != "constant":
        raise SystemExit("an annealed dense model is built by benchmarks/lm_curve_continue.py --anneal")
    if bench.world > 1:
        raise SystemExit("run once in a single process first: it trains the dense model and its peer")
    extra = a.reg_steps + a.ft_steps
    auto = a.dense_steps == "auto"
    if auto and extra % a.curve_every:
        raise SystemExit("--curve-every must divide --reg-steps + --ft-steps (the peer is a point of the curve)")
    total = a.max_dense_steps if auto else int(a.dense_steps) + extra
    marks = set(range(a.curve_every, total + 1, a.curve_every)) | {total}
    if not auto:
        marks |= {int(a.dense_steps), int(a.dense_steps) + extra}
    model = build(bench, a.seed)
    print(f"dense: {sum(p.numel() for p in model.parameters()):,} parameters, {total} steps, validation every "
          f"{a.curve_every}", flush=True)
    curve: list[tuple[int, float]] = []
    snaps: dict[int, dict] = {}

    def mark(step: int) -> None:
        if step in marks:
            v = bench.loss(model, bench.val)
            curve.append((step, v))
            snaps[step] = copy.deepcopy(model.state_dict())
            print(f"  step {step}: validation loss {v:.4f}", flush=True)

    t_dense = bench.train(model, total, a.seed, a.lr, on_step=mark)
    n, converged = choose_dense_steps(curve, extra, a.flat) if auto else (int(a.dense_steps), None)
    torch.save(snaps[n], dense_path)
    torch.save(snaps[n + extra], peer_path)
    tail = [v for s, v in curve if s >= n]
    info = {"dense_steps": n, "peer_steps": n + extra, "dense_seconds": round(t_dense, 1), "curve": curve,
            "best_val": min(v for _, v in curve), "val_at_dense": dict(curve)[n],
            "tail_change": tail[-1] / tail[0] - 1, "converged": converged, "steps_per_epoch": len(bench.train_ids) / (a.batch * a.ctx),
            "config": config}
    info_path.write_text(json.dumps(info))
    print(f"dense steps: {n}, converged on validation: {converged} (loss {info['val_at_dense']:.4f}; best on the curve "
          f"{info['best_val']:.4f}; from step {n} to {curve[-1][0]}: {100 * info['tail_change']:+.2f} %)", flush=True)
    return info


def model_dense(bench: Bench, out: Path) -> TinyLM:
    model = build(bench, bench.args.seed)
    model.load_state_dict(torch.load(out / "dense.pt", weights_only=True))
    return model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--text", default=str(FORTUNES), help="directory of text files [Debian fortunes]")
    p.add_argument("--out", required=True, help="directory for checkpoints, the .nnc file and results")
    p.add_argument("--method", choices=("drr", "pmmp"), default="drr")
    p.add_argument("--alpha", type=float, default=None, help="penalty strength [drr 2e-5, pmmp 1e-5]")
    p.add_argument("--beta", type=float, default=20.0, help="DRR's beta")
    p.add_argument("--companion-lr", type=float, default=1e-2, help="PMMP's learning rate of w, gamma, u")
    p.add_argument("--delta", type=float, default=0.01, help="TAMADE's relative validation-loss tolerance")
    p.add_argument("--budget", type=float, default=0.02, help="allowed relative validation-loss increase")
    p.add_argument("--dense-steps", default="auto",
                   help="dense training steps, or 'auto': chosen on the validation curve (see dense_phase)")
    p.add_argument("--max-dense-steps", type=int, default=10000, help="length of the dense run with --dense-steps auto")
    p.add_argument("--curve-every", type=int, default=300, help="validation-curve interval of the dense run")
    p.add_argument("--flat", type=float, default=0.005,
                   help="auto: the first step within this relative distance of the curve's best validation loss")
    p.add_argument("--dense-schedule", default="constant",
                   help="learning-rate schedule of the cached dense model (as its dense.json records it)")
    p.add_argument("--reg-steps", type=int, default=400)
    p.add_argument("--ft-steps", type=int, default=200)
    p.add_argument("--pipe-lr", type=float, default=None, help="Adam learning rate of the pipeline [--lr]")
    p.add_argument("--ft-schedule", choices=("constant", "cosine"), default="constant",
                   help="learning-rate schedule of the fine-tuning phase")
    L.add_options(p)
    p.add_argument("--batch", type=int, default=16, help="global batch (split over the ranks)")
    p.add_argument("--ctx", type=int, default=64)
    p.add_argument("--width", type=int, default=64, help="model width d")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--ff", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--eval-windows", type=int, default=512,
                   help="validation windows scored for every choice (the test split is scored whole, once)")
    p.add_argument("--seed", type=int, default=0, help="seed of the dense model (init and batch order)")
    p.add_argument("--pipeline-seed", type=int, default=None,
                   help="seed of the compression pipeline (its batches, RGP) on the cached dense model [--seed]")
    a = p.parse_args()
    torch.set_num_threads(1)
    if "WORLD_SIZE" in os.environ:
        dist.init_process_group("gloo")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    bench = Bench(a)
    info = dense_phase(bench, out)
    D.barrier()

    model = build(bench, a.seed)
    model.load_state_dict(torch.load(out / "dense.pt", weights_only=True))
    peer = build(bench, a.seed)
    peer.load_state_dict(torch.load(out / "dense-peer.pt", weights_only=True))
    if a.dense_steps != "auto" and int(a.dense_steps) < 1:
        raise SystemExit("--dense-steps must be a positive integer or 'auto'")
    dense_val, peer_val = bench.loss(model, bench.val), bench.loss(peer, bench.val)
    reference = min(dense_val, peer_val)  # the stricter of the two baselines
    net = nn.parallel.DistributedDataParallel(model) if bench.world > 1 else model

    t0 = time.perf_counter()
    alpha = a.alpha if a.alpha is not None else (2e-5 if a.method == "drr" else 1e-5)
    kwargs = {"beta": a.beta} if a.method == "drr" else {"companion_lr": a.companion_lr}
    ps = a.seed if a.pipeline_seed is None else a.pipeline_seed
    hp = f"alpha{alpha:g}-" + (f"beta{a.beta:g}" if a.method == "drr" else f"clr{a.companion_lr:g}")
    pruner = make_pruner(a.method, net, alpha=alpha, delta=a.delta, seed=ps, targets=L.targets(a), **kwargs)
    lr = a.lr if a.pipe_lr is None else a.pipe_lr
    teacher = L.frozen(model_dense(bench, out)) if a.kd > 0 else None  # distillation from the dense model
    t_reg = bench.train(net, a.reg_steps, 10 * ps + 2, lr, pruner, teacher=teacher, kd=a.kd)
    reg_val = bench.loss(model, bench.val)
    t1 = time.perf_counter()
    example = bench.val[bench.rank :: bench.world][:16, :-1]
    report = pruner.prune(lambda: bench.loss_sum(model, bench.val), example_inputs=example)
    t_prune = time.perf_counter() - t1
    pruned_val = bench.loss(model, bench.val)
    t_ft = bench.train(net, a.ft_steps, 10 * ps + 3, lr, pruner, schedule=a.ft_schedule, teacher=teacher, kd=a.kd)
    ft_val = bench.loss(model, bench.val)
    t2 = time.perf_counter()
    names = L.quant_names(model, a.quant_small)  # without --quant-small, tensors < 256 stay lossless
    steps, qat = L.quantize(bench, net, model, pruner, a, ps, lr, reference, names, teacher)
    t_quant = time.perf_counter() - t2
    if (a.reg_steps, a.ft_steps, a.pipe_lr, a.ft_schedule) != (400, 200, None, "constant"):
        hp += f"-r{a.reg_steps}-f{a.ft_steps}-lr{lr:g}-{a.ft_schedule}"
    if a.delta != 0.01:
        hp += f"-delta{a.delta:g}"
    hp += L.tag(a)
    path = out / f"lm-{a.method}-{hp}-s{ps}-world{bench.world}.nnc"
    size = pruner.save(path, steps=steps, metadata={"model": "TinyLM", "data": "debian fortunes"})
    seconds = time.perf_counter() - t0
    decoded = load_file(path)
    final_val = bench.loss(model, bench.val, decoded)
    confirm = L.confirm(bench, model, peer, model_dense(bench, out), decoded)  # validation windows never chosen on
    if a.skip_test:  # sweep runs: the test split is scored only for the reported runs
        final_test = peer_test = dense_test = float("nan")
    else:
        final_test, peer_test = bench.loss(model, bench.test, decoded), bench.loss(peer, bench.test)
        dense_test = bench.loss(model_dense(bench, out), bench.test)
    raw = 4 * sum(q.numel() for q in model.parameters())
    result = {
        "world_size": bench.world, "pipeline_seed": ps, "method": a.method, "alpha": alpha, "delta": a.delta,
        "beta": a.beta if a.method == "drr" else None, "companion_lr": a.companion_lr if a.method == "pmmp" else None, "text_bytes": bench.text_bytes, "vocab": bench.vocab,
        "parameters": raw // 4, "float32_bytes": raw, "file_bytes": size, "ratio": raw / size,
        "density_pruned_params": report.nonzero / report.total, "pruned_params": report.total,
        "dense_val": dense_val, "peer_val": peer_val, "reg_val": reg_val, "pruned_val": pruned_val,
        "finetuned_val": ft_val, "compressed_val": final_val,
        "val_increase": final_val / reference - 1, "peer_test": peer_test, "compressed_test": final_test,
        "test_increase": final_test / peer_test - 1, "dense_test": dense_test, "test_windows": len(bench.test),
        "val_windows": len(bench.val), "load_average": os.getloadavg(),
        "seconds": {"pipeline": round(seconds, 1), "regularised": round(t_reg, 1), "prune": round(t_prune, 1),
                    "finetune": round(t_ft, 1), "quant_search": round(t_quant, 1)},
        "tamade_threshold": report.tamade.threshold, "reg_steps": a.reg_steps, "ft_steps": a.ft_steps,
        "pipe_lr": lr, "ft_schedule": a.ft_schedule, "kd": a.kd, "quant_small": a.quant_small,
        "prune_emb": a.prune_emb, "qat_shrink_enabled": a.qat_shrink, **qat, **confirm, **info,
    }
    if D.is_main():
        (out / f"result-{a.method}-{hp}-s{ps}-world{bench.world}.json").write_text(json.dumps(result, indent=2))
        print(json.dumps(result, indent=2))
        ok = result["ratio"] >= 10 and result["val_increase"] <= a.budget
        print(f"x{result['ratio']:.1f} real file bytes at {100 * result['val_increase']:+.2f} % validation loss "
              f"({'meets' if ok else 'misses'} x10 at <= {100 * a.budget:.0f} %); test {100 * result['test_increase']:+.2f} %; "
              f"pipeline {seconds:.0f} s on {bench.world} process(es)")
    if bench.world > 1:
        dist.destroy_process_group()
    if not math.isfinite(result["ratio"]):  # pragma: no cover
        raise SystemExit(1)


if __name__ == "__main__":
    main()
