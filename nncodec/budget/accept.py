"""Acceptance: the budget comparison, the held-out confirmation, and the search's result record."""

from __future__ import annotations

from .search import LOSSLESS, BudgetResult, Search

_EPS = 1e-9  # float slack of the budget comparison


def within(bound: float, max_drop: float) -> bool:
    return bound <= max_drop + _EPS


RECONFIRMATIONS = 3  # finer files put to the odd-half confirmation after the chosen one failed it


def confirmed(search: Search, rungs: dict[str, int], max_drop: float) -> bool:
    """Whether a scored file passes the confirmation on the odd samples (always, without one)."""
    key = tuple(rungs[layer.name] for layer in search.layers)
    return key not in search.confirm_bounds or within(search.confirm_bounds[key][0], max_drop)


def best_of_all(search: Search, result: BudgetResult, lossless_data: bytes) -> BudgetResult:
    """The smallest file scored for any budget that meets this one; with confirmation, it must also
    pass the test on the held-out odd samples (and its reported bound is that of all samples)."""
    best = None
    max_drop = result.baseline - result.threshold
    for key, (data, score, bound) in search.files.items():
        if not within(bound, max_drop) or (best is not None and len(data) >= len(best[0])):
            continue
        if key in search.confirm_bounds:
            odd, full = search.confirm_bounds[key]
            if not within(odd, max_drop):
                continue
            bound = full
        best = (data, score, {layer.name: r for layer, r in zip(search.layers, key, strict=True)}, bound)
    again = make_result(search, best, lossless_data, result.baseline, result.threshold, result.history)
    again.evaluations = result.evaluations
    return again


def make_result(search: Search, best, lossless_data: bytes, baseline: float, threshold: float,
                history: list[tuple[int, float, bool]]) -> BudgetResult:
    sens = {layer.name: [(str(search.ladder[r]), b, d) for r, (b, d) in sorted(layer.points.items()) if r >= 0]
            for layer in search.layers}
    conf = search.confidence if search.base_samples is not None else None
    if best is None or len(lossless_data) <= len(best[0]):
        return BudgetResult(lossless_data, baseline, baseline, threshold, {layer.name: "lossless" for layer in search.layers},
                            search.evaluations, history, sens, confidence=conf)
    data, score, rungs, bound = best
    choice = {layer.name: search.ladder[r] if (r := rungs[layer.name]) >= 0 else LOSSLESS for layer in search.layers}
    return BudgetResult(data, score, baseline, threshold, {k: str(v) for k, v in choice.items()}, search.evaluations,
                        history, sens, choice, search.small_lossless, bound, conf)

