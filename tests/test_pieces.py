"""The composable pieces: the user's own loop calls penalty / after_step / prune / freeze_mask / save."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from piece_loop import train_with_penalty
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import nncodec
from nncodec.compress.training import (
    PRUNERS,
    CompressionPiece,
    DRRPruner,
    LayerwisePruner,
    PMMPPruner,
    RL1Pruner,
    TamadePruner,
    make_pruner,
    pmmp,
)
from nncodec.compress.training.loop import mean_loss
from nncodec.errors import BadArgumentError


def data(n: int = 256, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    return x, x[:, :2].sum(1, keepdim=True) - x[:, 3:4]


def mlp(seed: int = 1) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))


@pytest.mark.parametrize("method,kwargs", [("pmmp", {"alpha": 1e-2, "u_scale": 0.7, "init_gamma": 0.8}),
                                           ("drr", {"alpha": 1e-2, "beta": 3.0, "normalize_layers": True}),
                                           ("rl1", {"alpha": 1e-2})])
def test_penalty_backward_equals_closed_form_gradients(method, kwargs):
    model = mlp()
    pruner = make_pruner(method, model, **kwargs)
    if method == "pmmp":  # away from the starting point, so that every term is non-zero
        for t in pruner.regularizer.extra_parameters():
            t.data.add_(0.1 * torch.randn_like(t)).clamp_(0, 1)
    with torch.no_grad():
        model[0].weight[0, :3] = 0.0  # sign(0) = 0: a pruned weight gets no pull
    pruner.penalty().backward()
    via_autograd = [p.grad.clone() for p in pruner.params.values()]
    extra = [t.grad.clone() for t in pruner.regularizer.extra_parameters()]
    for t in [*model.parameters(), *pruner.regularizer.extra_parameters()]:
        t.grad = None
    pruner.add_gradients()
    for a, b in zip(via_autograd, [p.grad for p in pruner.params.values()], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    for a, t in zip(extra, pruner.regularizer.extra_parameters(), strict=True):
        torch.testing.assert_close(a, t.grad, rtol=1e-5, atol=1e-7)  # u's gradient is the ascent direction
    assert float(pruner.penalty().detach()) == pytest.approx(pruner.penalty_value(), rel=1e-5)
    assert torch.all(via_autograd[0][0, :3] == 0) or method == "pmmp"


def test_user_loop_equals_the_method_function():
    """pmmp(model, loader, loss) is a loop over the same piece: a hand-written loop gives the same model."""
    x, y = data()
    batches = [(x[i:i + 32], y[i:i + 32]) for i in range(0, len(x), 32)]
    ref = mlp()
    pmmp(ref, batches, F.mse_loss, alpha=1e-3, epochs=3, finetune_epochs=2, lr=1e-2, companion_lr=2e-2,
         calib_batches=4, progress=False, seed=5)

    model = mlp()
    torch.manual_seed(5)
    pruner = PMMPPruner(model, alpha=1e-3, companion_lr=2e-2, generator=torch.Generator().manual_seed(5))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, foreach=True)

    def epoch() -> None:
        for xb, yb in batches:
            opt.zero_grad(set_to_none=True)
            F.mse_loss(model(xb), yb).backward()
            pruner.add_gradients()
            opt.step()
            pruner.after_step()

    for _ in range(3):
        epoch()
    calib = batches[:4]
    pruner.prune(lambda: mean_loss(model, calib, F.mse_loss), example_inputs=calib[0][0], probes=[b[0] for b in calib])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, foreach=True)
    for _ in range(2):
        epoch()
    for a, b in zip(ref.parameters(), model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_penalty_route_prunes_freezes_and_saves(tmp_path):
    x, y = data()
    model = mlp()
    pruner = DRRPruner(model, alpha=3e-3, beta=5.0)
    assert isinstance(pruner, CompressionPiece)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-2)
    for _ in range(20):
        for i in range(0, len(x), 64):
            opt.zero_grad()
            (F.mse_loss(model(x[i:i + 64]), y[i:i + 64]) + pruner.penalty()).backward()
            opt.step()
            pruner.after_step()

    def evaluate() -> tuple[float, int]:  # a (sum, count) pair is accepted too
        with torch.no_grad():
            return float(F.mse_loss(model(x), y, reduction="sum")), y.numel()

    base = evaluate()[0] / len(y)
    report = pruner.prune(evaluate, example_inputs=x[:16], delta=0.05)
    assert report.tamade.loss <= base * 1.05 + 1e-6
    assert report.nonzero < report.total
    pruned = {n: ~m for n, m in pruner.masks.items()}
    assert float(pruner.penalty().detach()) == 0.0  # fine-tuning runs without the penalty
    for _ in range(5):
        opt.zero_grad()
        F.mse_loss(model(x), y).backward()
        for n, p in pruner.params.items():
            assert torch.all(p.grad[pruned[n]] == 0)  # gradient hooks: Adam's moments stay zero
        opt.step()
        pruner.after_step()
    for n, p in pruner.params.items():
        assert torch.all(p[pruned[n]] == 0)
    path = tmp_path / "m.nnc"
    size = pruner.save(path, levels=64)
    assert size == path.stat().st_size
    decoded = nncodec.load_file(path)
    expected = pruner.to_state_dict(levels=64)
    assert decoded.keys() == expected.keys()
    for k in expected:
        assert torch.equal(decoded[k], expected[k])
    with nncodec.open(path) as f:
        assert f.metadata()["nncodec.training"] == "drr"


def test_tamade_piece_on_token_inputs_and_layerwise_needs_calibration():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(20, 8), nn.Flatten(), nn.Linear(32, 20))
    tokens = torch.randint(0, 20, (64, 4))
    target = tokens[:, 0]
    pruner = TamadePruner(model)

    def evaluate() -> float:
        with torch.no_grad():
            return float(F.cross_entropy(model(tokens), target))

    report = pruner.prune(evaluate, example_inputs=tokens)  # RGP draws random token ids, not N(0, 1) floats
    assert report.total == 32 * 20
    with pytest.raises(BadArgumentError, match="calib_inputs"):
        LayerwisePruner(mlp()).prune(lambda: 0.0)
    with pytest.raises(BadArgumentError, match="example_inputs"):
        TamadePruner(mlp()).prune(lambda: 1.0)


def test_layerwise_piece_prunes():
    x, _ = data()
    model = mlp()
    pruner = LayerwisePruner(model, alpha=1.0, layer_lr=1e-2, layer_steps=100)
    y = model(x).detach()
    report = pruner.prune(lambda: float(F.mse_loss(model(x), y).detach()), calib_inputs=[x[:128]], delta=0.5)
    assert report.nonzero < report.total


def test_make_pruner_errors_and_names():
    assert set(PRUNERS) == {"pmmp", "drr", "rl1", "tamade", "layerwise"}
    assert isinstance(make_pruner("rl1", mlp()), RL1Pruner)
    with pytest.raises(BadArgumentError, match="unknown method"):
        make_pruner("nope", mlp())
    with pytest.raises(BadArgumentError):
        make_pruner("drr", mlp(), bogus=1)
    with pytest.raises(BadArgumentError):
        make_pruner("pmmp", mlp(), alpha=-1.0)
    with pytest.raises(BadArgumentError):
        PMMPPruner(mlp()).save("x.nnc", steps={}, levels=4)


def test_a_ddp_wrapped_model_is_unwrapped_for_names():
    model = mlp()
    wrapped = nn.DataParallel(model)
    pruner = DRRPruner(wrapped)
    assert list(pruner.params) == ["0.weight", "2.weight"]
    assert pruner.model is model


def test_dataloader_loop_with_pmmp_penalty_route_sparsifies():
    x, y = data()
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0))
    model = mlp()
    pruner = PMMPPruner(model, alpha=3e-3, companion_lr=2e-2)
    train_with_penalty(model, pruner, torch.optim.Adam(model.parameters(), lr=1e-2), loader, 15, F.mse_loss)
    gamma = torch.cat([g.detach().reshape(-1) for g in pruner.regularizer.gamma.values()])
    assert gamma.min() >= 0 and gamma.max() <= 1
    assert float((gamma < 0.05).float().mean()) > 0.3  # most of 8->16->1 is not needed for a 3-input sum


def test_drr_normalize_layers_weighs_every_tensor_alike() -> None:
    """With normalize_layers each tensor's penalty is its mean term times total/tensors: two tensors of
    very different sizes with the same weight value contribute the same penalty."""
    import torch
    from torch import nn

    from nncodec.compress.training.penalties import DRR

    big, small = nn.Parameter(torch.full((1000,), 0.3)), nn.Parameter(torch.full((10,), 0.3))
    plain = DRR({"big": big, "small": small}, alpha=1e-2, beta=3.0)
    norm = DRR({"big": big, "small": small}, alpha=1e-2, beta=3.0, normalize_layers=True)
    term = 1e-2 * (1 - torch.exp(torch.tensor(-0.9))).item()
    assert abs(plain.value() / (1010 * term) - 1) < 1e-5  # float32 sums
    assert abs(norm.value() / (1010 * term) - 1) < 1e-5  # total unchanged at equal weights...
    assert abs(norm.scales["small"] / norm.scales["big"] - 100) < 1e-9  # ...but per weight the small tensor pulls 100x harder
    norm.add_gradients()
    assert abs(small.grad[0].item() / big.grad[0].item() - 100) < 1e-4


def test_method_defaults_never_set_the_run_length(monkeypatch) -> None:
    """`--epochs` / `--finetune-epochs` are the caller's: a DEFAULTS entry that set them would silently
    win over the command line (compress_classifier only fills them in when absent), so it is refused."""
    import pytest

    from nncodec.compress.training import recipes

    for arch in recipes.DEFAULTS:
        for method in recipes.DEFAULTS[arch]:
            assert not recipes.RUN_LENGTH & recipes.method_options(arch, method).keys()
    monkeypatch.setitem(recipes.DEFAULTS["lenet300"], "drr", {**recipes.DEFAULTS["lenet300"]["drr"], "epochs": 3})
    with pytest.raises(AssertionError, match="run lengths"):
        recipes.method_options("lenet300", "drr")
