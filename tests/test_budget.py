"""compress_to_budget keeps the score within the budget, measured on the decoded bytes."""

from __future__ import annotations

import numpy as np
import pytest

import nncodec
from nncodec.budget import encode_with_settings, search_budget
from nncodec.compress.calibrate import LayerStats
from nncodec.errors import BadArgumentError

RNG = np.random.default_rng(0)
W0 = RNG.laplace(0, 0.3, size=(8, 40)).astype(np.float32)
B0 = RNG.normal(0, 0.1, size=8).astype(np.float32)
_X = RNG.normal(size=(6000, 40)).astype(np.float32)
_logits = np.sort(_X @ W0.T + B0, axis=1)
X = _X[_logits[:, -1] - _logits[:, -2] > 0.3 * np.abs(np.linspace(-3, 3, 6000))][:1500]  # margins of all sizes
Y = np.argmax(X @ W0.T + B0, axis=1)
FAST = {"rel_steps": (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0), "lambdas": (0.0,), "max_evals": 60, "progress": False}


def tensors() -> dict[str, np.ndarray]:
    return {"clf.weight": W0.copy(), "clf.bias": B0.copy(),
            "unused.weight": RNG.laplace(0, 1.0, size=(32, 32)).astype(np.float32)}


def accuracy(state: dict) -> float:
    w, b = np.asarray(state["clf.weight"]), np.asarray(state["clf.bias"])
    return 100.0 * float(np.mean(np.argmax(X @ w.T + b, axis=1) == Y))


@pytest.mark.parametrize("max_drop", [0.0, 1.0, 5.0])
def test_budget_is_respected_on_the_decoded_file(max_drop):
    sd = tensors()
    data = nncodec.compress_to_budget(sd, accuracy, max_drop, **FAST)
    decoded = nncodec.load(data, framework="np")
    assert set(decoded) == set(sd)
    assert accuracy(decoded) >= accuracy(sd) - max_drop
    lossless = len(nncodec.save(sd))
    assert len(data) < lossless if max_drop > 0 else len(data) <= lossless


def test_layers_are_allocated_by_sensitivity():
    sd = tensors()
    result = search_budget(sd, accuracy, 2.0, **FAST)
    # the tensor the score ignores gets the coarsest step; the classifier does not
    assert result.settings["unused.weight"] == "step=8sd"
    assert result.settings["clf.weight"] != "step=8sd"
    assert result.score >= result.baseline - 2.0
    assert len(result.data) == min(n for n, _, ok in result.history if ok)
    looser = search_budget(sd, accuracy, 10.0, **FAST)
    assert len(looser.data) <= len(result.data)
    # the chosen settings reproduce the file byte for byte
    again = encode_with_settings(sd, result.choice, small_lossless=result.small_lossless)
    assert again == result.data


def test_torch_state_dicts_and_calibration_statistics():
    import torch

    sd = {k: torch.from_numpy(v) for k, v in tensors().items()}
    stats = {"clf.weight": LayerStats.from_inputs(X)}

    def score(state):
        assert all(isinstance(v, torch.Tensor) for v in state.values())
        return accuracy({k: v.numpy() for k, v in state.items()})

    result = search_budget(sd, score, 1.0, statistics=stats, **FAST)
    assert score(nncodec.load(result.data)) >= result.baseline - 1.0


def test_bad_arguments_are_refused():
    with pytest.raises(BadArgumentError):
        nncodec.compress_to_budget(tensors(), accuracy, -1.0, progress=False)
    with pytest.raises(BadArgumentError):
        nncodec.compress_to_budget({"b": B0}, accuracy, 1.0, progress=False)  # nothing to compress
    with pytest.raises(BadArgumentError):
        nncodec.compress_to_budget(tensors(), accuracy, 1.0, rel_steps=(0.0,), progress=False)


def test_half_precision_layers_are_compressed_too():
    import torch

    sd = {k: torch.from_numpy(v).to(torch.bfloat16 if k.startswith("clf") else torch.float16)
          for k, v in tensors().items()}

    def score(state):
        return accuracy({k: v.float().numpy() for k, v in state.items()})

    result = search_budget(sd, score, 2.0, **FAST)
    decoded = nncodec.load(result.data)
    assert decoded["clf.weight"].dtype == torch.bfloat16 and decoded["unused.weight"].dtype == torch.float16
    assert score(decoded) >= result.baseline - 2.0
    assert result.settings["unused.weight"] == "step=8sd"


def test_a_layer_no_step_can_spare_stays_exact():
    sd = tensors()
    sd["key.weight"] = RNG.normal(size=(20, 20)).astype(np.float32)
    key = sd["key.weight"].copy()

    def strict(state):
        return accuracy(state) if np.array_equal(np.asarray(state["key.weight"]), key) else 0.0

    result = search_budget(sd, strict, 1.0, **FAST)
    assert result.settings["key.weight"] == "lossless" and result.settings["unused.weight"] == "step=8sd"
    assert strict(nncodec.load(result.data, framework="np")) >= result.baseline - 1.0
    assert encode_with_settings(sd, result.choice, small_lossless=result.small_lossless) == result.data
