"""SpikeSlab as a training piece (training/pieces.py): the one-call `spike_slab` is a thin loop over
it, a hand-written loop over the same piece gives the same model, and `save` writes through the codec
layer what `to_state_dict` says the file decodes to, with or without PIPs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from piece_loop import train_with_penalty
from torch import nn

import nncodec
from nncodec import BadArgumentError
from nncodec.compress.spike_slab import SpikeSlab, lrt_weight_moments, spike_slab
from nncodec.compress.training import CompressionPiece, Pruner, make_pruner

torch.set_num_threads(1)


def data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(240, 1, 6, 6, generator=g)
    y = torch.randint(0, 3, (240,), generator=g)
    return [(x[i:i + 40], y[i:i + 40]) for i in range(0, 240, 40)]


def cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(48, 8), nn.ReLU(), nn.Linear(8, 3))


OPTS = {"prior_inclusion": 0.2, "prior_sd": 1.0, "init_phi": 0.7, "init_sd": 0.05}


@pytest.mark.parametrize("anneal_epochs", [0.0, 2.0])
def test_one_call_equals_an_own_loop_over_the_piece(anneal_epochs):
    loader = data()
    a = spike_slab(cnn(), loader, F.cross_entropy, epochs=4, finetune_epochs=2, lr=0.01, kl_weight=0.5,
                   anneal_epochs=anneal_epochs, progress=False, seed=3, **OPTS)
    torch.manual_seed(3)
    model = cnn()
    torch.manual_seed(3)  # spike_slab seeds after the model exists: same order here
    ss = SpikeSlab(model, data_size=240, kl_weight=0.5, anneal_steps=round(anneal_epochs * len(loader)), **OPTS)
    assert isinstance(ss, Pruner) and isinstance(ss, CompressionPiece)
    opt = torch.optim.Adam([{"params": list(model.parameters())}, {"params": ss.parameters()}], lr=0.01)
    model.train()
    train_with_penalty(model, ss, opt, loader, 4, F.cross_entropy)
    masks = ss.prune()
    train_with_penalty(model, ss, torch.optim.Adam(model.parameters(), lr=0.01), loader, 2, F.cross_entropy)  # penalty 0
    ss.release()
    for n, m in masks.items():
        assert torch.equal(a.spike_slab_pips[n] > 0.5, m)
        assert torch.allclose(a.spike_slab_pips[n], ss.pips()[n], atol=1e-6)
    for p, q in zip(a.parameters(), model.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-5)


def test_kl_weight_tempers_the_phi_update_and_anneals():
    layer = nn.Linear(4, 2)
    ss = SpikeSlab(layer, data_size=10, kl_weight=0.25, anneal_steps=4)
    assert ss.kl_weight == pytest.approx(0.0625)
    for _ in range(6):
        layer(torch.randn(3, 4)).sum().backward()
        ss.after_step()
    assert ss.kl_weight == pytest.approx(0.25)
    with pytest.raises(BadArgumentError):
        SpikeSlab(nn.Linear(2, 2), data_size=10, kl_weight=0.0)


def test_save_writes_what_to_state_dict_says_with_and_without_pips(tmp_path):
    loader = data()
    model = cnn()
    ss = SpikeSlab(model, data_size=240, **OPTS)
    opt = torch.optim.Adam([*model.parameters(), *ss.parameters()], lr=0.01)
    for x, y in loader:
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        ss.add_gradients()  # the adapters' route: the penalty's gradient after backward
        opt.step()
        ss.after_step()
    with pytest.raises(BadArgumentError):
        ss.save(tmp_path / "early.nnc")
    with torch.no_grad():
        ss.phi["3.weight"][:4].fill_(0.01)  # a few certainly pruned rows
    masks = ss.prune(lambda: 0.0, example_inputs=loader[0][0])  # Pruner's call shape is accepted
    assert not torch.any(masks["3.weight"][:4])
    plain = ss.save(tmp_path / "a.nnc", levels=15)
    pipped = ss.save(tmp_path / "b.nnc", levels=15, keep_pip=True)
    assert pipped > plain > 0
    expected = ss.to_state_dict(levels=15)
    for path in ("a.nnc", "b.nnc"):
        decoded = nncodec.load_file(tmp_path / path)
        assert set(decoded) == set(expected)
        for k in expected:
            assert torch.equal(decoded[k], expected[k]), k
    with nncodec.open(tmp_path / "b.nnc") as f:
        for name, m in masks.items():
            assert np.array_equal(f.components(name).mask, m.numpy())
            assert (f.get_pip(name) - ss.pips()[name]).abs().max() < 0.27


def test_make_pruner_builds_the_piece_by_name():
    model = cnn()
    ss = make_pruner("spike-slab", model, data_size=240, kl_weight=0.5, **OPTS)
    assert type(ss) is SpikeSlab and ss.target_kl_weight == 0.5 and set(ss.phi) == {"0.weight", "3.weight", "5.weight"}
    with pytest.raises(BadArgumentError, match="data_size"):
        make_pruner("spike-slab", cnn())
    with pytest.raises(BadArgumentError, match="spike-slab"):  # the error names every method
        make_pruner("spike-and-slab", cnn(), data_size=240)


def test_elbo_matches_its_closed_form_on_a_linear_model():
    torch.manual_seed(0)
    layer = nn.Linear(5, 1, bias=False)
    ss = SpikeSlab(layer, data_size=60, prior_inclusion=0.2, prior_sd=1.0, init_sd=0.3)
    with torch.no_grad():
        ss.phi["weight"].copy_(torch.tensor([[0.9, 0.1, 0.5, 0.7, 0.3]]))
    x, y = torch.randn(60, 5), torch.randn(60, 1)
    batches = [(x[:30], y[:30]), (x[30:], y[30:])]
    mean, var = lrt_weight_moments(ss.phi["weight"], layer.weight, ss.sd("weight"))
    with torch.no_grad():  # E_q[(y - f)^2] = (y - x.mean)^2 + x^2.var: the squared error's expectation is exact
        expected = -float((((y - x @ mean.T) ** 2) + (x * x) @ var.T).sum())
    e = ss.elbo(batches, F.mse_loss, samples=400)
    assert e["examples"] == 60 and e["kl"] == pytest.approx(ss.kl())
    assert e["expected_log_likelihood"] == pytest.approx(expected, rel=0.03)
    assert e["elbo"] == pytest.approx(e["expected_log_likelihood"] - e["kl"])
    ss.prune()
    with pytest.raises(BadArgumentError):
        ss.elbo(batches, F.mse_loss)
