"""Training-aware compression inside your own PyTorch training loop (also under torchrun / DDP).

    python examples/prune_own_loop.py --out model.nnc
    torchrun --nproc_per_node 2 examples/prune_own_loop.py --out model.nnc     # 2 CPU processes (gloo)

The data are synthetic (a teacher network labels random inputs), so the script runs anywhere in a
few seconds; replace `make_data` and the model with yours. The four calls that matter are marked.
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from nncodec.compress.training import make_pruner


def make_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rule = torch.Generator().manual_seed(1234)
    teacher = torch.randn(20, 5, generator=rule) * (torch.rand(20, 5, generator=rule) < 0.3)  # a sparse rule
    x = torch.randn(n, 20, generator=torch.Generator().manual_seed(seed))
    return x, (x @ teacher).argmax(1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="model.nnc")
    p.add_argument("--method", default="pmmp", choices=("pmmp", "drr", "rl1", "tamade"))
    p.add_argument("--epochs", type=int, default=20)
    args = p.parse_args()
    distributed = "WORLD_SIZE" in os.environ
    if distributed:
        dist.init_process_group("gloo")
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    torch.manual_seed(0)
    torch.set_num_threads(1)

    x, y = make_data(4096, seed=0)
    x_val, y_val = make_data(1024, seed=1)
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 5))
    net = nn.parallel.DistributedDataParallel(model) if distributed else model
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    options = {"pmmp": {"alpha": 2e-3, "companion_lr": 1e-2}, "drr": {"alpha": 1e-3}, "rl1": {"alpha": 1e-3},
               "tamade": {}}[args.method]
    pruner = make_pruner(args.method, net, **options)  # 1. the piece (pass the DDP-wrapped model if you have one)

    def epoch(seed: int) -> float:
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
        for i in range(0, len(order), 128):
            idx = order[i : i + 128][rank::world]  # this rank's share of the global batch
            opt.zero_grad()
            loss = F.cross_entropy(net(x[idx]), y[idx]) + pruner.penalty()  # 2. add the penalty
            loss.backward()
            opt.step()
            pruner.after_step()  # 3. after every optimizer step
        return float(loss.detach())

    for e in range(args.epochs):
        epoch(e)

    @torch.no_grad()
    def val_loss() -> tuple[float, int]:  # this rank's (sum, count); the piece all-reduces it
        xs, ys = x_val[rank::world], y_val[rank::world]
        return float(F.cross_entropy(model(xs), ys, reduction="sum")), len(ys)

    report = pruner.prune(val_loss, example_inputs=x[:64])  # 4. RGP -> TAMADE -> RGP; the mask is now frozen
    for e in range(args.epochs // 2):  # fine-tuning: pruned weights stay exactly zero
        epoch(100 + e)
    size = pruner.save(args.out, levels=32)  # mask + quantized survivors (rank 0 writes)
    with torch.no_grad():
        acc = float((model(x_val).argmax(1) == y_val).float().mean())
    if rank == 0:
        print(f"{args.out}: {size:,} bytes for {sum(q.numel() for q in model.parameters()):,} parameters; "
              f"{report.nonzero:,} of {report.total:,} weights kept; validation accuracy {100 * acc:.1f}%")
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
