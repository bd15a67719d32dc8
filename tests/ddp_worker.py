"""One training-aware run through the pieces, in one process or as one rank of `torchrun` (gloo).

Used by tests/test_ddp.py: the same global batches either whole (one process) or split in halves
between two ranks under DistributedDataParallel. Writes state.pt (weights, masks, PMMP's gamma),
and rank 0 writes model.nnc. Run: torchrun --nproc_per_node 2 tests/ddp_worker.py OUT_DIR
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from nncodec.compress.training import PMMPPruner, quantized_weights

GLOBAL_BATCH, STEPS_PER_EPOCH = 32, 4


def setup(distributed: bool) -> tuple[int, int, torch.Tensor, torch.Tensor, nn.Module, nn.Module]:
    """rank, world size, the global data (x, y), the model and what trains it (DDP-wrapped when distributed)."""
    torch.set_num_threads(1)
    rank, world = 0, 1
    if distributed:
        dist.init_process_group("gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(GLOBAL_BATCH * STEPS_PER_EPOCH, 8, generator=g)
    y = x[:, :2].sum(1, keepdim=True) - x[:, 3:4]
    torch.manual_seed(1 + rank)  # different init on rank 1: DDP broadcasts rank 0's weights
    model: nn.Module = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
    return rank, world, x, y, model, nn.parallel.DistributedDataParallel(model) if distributed else model


def run(out_dir: str | os.PathLike, distributed: bool) -> None:
    rank, world, x, y, model, net = setup(distributed)
    pruner = PMMPPruner(net, alpha=2e-3, companion_lr=3e-2, targets="weights+biases", delta=0.02, seed=7)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    share = GLOBAL_BATCH // world

    def local(i: int) -> slice:  # this rank's part of global batch i
        start = i * GLOBAL_BATCH + rank * share
        return slice(start, start + share)

    def epochs(n: int, quant: dict[str, float] | None = None) -> None:
        for _ in range(n):
            for i in range(STEPS_PER_EPOCH):
                s = local(i)
                opt.zero_grad()
                with quantized_weights(net, quant):  # quantization-aware: forward/backward at the file's values
                    loss = F.mse_loss(net(x[s]), y[s]) + pruner.penalty()
                    loss.backward()
                opt.step()
                pruner.after_step()

    epochs(6)

    @torch.no_grad()
    def evaluate() -> tuple[float, int]:  # this rank's (sum, count); the piece all-reduces it
        total = sum(float(F.mse_loss(model(x[local(i)]), y[local(i)], reduction="sum")) for i in range(STEPS_PER_EPOCH))
        return total, share * STEPS_PER_EPOCH

    report = pruner.prune(evaluate, example_inputs=x[local(0)], probes=[x[local(i)] for i in range(2)])
    epochs(2)
    steps = {name: 1 / 64 for name in model.state_dict()}  # everything quantized: bytes independent of float noise
    epochs(1, quant=steps)
    size = pruner.save(Path(out_dir) / "model.nnc", steps=steps)
    state = {"params": {k: v.detach().clone() for k, v in model.state_dict().items()},
             "masks": dict(pruner.masks),
             "gamma": {k: v.detach().clone() for k, v in pruner.regularizer.gamma.items()},
             "threshold": torch.tensor(report.tamade.threshold, dtype=torch.float64),
             "size": torch.tensor(size)}
    finish(state, out_dir, rank, distributed)


def finish(state: dict, out_dir: str, rank: int, distributed: bool) -> None:
    """Write this rank's state{rank}.pt, then leave the process group once every rank is done."""
    torch.save(state, Path(out_dir) / f"state{rank}.pt")
    if distributed:
        dist.barrier()  # every rank is past its last collective before either one tears gloo down
        dist.destroy_process_group()


def main(run) -> None:
    """Run `run(out_dir, distributed)` and leave without the interpreter's teardown."""
    run(sys.argv[1], distributed="WORLD_SIZE" in os.environ)
    # Every output is written and closed and the process group destroyed: leave without the interpreter's
    # teardown, where a rank once aborted in CI ("terminate called without an active exception", a C++
    # thread of torch's still joinable). The test checks the outputs; a failure before this point still fails it.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main(run)
