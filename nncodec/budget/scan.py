"""The sensitivity scan: each layer quantized alone on the step ladder, its drop and coded size."""

from __future__ import annotations

from .search import SCAN_START, Layer, Search


def ladder_order(search: Search) -> list[int]:
    return sorted(range(len(search.ladder)), key=lambda r: (search.ladder[r].rel_step, search.ladder[r].rd_lambda))


def scan(search: Search, stop_drop: float, low_drop: float, limit: int) -> None:
    """Sensitivity of each layer alone, on the samples the search steers on. Pass 1: every other
    step size (lambda 0) from SCAN_START x std coarser, until two rungs in a row drop more than
    `stop_drop`; then finer than SCAN_START while the finest measured rung still drops more than
    `low_drop`. Pass 2, while evaluations remain: the other rungs (the steps in between, the other
    lambdas) in the range that matters, from the last rung that dropped at most `low_drop` up to
    where pass 1 stopped. Rungs not measured get their damage from the model (model.py)."""
    rels = sorted({s.rel_step for s in search.ladder})
    lams = sorted({s.rd_lambda for s in search.ladder})
    rung = {(s.rel_step, s.rd_lambda): i for i, s in enumerate(search.ladder)}
    first = min(range(len(rels)), key=lambda i: abs(rels[i] - SCAN_START))
    up = rels[first::2] if rels[-1] in rels[first::2] else rels[first::2] + [rels[-1]]
    down = rels[first - 2 :: -2] if first >= 2 else []
    ranges = {}

    def measure(layer: Layer, r: int) -> float:
        drop, damage = search.score_layer_alone(layer, r)
        layer.points[r] = (search.components(layer, r)[1], drop)
        layer.damage[r] = damage
        return drop

    for layer in search.layers:
        over, lo, hi = 0, rels[0], rels[-1]
        finest_drop = None
        for rel in up:
            if search.evaluations >= limit:
                return
            drop = measure(layer, rung[(rel, lams[0])])
            finest_drop = drop if finest_drop is None else finest_drop
            if drop <= low_drop:
                lo = rel
            over = over + 1 if drop > stop_drop else 0
            if over >= 2:
                hi = rel
                break
        if finest_drop is not None and finest_drop > low_drop:
            for rel in down:  # even the scan's start hurts: measure finer until one does not
                if search.evaluations >= limit:
                    return
                if measure(layer, rung[(rel, lams[0])]) <= low_drop:
                    lo = rel
                    break
        ranges[layer.name] = (lo, hi)
    for layer in search.layers:
        lo, hi = ranges[layer.name]
        for rel in rels:
            for lam in lams:
                r = rung[(rel, lam)]
                if not lo <= rel <= hi or r in layer.points:
                    continue
                if search.evaluations >= limit:
                    return
                measure(layer, r)
