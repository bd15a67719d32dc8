"""One SpikeSlab run (made by `make_pruner("spike-slab")`), in one process or as one rank of `torchrun`.

Used by tests/test_ddp.py like ddp_worker.py: the same global batches whole (one process) or split in
halves between two ranks under DistributedDataParallel. The local-reparameterization noise is replaced
by a fixed function of each sample's pre-activation (sin), so one process and two ranks see the same
noise per sample and must agree; the noise still reaches rho's gradient, which DDP does not average
(the piece must). Writes state{rank}.pt; rank 0 writes model.nnc (with PIPs).
Run: torchrun --nproc_per_node 2 tests/ddp_spike_slab_worker.py OUT_DIR
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from ddp_worker import (  # tests/ is on sys.path (pytest; torchrun: the script's folder)
    GLOBAL_BATCH,
    STEPS_PER_EPOCH,
    finish,
    main,
    setup,
)

from nncodec.compress.training import make_pruner


@contextlib.contextmanager
def sample_noise() -> Iterator[None]:
    real = torch.randn_like
    torch.randn_like = lambda t, **_: torch.sin(3.0 * t.detach())  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.randn_like = real  # type: ignore[assignment]


def run(out_dir: str | os.PathLike, distributed: bool) -> None:
    rank, world, x, y, model, net = setup(distributed)
    ss = make_pruner("spike-slab", net, data_size=len(x), prior_inclusion=0.1, prior_sd=1.0, init_phi=0.6,
                     init_sd=0.1, ema=0.9, kl_weight=1.0)
    opt = torch.optim.Adam([*net.parameters(), *ss.parameters()], lr=2e-2)
    share = GLOBAL_BATCH // world

    def epochs(n: int) -> None:
        net.train()
        for _ in range(n):
            for i in range(STEPS_PER_EPOCH):
                s = slice(i * GLOBAL_BATCH + rank * share, i * GLOBAL_BATCH + (rank + 1) * share)
                opt.zero_grad()
                (F.mse_loss(net(x[s]), y[s]) + ss.penalty()).backward()
                opt.step()
                ss.after_step()

    with sample_noise():
        epochs(5)
    pips = ss.pips()
    masks = ss.prune()
    epochs(1)  # fine-tuning, mask frozen
    ss.release()
    steps = {name: 1 / 64 for name in model.state_dict()}  # everything quantized: bytes independent of float noise
    size = ss.save(Path(out_dir) / "model.nnc", steps=steps, keep_pip=True)
    state = {"params": {k: v.detach().clone() for k, v in model.state_dict().items()}, "masks": dict(masks),
             "pips": pips, "slab_sd": {n: ss.sd(n).detach().clone() for n in pips}, "size": torch.tensor(size)}
    finish(state, out_dir, rank, distributed)


if __name__ == "__main__":
    main(run)
