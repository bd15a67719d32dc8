"""quantized_weights: inside the block the parameters are what the saved file decodes to; outside,
their float values come back; gradients are taken at the quantized point (straight-through)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from nncodec.api import load_file
from nncodec.compress.training import make_pruner, quantized_state_dict, quantized_weights
from nncodec.errors import BadArgumentError


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), s0=st.floats(1e-3, 0.5), s1=st.floats(1e-3, 0.5))
def test_inside_equals_the_decoded_state_and_outside_the_float_values(seed: int, s0: float, s1: float) -> None:
    net = _net(seed)
    steps = {"0.weight": s0, "2.weight": s1, "2.bias": s1}
    before = {k: v.clone() for k, v in net.state_dict().items()}
    expected = quantized_state_dict(net, steps)
    with quantized_weights(net, steps):
        inside = {k: v.clone() for k, v in net.state_dict().items()}
    for k in before:
        assert torch.equal(inside[k], expected[k]), k
        assert torch.equal(net.state_dict()[k], before[k]), k


def test_gradients_at_the_quantized_point_and_the_file_matches(tmp_path) -> None:
    net = _net(0)
    pruner = make_pruner("drr", net, alpha=1e-4)
    x = torch.randn(32, 8)
    pruner.prune(lambda: float(net(x).pow(2).mean().detach()), example_inputs=x, delta=0.5)
    steps = {"0.weight": 0.05, "2.weight": 0.05}
    with quantized_weights(net, steps):
        net(x).pow(2).mean().backward()
        ref = _net(0)
        ref.load_state_dict({k: v.detach().clone() for k, v in net.state_dict().items()})
    ref(x).pow(2).mean().backward()
    for (name, p), q in zip(net.named_parameters(), ref.parameters(), strict=True):
        keep = pruner.masks.get(name, torch.ones_like(p, dtype=torch.bool))  # the frozen mask's hooks zero the rest
        assert torch.allclose(p.grad, q.grad * keep), name
    assert (net[0].weight.grad[~pruner.masks["0.weight"]] == 0).all()  # the frozen mask holds inside too
    pruner.save(tmp_path / "m.nnc", steps=steps)
    decoded = load_file(tmp_path / "m.nnc")
    for k, v in pruner.to_state_dict(steps=steps).items():
        assert torch.equal(torch.as_tensor(decoded[k]), v), k


def test_refuses_unknown_names_and_bad_steps() -> None:
    net = _net(0)
    with pytest.raises(BadArgumentError, match="does not have"), quantized_weights(net, {"nope": 0.1}):
        pass
    with pytest.raises(BadArgumentError, match="positive"), quantized_weights(net, {"0.weight": 0.0}):
        pass
    with quantized_weights(net, None):
        pass
