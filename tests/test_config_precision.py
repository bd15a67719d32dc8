"""Every named lossy configuration keeps the precision it promises, with tolerances tight enough that a
coarser step, a lost per-channel scale or a broken RDOQ shows up (issue 8: tests that can fail)."""

from __future__ import annotations

import numpy as np
import pytest

import nncodec
from nncodec.compress.config import CONFIGS, make_compressor


def laplace(shape, seed):
    return np.random.default_rng(seed).laplace(0, 0.05, size=shape).astype(np.float32) * np.linspace(
        0.5, 2.0, shape[0], dtype=np.float32)[:, None]  # rows of different scales: per-channel steps matter


def state_dict() -> dict:
    rng = np.random.default_rng(7)
    return {"fc1.weight": laplace((64, 100), 1), "fc1.bias": rng.normal(0, 0.1, 64).astype(np.float32),
            "fc2.weight": laplace((32, 64), 2), "fc2.bias": rng.normal(0, 0.1, 32).astype(np.float32)}


def rel_rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a.astype(np.float64) - b) ** 2) / np.mean(b.astype(np.float64) ** 2)))


# config -> (max relative RMS error of the weights, max |error| per row / max |w| of the row or None).
# Plain rounding on a b-bit symmetric grid errs at most half a step, max|w_row| / (2^b - 2); RMS bounds
# are the uniform-noise value with ~5 % slack, or (RDOQ, k-means, pruning) the measured value + ~5 %.
EXPECT = {
    "int8": (0.0090, 1 / 254),
    "int6": (0.0370, 1 / 62),
    "int4": (0.160, 0.080),
    "fine": (0.0210, None),
    "balanced": (0.105, None),
    "small": (0.300, None),
    "pruned": (0.335, None),
    "codebook16": (0.145, None),
}


def test_every_config_has_an_expectation():
    assert set(EXPECT) == set(CONFIGS)


@pytest.mark.parametrize("name", sorted(EXPECT))
def test_named_config_precision(name):
    sd = state_dict()
    out = nncodec.load(nncodec.save(sd, compressor=make_compressor(name)), framework="np")
    max_rel, row_bound = EXPECT[name]
    for key in ("fc1.weight", "fc2.weight"):
        w, got = sd[key], out[key]
        assert rel_rms(got, w) <= max_rel, (key, rel_rms(got, w))
        if row_bound is not None:
            err = np.abs(got.astype(np.float64) - w).max(1)
            assert np.all(err <= row_bound * np.abs(w).max(1) * (1 + 1e-5) + 1e-12)
    # the small tensors always get the fine step (relative error 2^-6), whatever the config
    for key in ("fc1.bias", "fc2.bias"):
        assert rel_rms(out[key], sd[key]) <= 2.0**-6 * 1.05
    if name == "fine":
        assert rel_rms(out["fc1.weight"], sd["fc1.weight"]) >= 0.018  # not needlessly finer (bigger) either
    if name == "codebook16":
        assert all(len(np.unique(out[k])) <= 16 for k in ("fc1.weight", "fc2.weight"))
    if name == "pruned":
        assert all(np.mean(out[k] == 0) >= 0.7 for k in ("fc1.weight", "fc2.weight"))
