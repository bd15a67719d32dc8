"""vae_compress end to end on tiny synthetic models: budgets met on the decoded file, both ratios
honest, deterministic output, and the CLI (encode --method vae, decode --model, info)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from nncodec_cli.main import main

import nncodec
from nncodec.compress.vae import VaeOptions, from_chunks, to_chunks, vae_compress
from nncodec.errors import BadArgumentError

TINY = dict(latent=4, chunk=64, hidden=8, epochs=15, patience=5, val_copies=2, max_seconds=20.0)


def models(n: int = 3) -> dict:
    rng = np.random.default_rng(0)
    base = {"fc.weight": rng.normal(0, 0.1, (12, 10)), "fc.bias": rng.normal(0, 0.1, 12)}
    return {f"m{i}": {k: (v + rng.normal(0, 0.01, v.shape)).astype(np.float32) for k, v in base.items()}
            | {"step": np.array([i], dtype=np.int64)} for i in range(n)}


def test_chunks_round_trip():
    arrays = [np.arange(6, dtype=np.float32).reshape(2, 3), np.array([7.0], np.float32), np.zeros((0, 4), np.float32)]
    c = to_chunks(arrays, 4)
    assert c.shape == (2, 4) and list(c[1]) == [4, 5, 7, 0]  # last chunk zero-padded
    back = from_chunks(c, [a.shape for a in arrays])
    assert all(np.array_equal(a, b) for a, b in zip(arrays, back, strict=True))


def test_budget_is_met_on_the_decoded_file_and_ratios_count_every_byte():
    ms = models()

    def score(name: str, state: dict) -> float:  # higher is better; a stand-in for accuracy
        return -1000 * float(np.mean((state["fc.weight"] - ms[name]["fc.weight"]) ** 2))

    r = vae_compress(ms, score, VaeOptions(**TINY, max_drop=0.01))
    for name in ms:
        decoded = nncodec.load_model(r.data, name, framework="np")
        assert score(name, decoded) >= score(name, ms[name]) - 0.01
        assert decoded["step"].tolist() == ms[name]["step"].tolist()  # non-float tensors are lossless
        assert r.scores[name][1] == pytest.approx(score(name, decoded), abs=1e-9)  # the search saw what a reader decodes
    raw = sum(v.nbytes for m in ms.values() for v in m.values())
    assert r.raw_bytes == raw and r.real_ratio == raw / len(r.data)
    assert r.parameters == 3 * (120 + 12) and r.latent_numbers == 3 * 3 * 4  # 132 values -> 3 chunks of 64
    assert r.paper_ratio == r.parameters / r.latent_numbers
    with nncodec.open(r.data) as f:
        v = f.info()["vae"]
    assert v["decoder_bytes"] + v["latent_bytes"] < len(r.data)


def test_same_input_gives_identical_bytes():
    opt = VaeOptions(**TINY, residual_step=0.5)
    assert vae_compress(models(2), options=opt).data == vae_compress(models(2), options=opt).data


def test_single_state_dict_keeps_plain_names():
    r = vae_compress(models(1)["m0"], options=VaeOptions(**TINY), keep_bare=True)
    with nncodec.open(r.data) as f:
        assert f.keys() == ["fc.weight", "fc.bias", "step"]
    assert len(r.bare) < len(r.data) or r.residual_steps[""] is None


def test_bad_arguments():
    with pytest.raises(BadArgumentError):
        VaeOptions(latent=0)
    with pytest.raises(BadArgumentError):
        vae_compress({})
    with pytest.raises(BadArgumentError):
        vae_compress({"a/b": models(1)["m0"]})


def test_cli_collection(tmp_path):
    for name, state in models(2).items():
        torch.save({k: torch.from_numpy(v) for k, v in state.items()}, tmp_path / f"{name}.pt")
    out = tmp_path / "set.nnc"
    run = CliRunner().invoke
    r = run(main, ["encode", "--method", "vae", str(tmp_path / "m0.pt"), str(tmp_path / "m1.pt"), "-o", str(out),
                   "--latent", "4", "--chunk", "64", "--hidden", "8", "--vae-epochs", "5"])
    assert r.exit_code == 0, r.output
    assert "paper's ratio" in r.output and "real ratio" in r.output
    info = run(main, ["info", str(out)])
    assert info.exit_code == 0
    for line in ("vae decoder bytes:", "vae latent bytes:", "vae residual bytes:", "other bytes:"):
        assert line in info.output
    parts = [int(x.split(":")[1].split("(")[0].replace(",", "")) for x in info.output.splitlines()
             if x.startswith(("vae decoder bytes", "vae latent bytes", "vae residual bytes", "other bytes"))]
    assert sum(parts) == out.stat().st_size
    dec = run(main, ["decode", str(out), "--model", "m1", "-o", str(tmp_path / "m1.safetensors")])
    assert dec.exit_code == 0, dec.output
    from safetensors.numpy import load_file
    assert set(load_file(tmp_path / "m1.safetensors")) == {"fc.weight", "fc.bias", "step"}
    bad = run(main, ["decode", str(out), "--model", "zz", "-o", str(tmp_path / "z.safetensors")])
    assert bad.exit_code == 1 and "no model named 'zz'" in bad.output
    two = run(main, ["encode", str(tmp_path / "m0.pt"), str(tmp_path / "m1.pt"), "-o", str(tmp_path / "x.nnc")])
    assert two.exit_code == 2


def test_per_sample_evaluator_gets_the_protocols_confirmed_bound():
    """A per-sample evaluate (e.g. 0/100 correctness per validation sample) makes the residual choice
    apply the protocol's rule: the paired drop's upper bound within max_drop on the even AND the odd
    samples, checked here on the file as a reader decodes it."""
    from nncodec.confidence import passes_confirmed

    ms = models(2)
    thresholds = np.linspace(0.0, 2e-4, 400)  # sample i is "correct" while the weight error is below t_i

    def score(name: str, state: dict) -> np.ndarray:
        err = float(np.mean((state["fc.weight"] - ms[name]["fc.weight"]) ** 2))
        return 100.0 * (err <= thresholds[::-1]).astype(np.float64)

    opt = VaeOptions(**TINY, max_drop=5.0)
    r = vae_compress(ms, score, opt)
    for name in ms:
        decoded = nncodec.load_model(r.data, name, framework="np")
        assert passes_confirmed(score(name, ms[name]), score(name, decoded), 5.0)
        assert r.scores[name] == (100.0, pytest.approx(float(score(name, decoded).mean()), abs=1e-9))
    assert any(s is not None for s in r.residual_steps.values())  # the bare VAE would not have passed
    with pytest.raises(BadArgumentError):  # a per-sample evaluator must keep its length
        vae_compress(ms, lambda n, s: score(n, s)[: 400 if np.array_equal(s["fc.weight"], ms[n]["fc.weight"]) else 200], opt)
    with pytest.raises(BadArgumentError):
        VaeOptions(confidence=1.0)
