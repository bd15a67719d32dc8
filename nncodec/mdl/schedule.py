"""How symbols are grouped for coding: lock-step streams, coding batches and prequential blocks.

All of it is plain integers stored in the header, so the decoder derives the same groups.
"""

from __future__ import annotations

import math

from ..errors import FormatError


def stream_bounds(start: int, end: int, streams: int) -> list[tuple[int, int]]:
    """[start, end) cut into `streams` consecutive pieces of ceil(len / streams) symbols (the last
    ones may be shorter or empty); piece j is coded as stream j, all streams in lock step."""
    length = max(1, math.ceil((end - start) / streams))
    return [(min(end, start + j * length), min(end, start + (j + 1) * length)) for j in range(streams)]


def doubling_blocks(n: int, first: int) -> list[int]:
    """Prequential block ends: first, 2·first, 4·first, ... and n (Blier & Ollivier use a similar
    geometric schedule: each block is coded by a model trained on everything before it)."""
    return geometric_blocks(n, first, 2.0)


MAX_BLOCKS = 64


def geometric_blocks(n: int, first: int, ratio: float) -> list[int]:
    """Prequential block ends round(first·ratio^k) (repeats dropped), k = 0, 1, ..., then n. The list
    is stored in the header, so only the encoder computes it (ratio 2 gives the doubling schedule)."""
    if first < 1:
        raise FormatError("first prequential block must hold at least one symbol")
    if not 1.0 < ratio <= 1e6:
        raise FormatError(f"prequential block ratio must be in (1, 1e6], got {ratio!r}")
    ends: list[int] = []
    e = float(first)
    while round(e) < n:
        if not ends or round(e) > ends[-1]:
            ends.append(int(round(e)))
        e *= ratio
    ends.append(n)
    if len(ends) > MAX_BLOCKS:
        raise FormatError(f"{len(ends)} prequential blocks: at most {MAX_BLOCKS} (raise first or ratio)")
    return ends if n > 0 else []


def check_blocks(ends: object, n: int) -> list[int]:
    """A stored block list: strictly increasing integers ending at n."""
    if not isinstance(ends, list) or (n > 0 and not ends) or len(ends) > MAX_BLOCKS:
        raise FormatError("prequential blocks must be a list of at most 64 block ends")
    prev = 0
    for e in ends:
        if isinstance(e, bool) or not isinstance(e, int) or not prev < e <= n:
            raise FormatError(f"prequential block ends must increase strictly up to {n}, got {ends!r}")
        prev = e
    if n and prev != n:
        raise FormatError(f"prequential blocks end at {prev}, the data has {n} symbols")
    return list(ends)
