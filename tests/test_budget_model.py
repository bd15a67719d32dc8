"""The budget search's damage model: isotonic regression and the per-layer fit that predicts the
damage of rungs the scan did not measure."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from nncodec.budget.model import fit_damage, isotonic


@pytest.mark.parametrize("seed", range(5))
def test_isotonic_is_the_closest_non_decreasing_sequence(seed):
    y = np.random.default_rng(seed).normal(size=6).round(1)
    fit = isotonic(y)
    assert np.all(np.diff(fit) >= -1e-12) and np.isclose(fit.sum(), y.sum())  # PAV keeps the mean
    # no non-decreasing sequence on a fine grid is closer in least squares
    grid = np.linspace(y.min(), y.max(), 9)
    best = min(float(np.sum((np.array(c) - y) ** 2)) for c in itertools.combinations_with_replacement(grid, 6))
    assert float(np.sum((fit - y) ** 2)) <= best + 1e-9


def test_fit_is_monotone_interpolates_and_is_proportional_below_the_data():
    pts = [(1.0, 0.0), (2.0, 0.3), (4.0, 0.1), (8.0, 2.0)]  # noisy: 0.3 then 0.1
    f = fit_damage(pts)
    xs = np.geomspace(0.01, 20, 200)
    ys = np.array([f(x) for x in xs])
    assert np.all(np.diff(ys) > 0)  # strictly increasing: finer rungs always damage less
    assert f(3.0) == pytest.approx(0.2, abs=1e-6)  # the pooled value of the noisy pair
    assert f(1.0) == pytest.approx(0.1, abs=1e-6)  # proportional up to the first positive fitted point
    assert f(0.5) == pytest.approx(f(1.0) / 2, rel=1e-6)
    assert f(16.0) == pytest.approx(4.0, rel=1e-6)  # proportional beyond the coarsest measured error


def test_fit_without_any_damage_still_orders_by_error():
    f = fit_damage([(1.0, 0.0), (2.0, -0.5)])
    assert 0 < f(1.0) < f(2.0) < 1e-9
    assert fit_damage([])(1.0) >= 0
