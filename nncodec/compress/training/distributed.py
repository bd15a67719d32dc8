"""torch.distributed glue for the training-aware pieces; every helper is a no-op in a single process.

What must be shared across ranks, and how (DDP already averages the model's gradients):
  - penalties: computed on every rank from the (identical) weights, so nothing to do;
  - method parameters (PMMP's w, gamma, u): initialised from the weights and updated from the
    penalty's gradient only, so they stay identical; `broadcast_` from rank 0 once at start-up makes
    that hold even when ranks were seeded differently;
  - losses that decide something (TAMADE's tolerance and bisection): `all_reduce_mean` of (sum, count);
  - masks and anything fitted on local data (RGP's "gradient seen", layerwise fits): OR-reduced or
    broadcast from rank 0, so every rank holds the same mask;
  - files: only rank 0 writes (`is_main`), the others wait at a barrier.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.distributed as dist


def active() -> bool:
    """True inside an initialised process group with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if active():
        dist.barrier()


def _comm_device(t: torch.Tensor) -> torch.device:
    """nccl needs CUDA tensors, gloo CPU ones."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(values: list[float]) -> list[float]:
    """Element-wise sum over ranks, in float64 (identical result on every rank)."""
    if not active():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    t = t.to(_comm_device(t))
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return [float(v) for v in t.cpu()]


def all_reduce_mean(total: float, count: float) -> float:
    """The global mean of a quantity given each rank's (sum, count)."""
    s, c = all_reduce_sum([total, count])
    return s / max(c, 1e-300)


@torch.no_grad()
def all_reduce_mean_(tensors: Iterable[torch.Tensor]) -> None:
    """In place: each tensor becomes its mean over ranks."""
    if not active():
        return
    n = world_size()
    for x in tensors:
        t = x.detach().to(_comm_device(x)).contiguous()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        x.copy_(t.to(x.device) / n)


@torch.no_grad()
def any_reduce_(masks: Iterable[torch.Tensor]) -> None:
    """In place: each boolean tensor becomes the OR of its values over ranks."""
    if not active():
        return
    for m in masks:
        t = m.to(_comm_device(m), torch.uint8)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        m.copy_(t.to(m.device, torch.bool))


@torch.no_grad()
def broadcast_(tensors: Iterable[torch.Tensor], src: int = 0) -> None:
    """In place: every tensor takes rank `src`'s value."""
    if not active():
        return
    for x in tensors:
        dev = _comm_device(x)
        t = x.detach().to(dev, torch.uint8 if x.dtype == torch.bool else x.dtype).contiguous()
        dist.broadcast(t, src)
        x.copy_(t.to(x.device, x.dtype))


def broadcast_int(value: int, src: int = 0) -> int:
    if not active():
        return value
    t = torch.tensor([value], dtype=torch.int64)
    t = t.to(_comm_device(t))
    dist.broadcast(t, src)
    return int(t.cpu()[0])


def all_reduce_max(value: float) -> float:
    if not active():
        return value
    t = torch.tensor([value], dtype=torch.float64)
    t = t.to(_comm_device(t))
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.cpu()[0])
