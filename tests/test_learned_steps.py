"""LearnedSteps: inside `quantized` the weights are what the file decodes to at `steps()`; the step
gradient is LSQ's (the derivative of s * round(w / s) with the rounding passed straight through); the
file saved with the learned steps decodes to the trained point."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_quantize_aware import _net  # the same tiny network as quantized_weights' tests

from nncodec.api import load_file
from nncodec.compress.training import LearnedSteps, make_pruner, quantized_state_dict
from nncodec.errors import BadArgumentError


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), s0=st.floats(1e-3, 0.5), s1=st.floats(1e-3, 0.5))
def test_inside_equals_the_decoded_state_at_the_learned_steps(seed: int, s0: float, s1: float) -> None:
    net = _net(seed)
    learned = LearnedSteps({"0.weight": s0, "2.weight": s1})
    with torch.no_grad():
        learned.log_step.add_(0.1)  # as after an optimizer step
    steps = learned.steps()
    assert math.isclose(steps["0.weight"], s0 * math.exp(0.1), rel_tol=1e-5)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    expected = quantized_state_dict(net, steps)
    with learned.quantized(net) as used:
        assert used == steps
        inside = {k: v.clone() for k, v in net.state_dict().items()}
    for k in before:
        assert torch.equal(inside[k], expected[k]), k
        assert torch.equal(net.state_dict()[k], before[k]), k


def test_step_gradient_is_lsq_and_accumulates() -> None:
    net = _net(1)
    x = torch.randn(32, 8)
    learned = LearnedSteps({"0.weight": 0.07, "2.weight": 0.05})
    w = {n: p.detach().clone() for n, p in net.named_parameters()}
    # reference: the same forward with q = s * round_ste(w / s) built by autograd
    s = torch.exp(learned.log_step.detach().clone()).requires_grad_(True)
    params = {}
    for i, name in enumerate(learned.names):
        v = w[name].clone().requires_grad_(True)
        r = (v / s[i]).round().detach() + (v / s[i] - (v / s[i]).detach())  # straight-through rounding
        params[name] = r * s[i]
    ref_net = _net(1)
    out = torch.func.functional_call(ref_net, {**dict(ref_net.named_parameters()), **params}, (x,))
    out.pow(2).mean().backward()
    expected = s.grad * s.detach()  # d/d log s
    with learned.quantized(net):
        net(x).pow(2).mean().backward()
    assert torch.allclose(learned.log_step.grad, expected, rtol=1e-4, atol=1e-7)
    with learned.quantized(net):  # a second backward without zero_grad: the step gradient adds up
        net(x).pow(2).mean().backward()
    assert torch.allclose(learned.log_step.grad, 2 * expected, rtol=1e-4, atol=1e-7)


def test_code_length_is_the_bit_proxy_and_pulls_steps_up() -> None:
    net = _net(2)
    learned = LearnedSteps({"0.weight": 0.05})
    w = net[0].weight.detach()
    bits = learned.code_length(net)
    assert torch.allclose(bits, torch.log2(1 + w.abs() / 0.05).sum(), rtol=1e-5)
    bits.backward()
    assert float(learned.log_step.grad[0]) < 0  # a larger step: fewer bits
    assert (net[0].weight.grad * w.sign() >= 0).all()  # and smaller magnitudes


def test_a_training_step_then_the_file_decodes_to_the_trained_point(tmp_path) -> None:
    net = _net(3)
    x = torch.randn(64, 8)
    pruner = make_pruner("drr", net, alpha=1e-4)
    pruner.prune(lambda: float(net(x).pow(2).mean().detach()), example_inputs=x, delta=0.5)
    learned = LearnedSteps({"0.weight": 0.02, "2.weight": 0.02, "2.bias": 0.02})
    opt = torch.optim.Adam(list(net.parameters()) + list(learned.parameters()), lr=1e-2)
    for _ in range(5):
        opt.zero_grad()
        with learned.quantized(net):
            (net(x).pow(2).mean() + 1e-3 * learned.code_length(net)).backward()
        opt.step()
        pruner.after_step()
    assert learned.steps() != {"0.weight": 0.02, "2.weight": 0.02, "2.bias": 0.02}
    with learned.quantized(net):
        trained = {k: v.clone() for k, v in net.state_dict().items()}
    pruner.save(tmp_path / "m.nnc", steps=learned.steps())
    decoded = load_file(tmp_path / "m.nnc")
    for k, v in trained.items():
        assert torch.equal(torch.as_tensor(decoded[k]), v), k
    assert (net[0].weight[~pruner.masks["0.weight"]] == 0).all()  # the frozen mask holds


def test_refuses_bad_input() -> None:
    with pytest.raises(BadArgumentError, match="at least one"):
        LearnedSteps({})
    with pytest.raises(BadArgumentError, match="positive"):
        LearnedSteps({"0.weight": -1.0})
    with pytest.raises(BadArgumentError, match="does not have"), LearnedSteps({"nope": 0.1}).quantized(_net(0)):
        pass


def test_entropy_bits_is_the_histogram_code_length_and_pulls_towards_frequent_levels() -> None:
    net = _net(4)
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([0.0] * 100 + [0.1] * 20 + [0.2] * 8).reshape(16, 8))
    learned = LearnedSteps({"0.weight": 0.1})
    bits = learned.entropy_bits(net)
    counts = torch.tensor([100.0, 20.0, 8.0])
    # levels -1..3 get a histogram slot each (the neighbours with count 0 too), add-half smoothed
    p = (counts + 0.5) / (128 + 0.5 * 5)
    assert torch.allclose(bits, -(counts * torch.log2(p)).sum(), rtol=1e-5)
    bits.backward()
    g = net[0].weight.grad.reshape(-1)
    assert (g[100:128] > 0).all()  # level 1 and 2 weights: towards the more frequent smaller levels
    assert float(learned.log_step.grad[0]) < 0  # and a larger step: the levels shrink
