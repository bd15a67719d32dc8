"""Allocation: per-layer Pareto fronts, the Lagrangian combinations, the binary search on the real
score, the greedy refinement and the re-confirmation walk."""

from __future__ import annotations

from itertools import pairwise

import numpy as np

from .accept import RECONFIRMATIONS, confirmed, make_result, within
from .model import fit_damage
from .scan import ladder_order
from .search import LOSSLESS_RUNG, BudgetResult, Layer, Search


def pareto_front(points: dict[int, tuple[int, float]]) -> list[tuple[int, float, int]]:
    """Rungs on the Pareto front of (bytes, damage), sorted by bytes: each larger one damages less."""
    pts = sorted(((b, d, r) for r, (b, d) in points.items()), key=lambda p: (p[0], p[1]))
    front: list[tuple[int, float, int]] = []
    for b, d, r in pts:
        if not front or d < front[-1][1]:
            front.append((b, d, r))
    return front


def modelled_points(search: Search, layer: Layer) -> dict[int, tuple[int, float]]:
    """rung -> (coded bytes, predicted damage) for every rung up to the coarsest step the scan
    measured on this layer, and the lossless rung (no damage)."""
    measured = [r for r in layer.damage if r >= 0]
    out = {LOSSLESS_RUNG: (search.components(layer, LOSSLESS_RUNG)[1], 0.0)}
    if not measured:
        return out
    for r in measured:
        search.components(layer, r)
    predict = fit_damage([(search.distortion[(layer.name, r)], layer.damage[r]) for r in measured])
    top = max(search.ladder[r].rel_step for r in measured)
    for r, s in enumerate(search.ladder):
        if s.rel_step <= top:
            nbytes = search.components(layer, r)[1]
            out[r] = (nbytes, predict(search.distortion[(layer.name, r)]))
    return out


def multipliers(fronts: dict[str, list[tuple[int, float, int]]]) -> np.ndarray:
    """Lagrange multipliers (bytes per unit of damage) spanning every trade-off the fronts offer."""
    slopes = [(b0 - b1) / (d1 - d0) for f in fronts.values() for (b0, d0, _), (b1, d1, _) in pairwise(f)
              if d1 != d0]  # front order: bytes up, damage down
    slopes = [abs(x) for x in slopes if np.isfinite(x) and x != 0]
    if not slopes:
        return np.array([1.0])
    return np.geomspace(min(slopes) / 2, max(slopes) * 2, 161)


def allocate(search: Search, baseline: float, max_drop: float, per_layer: bool, allowance: int,
             lossless_data: bytes) -> BudgetResult:
    """The smallest file found for one budget with at most `allowance` new evaluate() calls.

    Calling it again for the same budget continues the search: every file already scored is looked
    up in search.files (no evaluation), so the binary search retraces its path for free and goes on
    where the allowance stopped it, and the confirmation walk continues its count (search.reconfirmed).
    """
    threshold = baseline - max_drop
    start = search.evaluations
    history: list[tuple[int, float, bool]] = []
    best: tuple[bytes, float, dict[str, int], float] | None = None
    for key, (data, score, bound) in search.files.items():  # files already scored for other budgets
        if within(bound, max_drop) and (best is None or len(data) < len(best[0])):
            best = (data, score, {layer.name: r for layer, r in zip(search.layers, key, strict=True)}, bound)

    def budget_left() -> bool:
        return search.evaluations - start < allowance and search.left() > 0

    def consider(rungs: dict[str, int]) -> bool:
        nonlocal best
        key = tuple(rungs[layer.name] for layer in search.layers)
        if key in search.files:  # the same file again: same bytes, same score
            data, score, bound = search.files[key]
        else:
            data, score, bound = search.try_file(rungs, key)
            search.files[key] = (data, score, bound)
        ok = within(bound, max_drop)
        history.append((len(data), score, ok))
        if ok and (best is None or len(data) < len(best[0])):
            best = (data, score, dict(rungs), bound)
            search.bar.set_postfix(budget=max_drop, best_bytes=len(data), score=f"{score:.2f}")
        return ok

    if not per_layer:  # one setting for every layer (for comparison): per lambda, binary search over the steps
        for lam in sorted({s.rd_lambda for s in search.ladder}):
            order = [r for r in ladder_order(search) if search.ladder[r].rd_lambda == lam]
            lo, hi = 0, len(order) - 1
            while lo <= hi and budget_left():
                mid = (lo + hi) // 2
                if consider({layer.name: order[mid] for layer in search.layers}):
                    lo = mid + 1
                else:
                    hi = mid - 1
        return make_result(search, best, lossless_data, baseline, threshold, history)

    # keeping a layer exact is always possible, and costs no score; every other rung is modelled
    fronts = {layer.name: pareto_front(modelled_points(search, layer)) for layer in search.layers}

    # Lagrangian allocation: one combination per mu, then a binary search on the real score
    combos: dict[tuple, int] = {}
    for mu in multipliers(fronts):
        pick = tuple(min(fronts[layer.name], key=lambda p: p[0] + mu * p[1])[2] for layer in search.layers)
        combos[pick] = predicted_bytes(search, {layer.name: r for layer, r in zip(search.layers, pick, strict=True)})
    ranked = sorted(combos, key=lambda k: combos[k])  # smallest predicted file first
    lo, hi = 0, len(ranked) - 1
    while lo <= hi and budget_left():
        mid = (lo + hi) // 2
        if consider({layer.name: r for layer, r in zip(search.layers, ranked[mid], strict=True)}):
            hi = mid - 1
        else:
            lo = mid + 1
    if best is None and budget_left():  # even the finest combination failed: the finest rung everywhere
        consider({layer.name: fronts[layer.name][-1][2] for layer in search.layers})

    # greedy refinement: one layer one or two rungs coarser at a time, while the real score holds
    failed: set[tuple[str, int]] = set()
    while best is not None and budget_left():
        current = best[2]
        moves = []
        for layer in search.layers:
            front = fronts[layer.name]
            pos = next((i for i, p in enumerate(front) if p[2] == current[layer.name]), None)
            for ahead in (1, 2):
                if pos is None or pos - ahead < 0 or (layer.name, front[pos - ahead][2]) in failed:
                    continue
                (b1, d1, r1), (b0, d0, _) = front[pos - ahead], front[pos]
                moves.append(((d1 - d0) / max(b0 - b1, 1), layer.name, r1))
        improved = False
        for _, name, r1 in sorted(moves):
            if not budget_left():
                break
            size_before = len(best[0])
            if consider({**best[2], name: r1}) and len(best[0]) < size_before:
                improved = True
                break
            failed.add((name, r1))
        if not improved:
            break

    if best is not None and not confirmed(search, best[2], max_drop):
        # the held-out odd half refused the smallest file: try finer combinations, each predicted
        # larger than the refused one, instead of ending with the lossless file and evaluations unused.
        # At most RECONFIRMATIONS of them reach the odd half, so it is consulted a bounded number of times.
        # The count is kept per budget on the search, so a second pass (entry.search_budgets) cannot
        # reset it.
        floor = predicted_bytes(search, best[2])
        for key in ranked:
            if search.reconfirmed.get(max_drop, 0) >= RECONFIRMATIONS or not budget_left():
                break
            rungs = {layer.name: r for layer, r in zip(search.layers, key, strict=True)}
            if combos[key] <= floor or key in search.files:
                continue
            if consider(rungs):
                search.reconfirmed[max_drop] = search.reconfirmed.get(max_drop, 0) + 1
                if confirmed(search, rungs, max_drop):
                    break
    return make_result(search, best, lossless_data, baseline, threshold, history)


def predicted_bytes(search: Search, rungs: dict[str, int]) -> int:
    """The file's size as the scan's per-layer coded sizes add up (no file is encoded)."""
    return sum(search.components(layer, rungs[layer.name])[1] for layer in search.layers)

