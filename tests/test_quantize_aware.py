"""quantized_weights: inside the block the parameters are what the saved file decodes to; outside,
their float values come back; gradients are taken at the quantized point (straight-through)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from nncodec_cli.presets import lenet
from torch import nn

from nncodec.api import load_file
from nncodec.compress.training import make_pruner, quantized_state_dict, quantized_weights, recipes
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


def _batches(n: int = 256, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    y = (x[:, :3] * torch.tensor([1.0, -1.0, 0.5])).argmax(1)
    return [(x[i : i + 32], y[i : i + 32]) for i in range(0, n, 32)]


def test_finetune_quantized_keeps_the_mask_and_the_best_epoch_at_its_quantized_point() -> None:
    from nncodec.compress.training.quantize_aware import finetune_quantized

    net = _net(0)
    with torch.no_grad():
        net[0].weight[:, ::2] = 0.0  # pruned: half of the first layer's inputs
    steps = {"0.weight": 0.05, "2.weight": 0.05}
    start = {k: v.clone() for k, v in net.state_dict().items()}
    seen, scripted = [], iter([0.5, 1.0, 3.0, 2.0])  # before training, then after epochs 1, 2, 3

    def select(m: nn.Module) -> float:
        seen.append({k: v.clone() for k, v in m.state_dict().items()})
        return next(scripted)

    scores = finetune_quantized(net, _batches(), nn.functional.cross_entropy, steps, epochs=3, lr=1e-2, select=select,
                                targets="weights")
    assert scores == [0.5, 1.0, 3.0, 2.0]
    kept = quantized_state_dict(net, steps)
    for k in kept:  # the model is epoch 2's, and select saw it at its quantized point
        assert torch.equal(kept[k], seen[2][k]), k
    assert not torch.equal(net[0].weight, start["0.weight"])  # it trained
    assert torch.all(net[0].weight[:, ::2] == 0)  # and the pruned weights stayed zero
    with pytest.raises(BadArgumentError):
        finetune_quantized(net, _batches(), nn.functional.cross_entropy, steps, epochs=1, lr=0.0)
    # when no epoch beats the start, the start is kept
    start = {k: v.clone() for k, v in net.state_dict().items()}
    worse = iter([5.0, 1.0, 2.0])
    assert finetune_quantized(net, _batches(), nn.functional.cross_entropy, steps, epochs=2, lr=1e-2,
                              select=lambda m: next(worse), targets="weights") == [5.0, 1.0, 2.0]
    assert all(torch.equal(v, start[k]) for k, v in net.state_dict().items())


def test_compress_classifier_keeps_the_smaller_of_the_plain_and_the_quantization_aware_file(tmp_path) -> None:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(784, 10, generator=g)

    def split(n: int) -> recipes.Split:
        x = torch.randn(n, 784, generator=g)
        return recipes.Split(x, (x @ w).argmax(1))

    data = recipes.ClassifierData(split(2048), split(400), split(200))
    torch.manual_seed(0)
    dense = lenet.build("lenet300")
    out = tmp_path / "m.nnc"
    r = recipes.compress_classifier(dense, "lenet300", data, "rl1", out, epochs=2, finetune_epochs=1, progress=False,
                                    quant_tolerance=0.5, qat_epochs=2, qat_tolerance=3.0, overrides={"alpha": 1e-4})
    assert {"plain_file_bytes", "qat_file_bytes", "qat_used", "qat_tries"} <= r.keys()
    assert r["file_bytes"] == min(r["plain_file_bytes"], r["qat_file_bytes"]) == out.stat().st_size
    assert r["qat_used"]  # coarse steps + QAT win by far on this learnable problem (86 vs 32 kB)
    assert [p.name for p in tmp_path.iterdir()] == ["m.nnc"]  # the losing candidate is not left behind
    decoded = load_file(out)
    # the file holds exactly the model QAT scored at its quantized point
    assert recipes.accuracy(lenet.build("lenet300"), data.val, decoded) == pytest.approx(r["qat_tries"][-1]["val_accuracy"])
    # a validation sweep hands no test split: the same file, and no test figure at all
    plain = recipes.compress_classifier(dense, "lenet300", dataclasses.replace(data, test=None), "rl1",
                                        tmp_path / "p.nnc", epochs=2, finetune_epochs=1, progress=False,
                                        quant_tolerance=0.5, overrides={"alpha": 1e-4})
    assert "qat_used" not in plain and plain["file_bytes"] == r["plain_file_bytes"]
    assert plain["compressed_test_accuracy"] is plain["accuracy_drop"] is plain["dense_test_accuracy"] is None


def test_a_qat_rung_that_misses_is_tried_again_with_a_finer_grid(monkeypatch) -> None:
    monkeypatch.setattr(recipes, "finetune_quantized", lambda *a, **k: [])  # QAT that recovers nothing
    g = torch.Generator().manual_seed(1)
    w = torch.randn(784, 10, generator=g)
    x = torch.randn(600, 784, generator=g)
    data = recipes.ClassifierData(*(recipes.Split(x[a:b], (x[a:b] @ w).argmax(1)) for a, b in ((0, 400), (400, 600), (0, 1))))
    torch.manual_seed(0)
    model = lenet.build("lenet300")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(30):  # a model whose accuracy quantization can hurt
        opt.zero_grad()
        nn.functional.cross_entropy(model(data.train.x), data.train.y).backward()
        opt.step()
    reference = recipes.accuracy(model, data.val)
    names = [n for n, _ in model.named_parameters()]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    qmodel, steps, tries = recipes.qat_candidate(model, data, reference - 0.3, reference, 1.2, epochs=1, lr=1e-3,
                                                 names=names, targets="weights+biases", loader=None)
    assert 1 <= len(tries) <= recipes.QAT_RUNGS
    assert [t["tolerance"] for t in tries] == [1.2 / 2**i for i in range(len(tries))]
    assert all(t["val_accuracy"] < reference - 0.3 for t in tries[:-1])  # every rung before the last missed
    if qmodel is not None:
        assert tries[-1]["val_accuracy"] >= reference - 0.3 and steps
    else:
        assert len(tries) == recipes.QAT_RUNGS and tries[-1]["val_accuracy"] < reference - 0.3
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # the model itself is untouched
