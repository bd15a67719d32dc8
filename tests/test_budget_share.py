"""Several budgets share one evaluation cap: a budget whose share ran out before it found a file gets
the evaluations the other budgets left unused, and the cap is never exceeded."""

from __future__ import annotations

import numpy as np
import pytest

import nncodec
from nncodec.budget import entry, search_budgets
from nncodec.budget.accept import best_of_all

RNG = np.random.default_rng(0)
W = {f"l{i}.weight": RNG.normal(0, 1, (16, 32)).astype(np.float32) for i in range(3)}
SENSITIVITY = {"l0.weight": 40.0, "l1.weight": 40.0 / 3, "l2.weight": 40.0 / 9}
BUDGETS = [0.02, 20.0, 30.0]  # a tight budget first: it needs many files; the loose ones finish early
OPTS = {"rel_steps": (0.125, 0.25, 0.5, 1.0, 2.0, 4.0), "lambdas": (0.0,), "min_layer_numel": 100,
        "progress": False}
CAPS = range(6, 30)


def score(state) -> float:
    """Deterministic: 100 minus the sensitivity-weighted relative squared error of the weights."""
    return 100.0 - sum(SENSITIVITY[k] * float(np.mean((np.asarray(state[k], np.float64) - w) ** 2) / np.var(w))
                       for k, w in W.items())


def run(cap: int) -> tuple[list, int]:
    calls: list[int] = []

    def counting(state) -> float:
        calls.append(1)
        return score(state)

    return search_budgets(dict(W), counting, BUDGETS, max_evals=cap, **OPTS), len(calls)


def first_pass_only(search, baseline, drops, results, per_layer, lossless_data):
    """The search as it was before the reallocation: each budget keeps what its first pass found."""
    return [best_of_all(search, r, lossless_data) for r in results]


@pytest.fixture(scope="module")
def without_reallocation():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(entry, "reallocate", first_pass_only)
        return {cap: run(cap) for cap in CAPS}


def test_a_budget_that_found_nothing_gets_the_unused_evaluations(without_reallocation):
    rescued = 0
    for cap in CAPS:
        results, calls = run(cap)
        assert calls <= cap and all(r.evaluations <= cap for r in results)  # the hard cap holds
        before, calls_before = without_reallocation[cap]
        for r, b, d in zip(results, before, BUDGETS, strict=True):
            # every answer keeps its budget on the decoded file, and is never larger than before
            assert score(nncodec.load(r.data, framework="np")) >= score(W) - d - 1e-9
            assert len(r.data) <= len(b.data)
        if not before[0].choice and calls_before < cap and results[0].choice:  # nothing found, evaluations unused
            rescued += 1
            assert len(results[0].data) < len(nncodec.save(dict(W)))
            assert calls > calls_before  # it was the unused evaluations that found it
    # the scenario occurs for a range of caps (11-23 when written); without the reallocation it is 0
    assert rescued >= 3


def test_nothing_changes_when_every_budget_found_a_file(without_reallocation):
    for cap in CAPS:
        before, calls_before = without_reallocation[cap]
        if all(b.choice for b in before):
            results, calls = run(cap)
            assert calls == calls_before and [r.data for r in results] == [b.data for b in before]
