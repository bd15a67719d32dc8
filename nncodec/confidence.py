"""One-sided confidence bound of a paired score drop, for accepting a compressed model.

A compressed model and its original are scored on the same samples, so the per-sample differences
d_i = base_i - candidate_i are paired. Their mean is the observed drop; the acceptance test uses the
one-sided upper bound

    upper = mean(d) + z(level) * sd(d) / sqrt(n)        (normal bound on the paired mean)

which for 0/1 correctness is the normal approximation of McNemar's test on the discordant pairs. A
file is accepted only if `upper <= max_drop`: the drop on unseen data from the same distribution then
exceeds the budget with probability at most 1 - level (5 % at the default 95 %), instead of the
search picking the file whose validation samples happened to flip favourably.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from .errors import BadArgumentError

DEFAULT_CONFIDENCE = 0.95


@dataclass(frozen=True)
class PairedDrop:
    drop: float  # mean of base - candidate (in the scores' units)
    upper: float  # one-sided upper confidence bound of the drop
    n: int


def z_value(confidence: float) -> float:
    if not (isinstance(confidence, (int, float)) and 0.5 <= confidence < 1):
        raise BadArgumentError(f"confidence must be in [0.5, 1), got {confidence!r}")
    return NormalDist().inv_cdf(float(confidence))


def paired_drop(base: np.ndarray, candidate: np.ndarray, confidence: float = DEFAULT_CONFIDENCE) -> PairedDrop:
    """Mean paired drop and its one-sided upper bound at `confidence` (see the module doc)."""
    b = np.asarray(base, dtype=np.float64).reshape(-1)
    c = np.asarray(candidate, dtype=np.float64).reshape(-1)
    if b.shape != c.shape or b.size < 2:
        raise BadArgumentError(f"per-sample scores must be two arrays of the same length >= 2, got {b.size} and {c.size}")
    d = b - c
    mean = float(d.mean())
    sd = float(d.std(ddof=1))
    return PairedDrop(mean, mean + z_value(confidence) * sd / math.sqrt(d.size), int(d.size))


def half_drops(base: np.ndarray, candidate: np.ndarray,
               confidence: float = DEFAULT_CONFIDENCE) -> tuple[PairedDrop, PairedDrop]:
    """The paired drop on the even-numbered and on the odd-numbered samples: the protocol's two halves
    (a choice steered by one half is confirmed on the other)."""
    b = np.asarray(base, dtype=np.float64).reshape(-1)
    c = np.asarray(candidate, dtype=np.float64).reshape(-1)
    return paired_drop(b[0::2], c[0::2], confidence), paired_drop(b[1::2], c[1::2], confidence)


def passes_confirmed(base: np.ndarray, candidate: np.ndarray, max_drop: float,
                     confidence: float = DEFAULT_CONFIDENCE) -> bool:
    """The protocol's acceptance of a candidate from per-sample scores (benchmarks/PROTOCOL.md rule 4):
    the one-sided upper bound of the paired drop is within `max_drop` on the even-numbered samples AND
    on the odd-numbered ones (`half_drops`)."""
    return all(d.upper <= max_drop + 1e-9 for d in half_drops(base, candidate, confidence))
