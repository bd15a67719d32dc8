"""The evaluation protocol's pieces: the fixed split, per-sample evaluators, the paired-drop bound,
the budget search against brute force, its acceptance on a synthetic evaluator with a known true drop,
the hard evaluation cap, a silent library default, and calibration inputs taken as fed."""

from __future__ import annotations

import hashlib
import itertools

import numpy as np
import pytest
import torch
from nncodec_cli.presets import lenet
from nncodec_cli.presets.fashion_mnist import preprocess, train_validation_split

# ------------------------------------------------------------------ split and evaluators
from synthetic_idx import write_tiny_idx

import nncodec
from nncodec.budget import LOSSLESS, Setting, encode_with_settings, search_budget
from nncodec.compress.layer_inputs import layer_statistics
from nncodec.confidence import paired_drop
from nncodec.errors import BadArgumentError


def test_validation_is_the_last_images_of_the_training_file():
    x = np.arange(100 * 4, dtype=np.uint8).reshape(100, 2, 2)
    y = np.arange(100) % 10
    (xt, yt), (xv, yv) = train_validation_split(x, y, 30)
    assert np.array_equal(xt, x[:70]) and np.array_equal(xv, x[70:])
    assert np.array_equal(yt, y[:70]) and np.array_equal(yv, y[70:])
    with pytest.raises(BadArgumentError):
        train_validation_split(x, y, 100)
    with pytest.raises(BadArgumentError):
        train_validation_split(x, y[:5], 3)


def test_per_sample_evaluator_mean_is_the_accuracy():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, (300, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 300)
    model = lenet.build("lenet300")
    state = model.state_dict()
    per = lenet.make_evaluator("lenet300", images, labels, per_sample=True)(state)
    assert per.shape == (300,) and set(np.unique(per)) <= {0.0, 100.0}
    assert per.mean() == pytest.approx(lenet.make_evaluator("lenet300", images, labels)(state))
    # already-preprocessed input gives the same answer (not normalised twice)
    same = lenet.make_evaluator("lenet300", preprocess(images), labels, per_sample=True)(state)
    assert np.array_equal(per, same)


def test_layer_statistics_take_the_input_as_fed():
    torch.manual_seed(0)
    model = lenet.build("lenet300")
    rng = np.random.default_rng(2)
    x = preprocess(rng.integers(0, 255, (500, 28, 28), dtype=np.uint8))
    stats = layer_statistics(model, x)
    xd = x.double().numpy()
    assert np.allclose(stats["fc1.weight"].mean, xd.mean(0), atol=1e-6)
    assert np.allclose(stats["fc1.weight"].cov, np.cov(xd.T, bias=True), atol=1e-5)
    assert np.allclose(layer_statistics(model, x.numpy())["fc1.weight"].mean, stats["fc1.weight"].mean)
    with pytest.raises(BadArgumentError):
        layer_statistics(model, rng.integers(0, 255, (50, 28, 28), dtype=np.uint8))  # raw images: ambiguous


# ------------------------------------------------------------------ the paired-drop bound


@pytest.mark.parametrize("true_drop, accept_low, accept_high", [(2.0, 0.0, 0.02), (1.0, 0.02, 0.09), (0.0, 0.5, 1.0)])
def test_bound_accepts_a_too_large_true_drop_rarely(true_drop, accept_low, accept_high):
    """Candidates whose population drop is `true_drop` points, judged against a 1.0-point budget on
    2,000 paired samples: at the budget itself the one-sided 95 % bound accepts about 5 % of them."""
    rng = np.random.default_rng(3)
    n, trials, accepted = 2000, 1500, 0
    for _ in range(trials):
        base = rng.random(n) < 0.9
        lose = base & (rng.random(n) < true_drop / 90 + 0.02)  # correct -> wrong, plus churn ...
        gain = ~base & (rng.random(n) < 0.18)  # ... balanced by wrong -> right (0.1 * 0.18 = 0.9 * 0.02)
        cand = (base & ~lose) | gain
        accepted += paired_drop(100.0 * base, 100.0 * cand).upper <= 1.0
    assert accept_low <= accepted / trials <= accept_high


def test_bound_is_exact_for_identical_scores_and_refuses_bad_shapes():
    a = np.array([100.0, 0.0, 100.0])
    assert paired_drop(a, a).upper == 0.0
    with pytest.raises(BadArgumentError):
        paired_drop(a, a[:2])
    with pytest.raises(BadArgumentError):
        paired_drop(a, a, confidence=1.0)


# ------------------------------------------------------------------ a tiny two-layer model

RNG = np.random.default_rng(0)
W1 = RNG.normal(0, 0.4, (16, 20)).astype(np.float32)
B1 = RNG.normal(0, 0.1, 16).astype(np.float32)
W2 = RNG.normal(0, 0.4, (12, 16)).astype(np.float32)
B2 = RNG.normal(0, 0.1, 12).astype(np.float32)
_X = RNG.normal(size=(8000, 20)).astype(np.float32)
_top2 = np.sort(np.maximum(_X @ W1.T + B1, 0) @ W2.T + B2, axis=1)[:, -2:]
X = _X[_top2[:, 1] - _top2[:, 0] > 0.5 * np.abs(np.linspace(-3, 3, 8000))][:1500]  # margins of all sizes
STEPS = (0.25, 0.5, 1.0, 2.0, 4.0)
FAST = {"rel_steps": STEPS, "lambdas": (0.0,), "min_layer_numel": 100}


def tiny() -> dict[str, np.ndarray]:
    return {"l1.weight": W1.copy(), "l1.bias": B1.copy(), "l2.weight": W2.copy(), "l2.bias": B2.copy()}


def logits(state) -> np.ndarray:
    s = {k: np.asarray(v, dtype=np.float64) for k, v in state.items()}
    return np.maximum(X @ s["l1.weight"].T + s["l1.bias"], 0) @ s["l2.weight"].T + s["l2.bias"]


Y = logits(tiny()).argmax(1)


def accuracy(state) -> float:
    return 100.0 * float((logits(state).argmax(1) == Y).mean())


@pytest.fixture(scope="module")
def every_file():
    """(bytes, accuracy) of every combination of the ladder: 5 steps + lossless per layer, 36 files."""
    sd = tiny()
    out = [(len(nncodec.save(sd)), accuracy(sd))]  # the search falls back to the lossless file
    for c1, c2 in itertools.product((LOSSLESS, *[Setting(s, 0.0) for s in STEPS]), repeat=2):
        data = encode_with_settings(sd, {"l1.weight": c1, "l2.weight": c2}, min_layer_numel=100)
        out.append((len(data), accuracy(nncodec.load(data, framework="np"))))
    return out


@pytest.mark.parametrize("max_drop", [1.0, 4.0])
def test_search_matches_brute_force(max_drop, every_file):
    """The search must find the smallest file within the budget that enumeration finds (or one at
    most 3 % larger), with fewer evaluations than there are files."""
    sd = tiny()
    result = search_budget(sd, accuracy, max_drop, max_evals=30, **FAST)
    assert not result.small_lossless  # the enumeration encodes small tensors with the fine step
    base = accuracy(sd)
    best = min(n for n, acc in every_file if acc >= base - max_drop)
    assert accuracy(nncodec.load(result.data, framework="np")) >= base - max_drop
    assert best <= len(result.data) <= 1.03 * best
    assert result.evaluations <= 30


def test_max_evals_is_a_hard_cap():
    calls = []

    def counting(state):
        calls.append(1)
        return accuracy(state)

    for cap in (1, 5, 17):
        calls.clear()
        result = search_budget(tiny(), counting, 1.0, max_evals=cap, **FAST)
        assert len(calls) <= cap and result.evaluations == len(calls)
        assert accuracy(nncodec.load(result.data, framework="np")) >= accuracy(tiny()) - 1.0
    with pytest.raises(BadArgumentError):
        search_budget(tiny(), accuracy, 1.0, max_evals=0, **FAST)


def test_library_draws_no_progress_bar_unless_asked(capsys):
    search_budget(tiny(), accuracy, 1.0, max_evals=10, **FAST)
    assert capsys.readouterr().err == ""


# ------------------------------------------------------------------ a synthetic evaluator with a known true drop


def true_drop(state) -> float:
    """Population drop in points: 30 x the summed relative squared weight error of both layers."""
    err = 0.0
    for name, w in (("l1.weight", W1), ("l2.weight", W2)):
        err += float(np.mean((np.asarray(state[name], np.float64) - w) ** 2) / np.var(w))
    return 30.0 * err


N_SAMPLES = 8000


def noisy_evaluator(seed: int):
    """Per-sample 0/100 scores on a fixed sample of N_SAMPLES: a candidate with true drop D loses each
    correct sample with probability D/90 + churn and regains wrong ones (the churn keeps the mean), with
    flips drawn per candidate, as a real validation set flips different samples for different files."""
    base = np.random.default_rng(seed).random(N_SAMPLES) < 0.9

    def evaluate(state) -> np.ndarray:
        d = true_drop(state)
        if d == 0:
            return 100.0 * base
        h = hashlib.sha256(b"".join(np.ascontiguousarray(state[k]).tobytes() for k in sorted(state))).digest()
        rng = np.random.default_rng([seed, int.from_bytes(h[:8], "little")])
        lose = base & (rng.random(N_SAMPLES) < d / 90 + 0.02)
        gain = ~base & (rng.random(N_SAMPLES) < 0.18)
        return 100.0 * ((base & ~lose) | gain)

    return evaluate


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_confidence_bound_holds_the_true_drop(seed):
    ev = noisy_evaluator(seed)
    opts = dict(FAST, rel_steps=tuple(0.25 * 2 ** (k / 2) for k in range(9)))
    bounded = search_budget(tiny(), ev, 1.0, max_evals=120, **opts)
    d = true_drop(nncodec.load(bounded.data, framework="np"))
    assert 0.0 < d <= 1.0  # compressed, and the drop on unseen samples is within the budget
    assert bounded.confidence == 0.95 and bounded.drop_bound <= 1.0
    assert bounded.evaluations <= 120


# ------------------------------------------------------------------ nncodec budget on a tiny IDX directory


def test_cli_budget_selects_on_validation_and_reports_test(tmp_path):
    from click.testing import CliRunner
    from nncodec_cli.main import main as cli_main

    write_tiny_idx(tmp_path, 600, 200)
    out = tmp_path / "m.nnc"
    res = CliRunner().invoke(cli_main, ["budget", "--arch", "lenet300", "--data", str(tmp_path), "--epochs", "1",
                                        "--validation", "300", "--max-drop", "2", "--max-evals", "8",
                                        "--lambdas", "0", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "validation (300 images, selected on)" in res.output and "test (200 images, scored once)" in res.output
    evals = int(res.output.split(" evaluations")[0].rsplit(" ", 1)[1])
    assert 1 <= evals <= 8
    assert out.stat().st_size < 4 * 266_610


def test_confirmation_on_held_out_samples_rejects_a_file_that_passed_by_luck():
    """A file whose damage falls only on the odd-numbered samples passes the test the search steers on
    (even samples) but not the confirmation; without confirmation (one test on all samples) it passes."""
    base = np.tile([100.0, 100.0, 100.0, 0.0], 1000)

    def evaluate(state) -> np.ndarray:
        if all(np.array_equal(np.asarray(state[k]), v) for k, v in tiny().items()):
            return base
        out = base.copy()
        out[1:400:2] = 0.0  # 200 odd samples lost: -5 points on the odd half, -0.0 on the even half
        return out

    confirmed = search_budget(tiny(), evaluate, 3.0, max_evals=20, **FAST)
    assert confirmed.data == nncodec.save(tiny())  # nothing lossy survives the confirmation
    single = search_budget(tiny(), evaluate, 3.0, max_evals=20, confirm=False, **FAST)
    assert len(single.data) < len(confirmed.data) and single.drop_bound <= 3.0


def test_passes_confirmed_needs_both_halves():
    from nncodec.confidence import passes_confirmed

    base = np.full(400, 100.0)
    even_bad = base.copy()
    even_bad[0::2][:40] = 0.0  # 20 % of the even samples flip, none of the odd ones
    assert not passes_confirmed(base, even_bad, 5.0)
    odd_bad = base.copy()
    odd_bad[1::2][:40] = 0.0
    assert not passes_confirmed(base, odd_bad, 5.0)
    assert passes_confirmed(base, base, 0.0)
    assert passes_confirmed(base, even_bad, 30.0)



def test_a_refused_confirmation_tries_finer_files_instead_of_giving_up():
    """The odd half loses 20 points as soon as the true drop passes 0.4, which the even half the search
    steers on never shows: every file the search steers to fails the confirmation. A finer file that
    passes both halves must be returned, not the lossless file (the search used to stop there with most
    of its evaluations unused)."""
    base = np.full(4000, 100.0)

    def evaluate(state) -> np.ndarray:
        d = true_drop(state)
        lost_even = int(round(d / 100 * 2000))
        lost_odd = 400 if d > 0.4 else lost_even
        out = base.copy()
        out[0:2 * lost_even:2] = 0.0
        out[1:2 * lost_odd:2] = 0.0
        return out

    opts = dict(FAST, rel_steps=tuple(0.25 * 2 ** (k / 2) for k in range(9)))
    r = search_budget(tiny(), evaluate, 2.0, max_evals=60, **opts)
    assert len(r.data) < len(nncodec.save(tiny()))  # a lossy file survived the confirmation
    assert 0.0 < true_drop(nncodec.load(r.data, framework="np")) <= 0.4  # one the odd half accepts
    assert r.evaluations <= 60
