"""Spike-and-slab variational pruning: the closed-form phi update against a numerical maximisation of
the ELBO, the KL against Monte Carlo, the derived mask against the survivors, and an end-to-end run
that recovers planted sparse weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nncodec
from nncodec import BadArgumentError
from nncodec.compress.spike_slab import (
    SpikeSlab,
    input_feature_pip,
    lrt_weight_moments,
    save_spike_slab,
    spike_slab,
    spike_slab_kl,
)
from nncodec.compress.training.export import quantized_state_dict

torch.set_num_threads(1)
NOISE = 0.5  # likelihood sd of the linear-Gaussian test problems


def expected_nll(ss: SpikeSlab, layer: nn.Linear, x: torch.Tensor, y: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
    """Mean over examples of E_q[-log N(y; x.w, NOISE^2)] (constants dropped), exact for a linear model:
    ((y - m)^2 + v) / (2 NOISE^2) with the weight moments of q."""
    mean_w, var_w = lrt_weight_moments(phi, layer.weight, ss.sd("weight"))
    m, v = F.linear(x, mean_w), F.linear(x * x, var_w)
    return (((y - m) ** 2 + v) / (2 * NOISE**2)).mean()


def test_closed_form_phi_update_maximises_the_elbo_in_each_phi():
    torch.manual_seed(0)
    n, p = 20, 5
    x = torch.randn(n, p, dtype=torch.float64)
    y = x @ torch.tensor([[0.3], [0.0], [-0.2], [0.05], [0.0]], dtype=torch.float64) + 0.5 * torch.randn(n, 1, dtype=torch.float64)
    layer = nn.Linear(p, 1, bias=False).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.4, 0.1, -0.3, 0.2, -0.05]]))
    ss = SpikeSlab(layer, data_size=n, prior_inclusion=0.2, prior_sd=1.0, init_phi=0.6, init_sd=0.1, ema=0.0)
    with torch.no_grad():
        ss.phi["weight"].copy_(torch.tensor([[0.6, 0.3, 0.8, 0.5, 0.1]]))
        ss.rho["weight"].copy_(torch.tensor([[-2.0, -1.0, -3.0, -2.5, -1.5]]))
    phi0 = ss.phi["weight"].detach().clone()

    def elbo(phi: torch.Tensor) -> torch.Tensor:
        """The exact ELBO for each row of `phi` (rows = candidate phi vectors)."""
        with torch.no_grad():
            mu, s = layer.weight, ss.sd("weight")
            mean_w, var_w = lrt_weight_moments(phi, mu, s)
            m, v = x @ mean_w.T, (x * x) @ var_w.T
            nll = (((y - m) ** 2 + v) / (2 * NOISE**2)).sum(0)
            return -nll - spike_slab_kl(phi, mu, s, ss.lam, ss.sigma0).sum(1)

    expected_nll(ss, layer, x, y, ss.phi["weight"]).backward()
    ss.after_step()
    closed = ss.phi["weight"].detach()[0]
    grid = torch.sigmoid(torch.linspace(-14, 14, 28001, dtype=torch.float64))
    for j in range(p):
        trial = phi0.expand(len(grid), p).clone()
        trial[:, j] = grid
        values = elbo(trial)
        best = int(values.argmax())
        assert 0 < best < len(grid) - 1, "the optimum must be interior for this check"
        assert float(grid[best - 1]) <= float(closed[j]) <= float(grid[best + 1]), (j, float(closed[j]), float(grid[best]))
        at_closed = phi0.clone()
        at_closed[0, j] = closed[j]
        assert float(elbo(at_closed)[0]) >= float(values.max()) - 1e-9  # no grid point beats it


def test_kl_matches_a_monte_carlo_estimate():
    g = torch.Generator().manual_seed(1)
    phi = torch.tensor([0.05, 0.3, 0.7, 0.97], dtype=torch.float64)
    mu = torch.tensor([0.4, -1.2, 0.1, 2.0], dtype=torch.float64)
    s = torch.tensor([0.2, 0.5, 1.5, 0.05], dtype=torch.float64)
    lam, sigma0 = 0.1, 0.8
    m = 200_000
    z = torch.rand(m, 4, generator=g, dtype=torch.float64) < phi
    w = mu + s * torch.randn(m, 4, generator=g, dtype=torch.float64)

    def log_normal(v: torch.Tensor, mean: torch.Tensor | float, sd: torch.Tensor | float) -> torch.Tensor:
        sd = torch.as_tensor(sd, dtype=torch.float64)
        return -0.5 * ((v - mean) / sd) ** 2 - torch.log(sd) - 0.5 * math.log(2 * math.pi)

    # log q - log p; the point masses at 0 cancel when z = 0
    ratio = torch.where(z, torch.log(phi) + log_normal(w, mu, s) - math.log(lam) - log_normal(w, 0.0, sigma0),
                        torch.log1p(-phi) - math.log1p(-lam))
    mc, se = ratio.mean(0), ratio.std(0) / math.sqrt(m)
    exact = spike_slab_kl(phi, mu, s, lam, sigma0)
    assert torch.all((mc - exact).abs() < 5 * se + 1e-9), (mc, exact, se)


def planted(seed: int = 0, n: int = 400, p: int = 12):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, p, generator=g)
    w = torch.zeros(1, p)
    w[0, [1, 4, 7]] = torch.tensor([1.5, -1.0, 0.8])
    y = x @ w.T + NOISE * torch.randn(n, 1, generator=g)
    return x, y, w


def gaussian_nll(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((out - y) ** 2).mean() / (2 * NOISE**2)


def test_end_to_end_recovers_planted_sparse_weights_and_stores_them():
    x, y, w = planted()
    loader = [(x[i : i + 50], y[i : i + 50]) for i in range(0, len(x), 50)]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(x.shape[1], 1))
    spike_slab(model, loader, gaussian_nll, epochs=40, lr=0.03, finetune_epochs=5, prior_inclusion=0.1, prior_sd=1.0,
               init_phi=0.5, init_sd=0.05, progress=False)
    pip = model.spike_slab_pips["0.weight"]
    assert torch.equal(pip[0] > 0.5, w[0] != 0), pip
    weight = model[0].weight.detach()
    assert torch.equal(weight[0] != 0, w[0] != 0)
    assert (weight - w).abs().max() < 0.15
    # feature PIPs of a one-output layer are the PIPs themselves
    assert torch.allclose(input_feature_pip(pip), pip[0].float(), atol=1e-6)


def test_saved_file_mask_is_derived_from_the_pips_and_decodes_like_the_plain_file(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 3))
    ss = SpikeSlab(model, data_size=100)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in ss.phi.values():
            p.copy_(torch.rand(p.shape, generator=g))
    masks = ss.freeze_mask()
    ss.release()
    model.spike_slab_pips, model.spike_slab_threshold = ss.pips(), ss.threshold
    steps = {n: 0.01 for n, _ in model.named_parameters()}
    plain = save_spike_slab(model, tmp_path / "a.nnc", steps=steps)
    with_pip = save_spike_slab(model, tmp_path / "b.nnc", steps=steps, keep_pip=True)
    assert with_pip > plain > 0
    a, b = nncodec.load_file(tmp_path / "a.nnc"), nncodec.load_file(tmp_path / "b.nnc")
    expected = quantized_state_dict(model, steps)
    for k in expected:
        assert torch.equal(a[k], expected[k]) and torch.equal(b[k], expected[k])
    with nncodec.open(tmp_path / "b.nnc") as f:
        for name, m in masks.items():
            comp = f.components(name)
            assert comp.pip is not None and np.array_equal(comp.mask, m.numpy())
            assert (f.get_pip(name) - ss.pips()[name]).abs().max() < 0.27


def test_frozen_mask_keeps_pruned_weights_at_zero_through_training():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    ss = SpikeSlab(model, data_size=64)
    x, y = torch.randn(64, 1, 8, 8), torch.randint(0, 2, (64,))
    opt = torch.optim.Adam([*model.parameters(), *ss.parameters()], lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        (F.cross_entropy(model(x), y) + ss.penalty()).backward()
        opt.step()
        ss.after_step()
    with torch.no_grad():
        ss.phi["0.weight"][0].fill_(0.01)  # prune one whole conv filter
    masks = ss.freeze_mask()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        ss.after_step()
    for n, p in ss.params.items():
        assert torch.all(p.detach()[~masks[n]] == 0)
    assert torch.all(model[0].weight.detach()[0] == 0)
    assert set(ss.variational_state()) >= {"0.weight.pip", "0.weight.slab_sd", "2.weight.pip"}


def test_bad_arguments_are_refused():
    with pytest.raises(BadArgumentError):
        SpikeSlab(nn.Linear(2, 2), data_size=10, prior_inclusion=1.5)
    with pytest.raises(BadArgumentError):
        SpikeSlab(nn.Sequential(nn.ConvTranspose2d(1, 1, 2)), data_size=10)
    with pytest.raises(BadArgumentError):
        spike_slab(nn.Linear(2, 2), [], gaussian_nll, epochs=-1)
