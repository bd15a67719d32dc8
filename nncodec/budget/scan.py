"""The sensitivity scan: each layer quantized alone on the step ladder, its drop and coded size."""

from __future__ import annotations

from .search import Search


def ladder_order(search: Search) -> list[int]:
    return sorted(range(len(search.ladder)), key=lambda r: (search.ladder[r].rel_step, search.ladder[r].rd_lambda))


def scan(search: Search, baseline: float, stop_drop: float, low_drop: float, limit: int) -> None:
    """Sensitivity of each layer alone. Pass 1: every other step size (lambda 0), fine to coarse,
    until two rungs in a row drop more than `stop_drop`. Pass 2, while evaluations remain: the
    other rungs (the steps in between, the other lambdas) in the range that matters, from the last
    coarse rung that dropped at most `low_drop` up to where pass 1 stopped."""
    rels = sorted({s.rel_step for s in search.ladder})
    lams = sorted({s.rd_lambda for s in search.ladder})
    rung = {(s.rel_step, s.rd_lambda): i for i, s in enumerate(search.ladder)}
    coarse = rels[::2] if rels[-1] in rels[::2] else rels[::2] + [rels[-1]]
    ranges = {}
    for layer in search.layers:
        over, lo, hi = 0, rels[0], rels[-1]
        for rel in coarse:
            if search.evaluations >= limit:
                return
            r = rung[(rel, lams[0])]
            drop = baseline - search.score_layer_alone(layer, r)
            layer.points[r] = (search.components(layer, r)[1], drop)
            if drop <= low_drop:
                lo = rel
            over = over + 1 if drop > stop_drop else 0
            if over >= 2:
                hi = rel
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
                layer.points[r] = (search.components(layer, r)[1], baseline - search.score_layer_alone(layer, r))

