"""The accuracy budget decides each model's latent step (issue 11 item 3): coarser latents when the
evaluator tolerates them (a smaller file), the reconstruction rule's step when it does not, the file
decoding to what the evaluator scored, and unchanged bytes without an evaluator."""

from __future__ import annotations

import numpy as np
import pytest

import nncodec
from nncodec.compress.vae import VaeOptions, vae_compress
from nncodec.errors import BadArgumentError

TINY = dict(latent=4, chunk=64, hidden=8, epochs=15, patience=5, val_copies=2, max_seconds=20.0)
SAMPLES = 40


def models(n: int = 2) -> dict:
    rng = np.random.default_rng(1)
    base = {"fc.weight": rng.normal(0, 0.1, (12, 10)), "fc.bias": rng.normal(0, 0.1, 12)}
    return {f"m{i}": {k: (v + rng.normal(0, 0.01, v.shape)).astype(np.float32) for k, v in base.items()}
            | {"step": np.array([i], dtype=np.int64)} for i in range(n)}


def error(state: dict, original: dict) -> float:
    return float(np.mean([np.mean((state[k].astype(np.float64) - original[k]) ** 2) for k in ("fc.weight", "fc.bias")]))


def evaluator(ms: dict, limit: dict[str, np.ndarray], seen: dict[str, list]):
    """Per-sample 0/100: sample i is right while the weights' mean square error is within limit[model][i]."""
    def score(name: str, state: dict) -> np.ndarray:
        seen.setdefault(name, []).append({k: np.array(v) for k, v in state.items()})
        return 100.0 * (error(state, ms[name]) <= limit[name]).astype(np.float64)
    return score


def test_tolerant_evaluator_gets_coarser_latents_and_a_smaller_file():
    ms = models()
    power = float(np.mean([np.mean(v["fc.weight"].astype(np.float64) ** 2) for v in ms.values()]))
    limit = {n: np.linspace(0.3, 1.0, SAMPLES) * power for n in ms}  # errors up to 30 % of the weights' power pass
    seen: dict[str, list] = {}
    r = vae_compress(ms, evaluator(ms, limit, seen), VaeOptions(**TINY, max_drop=1.0))
    old = vae_compress(ms, evaluator(ms, limit, {}), VaeOptions(**TINY, max_drop=1.0, latent_factors=(1,)))
    assert r.latent_step == old.latent_step and set(old.latent_steps.values()) == {old.latent_step}
    assert all(s > r.latent_step for s in r.latent_steps.values()), (r.latent_steps, r.latent_step)
    assert len(r.data) < len(old.data)
    for name in ms:  # the file decodes to a state the evaluator scored, and it passes
        decoded = nncodec.load_model(r.data, name, framework="np")
        assert any(all(np.array_equal(decoded[k], s[k]) for k in decoded) for s in seen[name])
        assert r.scores[name][1] == pytest.approx(float(evaluator(ms, limit, {})(name, decoded).mean()))
        assert r.scores[name][1] >= 100.0 - 1.0
    latent_bytes = []
    for data in (r.data, old.data):
        with nncodec.open(data) as f:
            latent_bytes.append(f.info()["vae"]["latent_bytes"])
    assert latent_bytes[0] < latent_bytes[1]


def test_strict_evaluator_keeps_the_reconstruction_rules_step():
    ms = models()
    plain = vae_compress(ms, options=VaeOptions(**TINY))  # the same VAE, latents at the reconstruction rule's step
    limit = {n: np.full(SAMPLES, error(nncodec.load_model(plain.data, n, framework="np"), ms[n]) * 1.001) for n in ms}
    seen: dict[str, list] = {}
    r = vae_compress(ms, evaluator(ms, limit, seen), VaeOptions(**TINY, max_drop=1.0))
    assert r.latent_steps == {n: plain.latent_step for n in ms}
    assert r.residual_steps == {n: None for n in ms}
    for name in ms:
        decoded = nncodec.load_model(r.data, name, framework="np")
        assert error(decoded, ms[name]) <= limit[name][0]
        assert len(seen[name]) > 2  # coarser candidates were tried (and refused or larger)
    assert r.data == plain.data  # same latents, no residual: the file of the reconstruction rule


@pytest.mark.parametrize("residual_step", [None, 0.5])
def test_without_evaluator_the_reconstruction_rule_alone_decides(residual_step):
    """No evaluator, no budget: the latent-step candidates play no part, every model gets the reconstruction
    rule's step, and the file is the same whatever factors are offered."""
    ms = models()
    a = vae_compress(ms, options=VaeOptions(**TINY, residual_step=residual_step), keep_bare=True)
    b = vae_compress(ms, options=VaeOptions(**TINY, residual_step=residual_step, latent_factors=(1,)), keep_bare=True)
    assert a.data == b.data and a.bare == b.bare
    assert a.latent_steps == {n: a.latent_step for n in ms}
    assert a.residual_steps == {n: residual_step for n in ms}


def test_latent_factors_are_checked():
    for bad in ((), (0,), (1.5,), [1, 2], (True,)):
        with pytest.raises(BadArgumentError):
            VaeOptions(latent_factors=bad)
