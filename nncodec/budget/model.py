"""The damage model: a per-layer monotone fit of the damage the scan measured against the layer's
weight error, so that every rung of the ladder (measured or not) gets a noise-free predicted damage.

Measured drops of one layer alone are noisy (a few validation samples flip either way) and not
monotone in the step; allocating with them picks rungs by luck and leaves out the rungs the scan
did not measure. Damage (see `Search.steer`) grows with the layer's output error, which grows with
its weight error (`Search.distortion`): the fit is the isotonic (non-decreasing) regression of the
measured damage on that error, interpolated between measured errors and proportional to the error
below the smallest one (first-order: output noise power is proportional to weight noise power).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

_TINY = 1e-12  # a positive floor that keeps finer rungs strictly less damaging than coarser ones


def isotonic(values: Sequence[float]) -> np.ndarray:
    """The non-decreasing sequence closest to `values` in least squares (pool adjacent violators)."""
    blocks: list[list[float]] = []  # [sum, count]
    for v in values:
        blocks.append([float(v), 1.0])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            s, c = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += c
    return np.concatenate([np.full(int(c), s / c) for s, c in blocks]) if blocks else np.zeros(0)


def fit_damage(points: Sequence[tuple[float, float]]) -> Callable[[float], float]:
    """Predicted damage as a function of the weight error, from measured (error, damage) points."""
    pts = sorted((float(e), max(float(d), 0.0)) for e, d in points)
    if not pts:
        return lambda e: _TINY * e
    xs = np.array([p[0] for p in pts])
    ys = isotonic([p[1] for p in pts])
    top = max(float(xs[-1]), 1e-300)
    positive = np.flatnonzero(ys > 0)
    if positive.size == 0:  # nothing measured ever hurt: order by error only
        return lambda e: _TINY * e / top
    k = int(positive[0])
    x0, y0 = max(float(xs[k]), 1e-300), float(ys[k])

    def predict(e: float) -> float:
        if e <= x0:
            value = y0 * e / x0
        elif e <= xs[-1]:
            value = float(np.interp(e, xs[k:], ys[k:]))
        else:  # beyond the coarsest measured error: proportional from there
            value = float(ys[-1]) * e / top
        return value + _TINY * e / top

    return predict
