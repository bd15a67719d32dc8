"""bench_own_loop.py / lm_curve_continue.py: the learning-rate schedule, the convergence verdict and the
fairness bound of an annealed dense model's peer (no text, no training)."""

from __future__ import annotations

import argparse
import json
import math

import pytest
from script_modules import load_script

B = load_script("benchmarks/bench_own_loop.py")
C = load_script("benchmarks/lm_curve_continue.py")

CONFIG = {"width": 64, "layers": 2, "heads": 4, "ff": 256, "ctx": 64, "batch": 16, "lr": 0.002, "seed": 0,
          "dense_steps": "auto", "max_dense_steps": 10000, "curve_every": 300, "flat": 0.005, "eval_windows": 512,
          "reg_steps": 400, "ft_steps": 200, "text": "/usr/share/games/fortunes"}


def test_cosine_decays_from_lr_towards_zero_and_constant_stays() -> None:
    lrs = [B.lr_at(i, 100, 2e-3, "cosine") for i in range(100)]
    assert lrs[0] == 2e-3 and math.isclose(lrs[50], 1e-3)
    assert all(a > b > 0 for a, b in zip(lrs, lrs[1:], strict=False))
    assert {B.lr_at(i, 100, 2e-3, "constant") for i in range(100)} == {2e-3}
    with pytest.raises(ValueError):
        B.lr_at(0, 100, 2e-3, "linear")


def test_converged_only_when_the_longer_run_is_not_better_beyond_the_tolerance() -> None:
    assert C.verdict(1.70, 1.70 * (1 - 0.004), 0.005)
    assert C.verdict(1.70, 1.71, 0.005)
    assert not C.verdict(1.70, 1.70 * (1 - 0.006), 0.005)


def _bench(tmp_path, reg: int, ft: int, schedule: str = "constant9900+cosine1000"):
    args = argparse.Namespace(**{**CONFIG, "reg_steps": reg, "ft_steps": ft, "dense_schedule": schedule})
    return argparse.Namespace(args=args, world=1)


def test_an_annealed_dense_model_is_reused_and_its_peer_bounds_the_pipeline(tmp_path) -> None:
    info = {"dense_steps": 10900, "peer_steps": 11500, "peer_extra_steps": 600, "converged": True,
            "config": {**CONFIG, "dense_schedule": "constant9900+cosine1000"}}
    (tmp_path / "dense.json").write_text(json.dumps(info))
    assert B.dense_phase(_bench(tmp_path, 300, 300), tmp_path)["dense_steps"] == 10900  # other lengths, same total
    with pytest.raises(SystemExit, match="peer would be unfair"):
        B.dense_phase(_bench(tmp_path, 500, 200), tmp_path)
    with pytest.raises(SystemExit, match="another configuration"):
        B.dense_phase(_bench(tmp_path, 400, 200, "constant"), tmp_path)


def test_quantization_aware_steps_count_against_the_peer(tmp_path) -> None:
    info = {"dense_steps": 12300, "peer_steps": 13500, "peer_extra_steps": 1200, "converged": True,
            "config": {**CONFIG, "dense_schedule": "constant9900+cosine1000"}}
    (tmp_path / "dense.json").write_text(json.dumps(info))
    bench = _bench(tmp_path, 400, 400)
    bench.args.qat_steps = 400
    assert B.dense_phase(bench, tmp_path)["peer_extra_steps"] == 1200
    bench.args.qat_steps = 401
    with pytest.raises(SystemExit, match="peer would be unfair"):
        B.dense_phase(bench, tmp_path)


def test_distillation_mix_is_cross_entropy_without_a_teacher_and_zero_kl_against_itself() -> None:
    import torch

    L = load_script("benchmarks/lm_levers.py")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Embedding(5, 5))
    x = torch.randint(0, 5, (2, 3))
    logits = net(x)
    ce = torch.tensor(1.25)
    assert L.kd_mix(ce, logits, None, x, 0.5) is ce and L.kd_mix(ce, logits, net, x, 0.0) is ce
    assert torch.isclose(L.kd_mix(ce, logits, net, x, 0.5), torch.tensor(0.625), atol=1e-6)  # KL(p || p) = 0
    a = argparse.Namespace(kd=0.5, quant_small=True, qat_steps=400, qat_budget=0.08, qat_lr=None)
    assert L.tag(a) == "-kd0.5-small-qat400b0.08"


def test_pruning_the_embeddings_is_an_option_that_a_rerun_of_the_result_repeats() -> None:
    L = load_script("benchmarks/lm_levers.py")
    R = load_script("benchmarks/report_own_loop.py")
    from nncodec.compress.training.targets import select_parameters

    model = B.TinyLM(20, 8, d=8, layers=1, heads=2, ff=16)
    plain = argparse.Namespace(prune_emb=False, qat_shrink=False)
    emb = argparse.Namespace(prune_emb=True, qat_shrink=True)
    assert "tok.weight" not in select_parameters(model, L.targets(plain))
    chosen = select_parameters(model, L.targets(emb))
    assert {"tok.weight", "pos", "head.weight", "blocks.0.fc.weight"} <= set(chosen)
    assert all(p.dim() >= 2 for p in chosen.values())  # no bias or LayerNorm vector
    result = {"method": "drr", "alpha": 2e-5, "beta": 20.0, "kd": 0.5, "quant_small": True, "qat_steps": 600,
              "qat_budget": 0.05, "qat_relative": True, "prune_emb": True, "qat_shrink_enabled": True}
    args = R.pipeline_args(result)
    assert "--prune-emb" in args and "--qat-shrink" in args
    assert "embeddings pruned" in R.hp(result) and "finer steps if over" in R.hp(result)
    assert "--prune-emb" not in R.pipeline_args({**result, "prune_emb": False})


def test_learned_steps_are_an_option_that_a_rerun_of_the_result_repeats() -> None:
    L = load_script("benchmarks/lm_levers.py")
    R = load_script("benchmarks/report_own_loop.py")
    a = argparse.Namespace(kd=0.5, quant_small=True, qat_steps=600, qat_budget=0.04, qat_relative=True, qat_lr=None,
                           lsq=True, step_lr=3e-3, qat_rate=0.01)
    assert L.tag(a) == "-kd0.5-small-qat600r0.04-lsq0.003rate0.01"
    assert L.tag(argparse.Namespace(**{**vars(a), "qat_rate": 0.0})).endswith("-lsq0.003")
    result = {"method": "drr", "alpha": 2e-5, "beta": 20.0, "kd": 0.5, "quant_small": True, "qat_steps": 600,
              "qat_budget": 0.04, "qat_relative": True, "lsq": True, "step_lr": 3e-3, "qat_rate": 0.01}
    args = R.pipeline_args(result)
    assert args[args.index("--step-lr") + 1] == "0.003" and args[args.index("--qat-rate") + 1] == "0.01"
    assert "--lsq" in args and "learned steps (LSQ" in R.hp(result) and "rate 0.01 nats/kB" in R.hp(result)
    plain = R.pipeline_args({**result, "lsq": False})
    assert "--lsq" not in plain and "--qat-rate" not in plain
    assert "--rate-kind" not in args  # results of before the option: the log proxy
    assert "steps fixed" in R.hp({**result, "step_lr": 0.0}) and "learned steps" not in R.hp({**result, "step_lr": 0.0})
    entropy = {**result, "rate_kind": "entropy"}
    assert R.pipeline_args(entropy)[-2:] == ["--rate-kind", "entropy"] and "of level entropy" in R.hp(entropy)
    assert L.tag(argparse.Namespace(**vars(a), rate_kind="entropy")).endswith("-lsq0.003rate0.01H")
    fixed = argparse.Namespace(**{**vars(a), "lsq": False}, qat_scale=0.985)  # the control: a finer fixed grid
    assert L.tag(fixed) == "-kd0.5-small-qat600r0.04-scale0.985"
    scaled = {**result, "lsq": False, "qat_scale": 0.985}
    args = R.pipeline_args(scaled)
    assert args[args.index("--qat-scale") + 1] == "0.985" and "--qat-scale" not in R.pipeline_args(result)
    assert "+4 % over the pre-QAT model x0.985" in R.hp(scaled)


def test_the_seed_summary_leaves_out_seeds_not_yet_scored_and_says_so() -> None:
    R = load_script("benchmarks/report_own_loop.py")
    nan = float("nan")
    assert R.ms([1.0, 2.0, 3.0], ".2f") == "2.00 ± 1.00"
    assert R.ms([1.0, nan, 3.0], ".2f") == "2.00 ± 1.41 (1 not scored)"
    assert R.ms([nan, nan], ".2f") == "— (2 not scored)"
