"""Drivers: walk over the symbols in a fixed order, get a probability table for each from a model,
and hand it to a side (encode or decode, `sides.py`). The same function runs in both directions,
with tensors of identical shapes, so both compute identical probabilities."""

from __future__ import annotations

import numpy as np
import torch

from .models import probabilities
from .schedule import stream_bounds

PAD = 10  # the "previous byte" a fresh stream starts from (a newline)
COND_BATCH = 1024  # inputs per forward pass of a conditional model


@torch.no_grad()
def code_sequence(model, side, start: int, end: int, streams: int, progress=None) -> None:
    """Symbols [start, end) of a sequence, as `streams` lock-step streams that start fresh."""
    bounds = stream_bounds(start, end, streams)
    starts = np.array([s for s, _ in bounds], dtype=np.int64)
    lens = np.array([e - s for s, e in bounds], dtype=np.int64)
    steps = int(lens.max(initial=0))
    state = model.start(streams)
    prev = torch.full((streams,), PAD, dtype=torch.int64)
    nxt = np.full(streams, PAD, dtype=np.int64)
    for t in range(steps):
        logits, state = model.step(state, prev)
        probs = probabilities(logits)
        active = lens > t
        sym = side(starts[active] + t, probs[active])
        nxt[:] = PAD
        nxt[active] = sym
        prev = torch.from_numpy(nxt.copy())
        if progress is not None:
            progress(int(active.sum()))


@torch.no_grad()
def code_conditional(model, side, inputs: np.ndarray, start: int, end: int, progress=None) -> None:
    """Symbols [start, end), each predicted from inputs[i], in batches of COND_BATCH."""
    for b in range(start, end, COND_BATCH):
        idx = np.arange(b, min(end, b + COND_BATCH))
        logits = model.logits(torch.from_numpy(np.ascontiguousarray(inputs[idx])))
        side(idx, probabilities(logits))
        if progress is not None:
            progress(idx.size)


@torch.no_grad()
def code_mixture(mix, side, inputs: list[np.ndarray], start: int, end: int, progress=None) -> None:
    """Symbols [start, end) under a mixture (mixture.py): the members' tables in batches of
    COND_BATCH, then one symbol at a time, the weights updated after each."""
    for b in range(start, end, COND_BATCH):
        idx = np.arange(b, min(end, b + COND_BATCH))
        tables = mix.tables(inputs, idx)
        for t in range(idx.size):
            s = side(idx[t:t + 1], mix.table(tables, t))
            mix.observe(tables[:, t, int(s[0])])
        if progress is not None:
            progress(idx.size)
