"""Training-aware pruning: each method does what it claims, on tiny models and synthetic data."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import nncodec
from nncodec.compress.training import (
    PMMP,
    drr,
    drr_gradient,
    drr_penalty,
    expected_squared_error,
    layerwise,
    layerwise_objective,
    pmmp,
    pmmp_gradients,
    pmmp_penalty,
    quantized_state_dict,
    random_gradient_pruning,
    rl1,
    save_pruned,
    search_steps,
    select_parameters,
    tamade_prune,
    tamade_threshold,
)
from nncodec.compress.training.layerwise import layer_forward
from nncodec.compress.training.loop import Runtime, run_epochs
from nncodec.compress.training.targets import masks_from_weights


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: thread start-up costs more than the work, and other processes share the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def sparse_regression(n: int = 512, d: int = 12, support=(0, 3, 7), seed: int = 0):
    """y = x @ w_true with only `support` non-zero: the right answer is known."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    w = torch.zeros(d)
    w[list(support)] = torch.tensor([1.5, -2.0, 1.0])[: len(support)]
    return x, (x @ w).unsqueeze(1), w


def loader_of(x, y, batch_size=64, seed=0):
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------ PMMP


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 6), st.integers(0, 2**31 - 1), st.floats(0.0, 1.0), st.floats(0.1, 3.0))
def test_pmmp_gradients_match_autograd_of_closed_form(n, seed, alpha, u_scale):
    g = torch.Generator().manual_seed(seed)
    theta, w = torch.randn(n, 3, generator=g, dtype=torch.float64), torch.randn(n, 3, generator=g, dtype=torch.float64)
    gamma, u = torch.rand(n, 3, generator=g, dtype=torch.float64), 3 * torch.rand(n, 3, generator=g, dtype=torch.float64)
    leaves = [t.clone().requires_grad_() for t in (theta, w, gamma, u)]
    pmmp_penalty(*leaves, alpha, u_scale).backward()
    got = pmmp_gradients(theta, w, gamma, u, alpha, u_scale)
    for i in range(3):
        torch.testing.assert_close(got[i], leaves[i].grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got[3], -leaves[3].grad, rtol=1e-12, atol=1e-12)  # u ascends


def test_pmmp_bracket_is_the_expectation_over_bernoulli():
    theta, w, gamma = torch.tensor([0.7]), torch.tensor([1.3]), torch.tensor([0.25])
    exact = gamma * (theta - w) ** 2 + (1 - gamma) * theta**2  # z = 1 with prob gamma, else 0
    u = torch.ones(1)
    torch.testing.assert_close(pmmp_penalty(theta, w, gamma, u, 0.0), exact.sum())


def test_pmmp_drives_gamma_to_zero_or_one_and_finds_the_support():
    torch.manual_seed(0)
    x, y, w_true = sparse_regression()
    model = nn.Linear(12, 1, bias=False)
    params = select_parameters(model)
    reg = PMMP(params, alpha=1e-2)
    opt = torch.optim.Adam([*model.parameters(), *reg.extra_parameters()], lr=2e-2)
    run_epochs(model, loader_of(x, y), F.mse_loss, opt, 60, Runtime(progress=False), phase="pmmp", params=params,
               regularizer=reg)
    gamma = reg.gamma["weight"].detach().reshape(-1)
    assert reg.undecided_fraction(0.05) == 0.0
    assert torch.equal(gamma > 0.5, w_true != 0)
    theta = model.weight.detach().reshape(-1)
    assert theta[w_true == 0].abs().max() < 1e-2  # theta follows w*gamma
    torch.testing.assert_close(theta[w_true != 0], w_true[w_true != 0], atol=5e-2, rtol=0)


# ------------------------------------------------------------------------------------------ DRR / L1


def test_drr_gradient_matches_autograd_and_is_zero_at_zero():
    theta = torch.tensor([-0.5, -1e-3, 0.0, 2e-3, 0.3], dtype=torch.float64, requires_grad=True)
    drr_penalty(theta, 0.7, 5.0).backward()
    got = drr_gradient(theta.detach(), 0.7, 5.0)
    torch.testing.assert_close(got[theta != 0], theta.grad[theta != 0])
    assert got[2] == 0


@pytest.mark.parametrize("method,kwargs", [(drr, {"alpha": 2e-2, "beta": 5.0}), (rl1, {"alpha": 2e-2})])
def test_drr_and_rl1_produce_sparsity_on_the_right_support(method, kwargs):
    torch.manual_seed(1)
    x, y, w_true = sparse_regression()
    model = nn.Linear(12, 1, bias=False)
    events = []
    method(model, loader_of(x, y), F.mse_loss, epochs=40, lr=2e-2, finetune_epochs=20, progress=False,
           callback=events.append, **kwargs)
    w = model.weight.detach().reshape(-1)
    assert torch.equal(w != 0, w_true != 0)
    torch.testing.assert_close(w, w_true, atol=1e-2, rtol=0)  # fine-tuning removed the penalty's shrinkage
    phases = {e["phase"] for e in events}
    assert {"rgp", "tamade", "finetune"} <= phases


def test_pmmp_method_end_to_end_is_reproducible():
    def run():
        torch.manual_seed(123)  # the model's init; the method's own seed fixes the rest
        x, y, _ = sparse_regression(n=128)
        model = nn.Sequential(nn.Linear(12, 8), nn.Tanh(), nn.Linear(8, 1))
        return pmmp(model, loader_of(x, y), F.mse_loss, alpha=1e-3, epochs=4, finetune_epochs=2, lr=1e-2,
                    progress=False, seed=7)

    a, b = run(), run()
    for (na, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(pa, pb), na
    assert any((p == 0).any() for p in a.state_dict().values())


# ------------------------------------------------------------------------------------------ TAMADE


def test_tamade_returns_the_largest_threshold_within_tolerance():
    torch.manual_seed(0)
    d = 40
    x = torch.eye(d).repeat(4, 1)  # orthogonal features: pruning w_i adds w_i^2/d to the MSE
    w = torch.randn(d) * torch.linspace(0.01, 1.0, d)
    model = nn.Linear(d, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(w)
    y = (x @ w).unsqueeze(1) + 0.3 * torch.randn(len(x), 1)
    params = select_parameters(model)
    masks = masks_from_weights(params)
    delta, res = 0.05, 1e-7
    r = tamade_threshold(model, params, masks, [(x, y)], F.mse_loss, delta=delta, resolution=res)
    mags = np.sort(w.abs().numpy().astype(np.float64))

    def loss_pruning_below(eps):
        with torch.no_grad():
            return float(F.mse_loss(x @ (w * (w.abs() > eps)), y.squeeze(1)))

    base = loss_pruning_below(-1.0)
    assert r.base_loss == pytest.approx(base, rel=1e-6)
    feasible = [loss_pruning_below(m) <= (1 + delta) * base for m in mags]
    k = max(i for i, ok in enumerate(feasible) if ok)  # the loss is monotone in eps here
    assert all(feasible[: k + 1]) and not any(feasible[k + 1 :])
    assert mags[k] <= r.threshold < mags[k + 1]  # prunes exactly the weights brute force allows
    assert mags[k + 1] - r.threshold <= res  # ...and no larger threshold (to the resolution) would do
    assert r.loss <= (1 + delta) * base
    assert r.evaluations <= 2 * int(np.ceil(np.log2(d))) + 2  # cached by pruning set, not per step


def test_tamade_with_negative_loss_uses_relative_tolerance_on_magnitude():
    model = nn.Linear(3, 1, bias=False)
    params = select_parameters(model)
    r = tamade_threshold(model, params, masks_from_weights(params), [(torch.randn(4, 3), torch.zeros(4, 1))],
                         lambda out, _y: -1.0 - 0 * out.sum(), delta=0.01)
    assert r.threshold == pytest.approx(2 * float(model.weight.detach().abs().max()))  # constant loss: prune everything


# ------------------------------------------------------------------------------------------ RGP


def reachable_weights(masks: list[np.ndarray]) -> list[np.ndarray]:
    """Connected weights of a bias-free MLP: the source unit is reachable from the input and the
    target unit reaches the output, through non-zero weights."""
    fwd = [np.ones(masks[0].shape[1], bool)]
    for m in masks:
        fwd.append((m[:, fwd[-1]]).any(axis=1))
    bwd = [np.ones(masks[-1].shape[0], bool)]
    for m in reversed(masks):
        bwd.insert(0, (m[bwd[0], :]).any(axis=0))
    return [m & np.outer(bwd[i + 1], fwd[i]) for i, m in enumerate(masks)]


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(0.2, 0.8))
def test_rgp_removes_exactly_the_disconnected_weights(seed, density):
    g = torch.Generator().manual_seed(seed)
    sizes = [5, 6, 6, 4, 3]
    model = nn.Sequential(*itertools.chain.from_iterable(
        (nn.Linear(a, b, bias=False), nn.Tanh()) for a, b in itertools.pairwise(sizes)))
    layer_masks = []
    with torch.no_grad():
        for layer in model[::2]:
            m = torch.rand(layer.weight.shape, generator=g) < density
            layer.weight.copy_((torch.rand(layer.weight.shape, generator=g) + 0.1) * m)
            layer_masks.append(m.numpy())
    params = select_parameters(model)
    masks = masks_from_weights(params)
    expected = reachable_weights(layer_masks)
    removed = random_gradient_pruning(model, params, masks, (5,), batch_size=16, generator=g)
    for name, exp in zip(params, expected, strict=True):
        assert np.array_equal(masks[name].numpy(), exp), name
        assert np.array_equal(params[name].detach().numpy() != 0, exp), name
    assert removed == sum(int(m.sum()) for m in layer_masks) - sum(int(e.sum()) for e in expected)


def test_rgp_keeps_weights_of_a_unit_that_only_has_a_bias():
    model = nn.Sequential(nn.Linear(2, 2), nn.Tanh(), nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[0.0, 0.0], [1.0, -1.0]]))
        model[0].bias.copy_(torch.tensor([0.5, 0.0]))  # unit 0 has no inputs but a constant output
        model[2].weight.copy_(torch.tensor([[2.0, 3.0]]))
    params = select_parameters(model)
    masks = masks_from_weights(params)
    assert random_gradient_pruning(model, params, masks, (2,)) == 0
    assert bool(masks["2.weight"].all())


# ------------------------------------------------------------------------------------------ layerwise


def _exact_expectation(module, x, y, w, b, P, p):
    """Average over every Bernoulli outcome, weighted by its probability (tiny layers only)."""
    probs = torch.cat([P.reshape(-1), p.reshape(-1)])
    total = torch.zeros((), dtype=torch.float64)
    for bits in itertools.product((0.0, 1.0), repeat=probs.numel()):
        z = torch.tensor(bits, dtype=torch.float64)
        weight = torch.where(z == 1, probs, 1 - probs).prod()
        zw, zb = z[: P.numel()].reshape(P.shape), z[P.numel():].reshape(p.shape)
        total += weight * ((y - layer_forward(module, x, w * zw, b * zb)) ** 2).sum()
    return total


@pytest.mark.parametrize("module,xshape", [(nn.Linear(3, 2), (5, 3)), (nn.Conv2d(1, 1, 2, padding=1), (2, 1, 3, 3))])
def test_layerwise_objective_equals_the_exact_expectation(module, xshape):
    g = torch.Generator().manual_seed(3)
    module = module.double()
    x = torch.randn(xshape, generator=g, dtype=torch.float64)
    y = module(x).detach() + 0.1 * torch.randn(module(x).shape, generator=g, dtype=torch.float64)
    w, b = module.weight.detach(), module.bias.detach()
    P, p = torch.rand(w.shape, generator=g, dtype=torch.float64), torch.rand(b.shape, generator=g, dtype=torch.float64)
    closed = expected_squared_error(module, x, y, w, b, P, p)
    torch.testing.assert_close(closed, _exact_expectation(module, x, y, w, b, P, p), rtol=1e-10, atol=1e-10)
    alpha = 0.3
    torch.testing.assert_close(layerwise_objective(module, x, y, w, b, P, p, alpha), closed + alpha * (P.sum() + p.sum()))


def test_layerwise_objective_equals_its_monte_carlo_estimate():
    g = torch.Generator().manual_seed(5)
    module = nn.Conv2d(2, 3, 3, padding=1).double()
    x = torch.randn(4, 2, 4, 4, generator=g, dtype=torch.float64)
    y = torch.randn(4, 3, 4, 4, generator=g, dtype=torch.float64)
    w, b = module.weight.detach(), module.bias.detach()
    P, p = torch.rand(w.shape, generator=g, dtype=torch.float64), torch.rand(b.shape, generator=g, dtype=torch.float64)
    samples = []
    for _ in range(1500):
        zw = (torch.rand(w.shape, generator=g, dtype=torch.float64) < P).double()
        zb = (torch.rand(b.shape, generator=g, dtype=torch.float64) < p).double()
        samples.append(float(((y - layer_forward(module, x, w * zw, b * zb)) ** 2).sum()))
    mc = np.mean(samples)
    stderr = np.std(samples) / np.sqrt(len(samples))
    assert abs(float(expected_squared_error(module, x, y, w, b, P, p)) - mc) < 4 * stderr


def test_layerwise_method_prunes_and_keeps_the_function():
    torch.manual_seed(0)
    x, y, w_true = sparse_regression(n=256)
    model = nn.Linear(12, 1)
    with torch.no_grad():
        model.weight.copy_(w_true + 0.01 * torch.randn(12))
        model.bias.zero_()
    layerwise(model, loader_of(x, y, batch_size=128), F.mse_loss, alpha=0.5, layer_lr=1e-2, layer_steps=400,
              finetune_epochs=10, lr=1e-2, progress=False)
    w = model.weight.detach().reshape(-1)
    assert torch.equal(w != 0, w_true != 0)
    assert float(F.mse_loss(model(x).detach(), y)) < 1e-3


def test_tamade_prune_is_a_post_training_method():
    torch.manual_seed(0)
    x, y, w_true = sparse_regression()
    model = nn.Linear(12, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(w_true + 1e-4 * torch.randn(12))
    tamade_prune(model, loader_of(x, y), F.mse_loss, finetune_epochs=0, progress=False)
    assert torch.equal(model.weight.detach().reshape(-1) != 0, w_true != 0)


# ------------------------------------------------------------------------------------------ export


def _pruned_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 4))
    with torch.no_grad():
        for layer in (model[0], model[2]):
            layer.weight.mul_(torch.rand(layer.weight.shape) < 0.2)
    return model


def test_saved_file_decodes_to_the_quantized_pruned_model(tmp_path):
    model = _pruned_mlp()
    steps = {"0.weight": 0.02, "2.weight": 0.05, "0.bias": 0.01}
    expected = quantized_state_dict(model, steps)
    n = save_pruned(model, tmp_path / "m.nnc", steps=steps)
    assert n == (tmp_path / "m.nnc").stat().st_size
    got = nncodec.load_file(tmp_path / "m.nnc")
    assert set(got) == set(expected)
    for k, v in expected.items():
        assert torch.equal(got[k], v), k
    for k in ("0.weight", "2.weight"):
        assert bool((got[k][model.state_dict()[k] == 0] == 0).all())  # pruned weights stay pruned
        torch.testing.assert_close(got[k], model.state_dict()[k], atol=steps[k] / 2 + 1e-7, rtol=0)
    assert torch.equal(got["2.bias"], model.state_dict()["2.bias"])  # not quantized: lossless
    with nncodec.open(tmp_path / "m.nnc") as f:
        comp = f.components("0.weight")
        assert comp.mask is not None and int(comp.mask.sum()) == int(torch.count_nonzero(got["0.weight"]))


def test_lossless_survivors_decode_bit_exactly(tmp_path):
    model = _pruned_mlp(1)
    save_pruned(model, tmp_path / "m.nnc")
    got = nncodec.load_file(tmp_path / "m.nnc")
    for k, v in model.state_dict().items():
        assert torch.equal(got[k], v), k
    with nncodec.open(tmp_path / "m.nnc") as f:
        assert f.components("0.weight").quantizer.mode == "codebook"


def test_search_steps_respects_the_limit():
    model = _pruned_mlp(2)
    x = torch.randn(64, 20)
    ref = model(x).detach()

    def metric(state):
        m = _pruned_mlp(2)
        m.load_state_dict(state)
        return float(F.mse_loss(m(x), ref).detach())

    steps = search_steps(model, metric, 1e-3)
    assert set(steps) == {"0.weight", "2.weight"}
    assert metric(quantized_state_dict(model, steps)) <= 1e-3
    coarser = {k: v * 4 for k, v in steps.items()}
    assert metric(quantized_state_dict(model, coarser)) > 1e-3


# ------------------------------------------------------------------------------------------ API edges


def test_bad_arguments_raise_nncodec_errors():
    x, y, _ = sparse_regression(n=32)
    model = nn.Linear(12, 1)
    with pytest.raises(nncodec.BadArgumentError):
        pmmp(model, loader_of(x, y), F.mse_loss, epochz=3)
    with pytest.raises(nncodec.BadArgumentError):
        select_parameters(model, ["nope"])
    with pytest.raises(nncodec.BadArgumentError):
        select_parameters(nn.ReLU())
    if not torch.cuda.is_available():
        with pytest.raises(nncodec.BadArgumentError):
            drr(model, loader_of(x, y), F.mse_loss, device="cuda")


def test_target_selection():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 3))
    assert list(select_parameters(model)) == ["0.weight", "3.weight"]
    assert list(select_parameters(model, "weights+biases")) == ["0.weight", "0.bias", "3.weight", "3.bias"]
    assert "1.weight" in select_parameters(model, "all")
    assert list(select_parameters(model, lambda n, p, m: isinstance(m, nn.Linear))) == ["3.weight", "3.bias"]
