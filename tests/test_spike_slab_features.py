"""Input-feature PIPs for feature selection: the path definition against a hand computation and an
exhaustive enumeration of the inclusion variables, the dead-unit case that made the old definition
select noise inputs, and a short end-to-end run that finds planted features among correlated ones."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from nncodec import BadArgumentError
from nncodec.compress.spike_slab import (
    SpikeSlab,
    complementary_halves,
    input_feature_pip,
    model_feature_pip,
    path_feature_pip,
    select_features,
    selection_frequency,
    spike_slab,
    spike_slab_kl,
)

torch.set_num_threads(1)


def test_path_feature_pip_by_hand_on_a_tiny_chain():
    phi1 = torch.tensor([[0.5, 0.2, 0.0], [0.1, 0.0, 0.9]])  # 2 hidden units <- 3 inputs
    phi2 = torch.tensor([[0.8, 0.0]])  # output <- hidden 0 only
    fp = path_feature_pip([phi1, phi2])
    # input 0: 1 - (1 - 0.5*0.8)(1 - 0.1*0) = 0.4; input 1: 0.2*0.8 = 0.16; input 2 feeds the dead unit only
    assert torch.allclose(fp, torch.tensor([0.4, 0.16, 0.0]), atol=1e-7)
    assert select_features(fp) == []
    assert select_features(fp, 0.3) == [0]


def test_path_feature_pip_equals_the_exact_probability_for_one_hidden_layer():
    g = torch.Generator().manual_seed(3)
    phi1, phi2 = torch.rand(3, 2, generator=g, dtype=torch.float64), torch.rand(2, 3, generator=g, dtype=torch.float64)
    exact = torch.zeros(2, dtype=torch.float64)
    for bits in itertools.product((0, 1), repeat=phi1.numel() + phi2.numel()):
        z = torch.tensor(bits, dtype=torch.float64)
        z1, z2 = z[: phi1.numel()].reshape(3, 2), z[phi1.numel():].reshape(2, 3)
        prob = (torch.where(z1 > 0, phi1, 1 - phi1).prod() * torch.where(z2 > 0, phi2, 1 - phi2).prod())
        connected = ((z2 @ z1) > 0).any(dim=0)  # input i reaches some output through included weights
        exact += prob * connected
    assert torch.allclose(path_feature_pip([phi1, phi2]).double(), exact, atol=1e-6)


def test_weights_into_dead_units_do_not_make_a_feature():
    """The failure of the old definition: 12 of 32 hidden units switched off and the weights into them
    at their prior phi = 0.1: P(some first-layer weight of input 0 in) = 1 - 0.9^12 = 0.72, yet no
    included path leaves input 0 (its weights into the live units are out): P(input 0 used) ~ 0."""
    live, dead = slice(0, 20), slice(20, 32)
    phi1 = torch.empty(32, 2)
    phi1[live, 0], phi1[dead, 0] = 1e-4, 0.1  # input 0: noise
    phi1[live, 1], phi1[dead, 1] = 0.9, 0.1  # input 1: used
    phi2 = torch.zeros(1, 32)
    phi2[0, live] = 1.0
    assert input_feature_pip(phi1)[0] > 0.7  # the old rule selects input 0
    new = model_feature_pip({"a": phi1, "b": phi2}, ["a", "b"])
    assert new[0] < 0.01 and new[1] > 0.999
    assert select_features(new) == [1]


def test_conv_kernel_positions_are_parallel_edges_and_bad_chains_are_refused():
    phi = torch.zeros(2, 3, 2, 2)
    phi[0, 1, 0, 0] = phi[1, 1, 1, 1] = 0.5
    fp = path_feature_pip([phi])
    assert torch.allclose(fp, torch.tensor([0.0, 0.75, 0.0]))
    with pytest.raises(BadArgumentError):
        path_feature_pip([torch.rand(4, 3), torch.rand(1, 5)])
    with pytest.raises(BadArgumentError):
        path_feature_pip([])
    with pytest.raises(BadArgumentError):
        model_feature_pip({"a": torch.rand(2, 2)}, ["a", "b"])


def test_complementary_halves_split_every_pair_and_cover_each_example_once_per_pair():
    subsets = complementary_halves(11, 3, seed=5)
    assert len(subsets) == 6
    for a, b in zip(subsets[::2], subsets[1::2], strict=True):
        assert len(a) == 5 and len(b) == 6 and set(a.tolist()).isdisjoint(b.tolist())
        assert sorted(a.tolist() + b.tolist()) == list(range(11))
    assert all(torch.equal(u, v) for u, v in zip(subsets, complementary_halves(11, 3, seed=5), strict=True))
    assert not torch.equal(subsets[0], subsets[2])  # the pairs are different splits
    with pytest.raises(BadArgumentError):
        complementary_halves(1, 1)


def test_selection_frequency_is_the_mean_and_the_rule_is_a_strict_majority():
    fits = [torch.tensor([1.0, 1.0, 0.0]), torch.tensor([1.0, 0.0, 0.0]), torch.tensor([1.0, 1.0, 1.0]),
            torch.tensor([0.9, 0.0, 0.0])]
    freq = selection_frequency(fits)
    assert torch.allclose(freq, torch.tensor([0.975, 0.5, 0.25]))
    assert select_features(freq) == [0]  # 2 of 4 is not a majority
    with pytest.raises(BadArgumentError):
        selection_frequency([])


def test_per_tensor_prior_inclusion_enters_the_kl_and_the_phi_update():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 1))
    ss = SpikeSlab(model, data_size=10, prior_inclusion={"0.weight": 1e-3, "*": 0.3}, prior_sd=1.0, init_phi=0.5, ema=0.0)
    assert ss.lams == {"0.weight": 1e-3, "2.weight": 0.3}
    with torch.no_grad():
        want = sum(float(spike_slab_kl(ss.phi[n], p, ss.sd(n), ss.lams[n], 1.0).sum()) for n, p in ss.params.items())
    assert abs(ss.kl() - want) < 1e-4
    model(torch.randn(10, 4)).pow(2).mean().mul(0).backward()  # zero likelihood slope: phi = the prior's update
    ss.after_step()
    for n, lam in ss.lams.items():
        with torch.no_grad():
            kl = float(spike_slab_kl(torch.ones(()), ss.params[n][0, 0], ss.sd(n)[0, 0], lam, 1.0)) - math.log(1 / lam)
        assert abs(float(ss.phi[n][0, 0].detach()) - 1 / (1 + (1 - lam) / lam * math.exp(kl))) < 1e-5
    with pytest.raises(BadArgumentError):
        SpikeSlab(nn.Linear(2, 1), data_size=4, prior_inclusion={"nope.weight": 0.1})
    with pytest.raises(BadArgumentError):
        SpikeSlab(nn.Linear(2, 1), data_size=4, prior_inclusion={"weight": 1.5})


class _Regressor(nn.Module):
    """A one-hidden-layer MLP with a learned Gaussian noise scale (a fixed, too small scale would make
    the likelihood overconfident and every slope Delta too large)."""

    def __init__(self, p: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(p, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.log_sigma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def nll(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (0.5 * ((out - y) / self.log_sigma.exp()) ** 2 + self.log_sigma).mean()


def test_end_to_end_finds_planted_features_among_correlated_noise_inputs():
    """y depends on inputs 0 and 1 of 10; each other input is correlated 0.5 with one of them. A small
    spike-and-slab MLP (both layers, cosine step decay) selects exactly {0, 1} by the path PIP."""
    g = torch.Generator().manual_seed(0)
    n, p = 600, 10
    z = torch.randn(n, p, generator=g)
    x = z.clone()
    for j in range(2, p):
        x[:, j] = 0.5 * z[:, j % 2] + 0.75**0.5 * z[:, j]
    y = (2 * x[:, 0] - 1.5 * torch.tanh(2 * x[:, 1]) + 0.3 * torch.randn(n, generator=g)).unsqueeze(1)
    loader = [(x[i : i + 100], y[i : i + 100]) for i in range(0, n, 100)]
    torch.manual_seed(0)
    model = _Regressor(p, 8)
    spike_slab(model, loader, model.nll, epochs=150, lr=1e-2, finetune_epochs=0, prior_inclusion=0.1, prior_sd=1.0,
               init_phi=0.5, init_sd=0.01, cosine=True, progress=False, targets=["net.0.weight", "net.2.weight"])
    fp = model_feature_pip(model.spike_slab_pips, ["net.0.weight", "net.2.weight"])
    assert select_features(fp) == [0, 1], fp
    assert fp[2:].max() < 0.2
