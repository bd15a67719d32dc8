"""nncodec.mdl model specs beyond lstm/mlp: a small CNN for labels given images, and the `gauss` model
that codes real targets at a stated precision (the teacher–student experiment); a ready .nnc model
file as the model part of a two-part code. Tiny models, synthetic data."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import nncodec
from nncodec import mdl
from nncodec.container.reader import Container
from nncodec.errors import FormatError, LimitExceededError
from nncodec.limits import DEFAULT_LIMITS, Limits
from nncodec.mdl import models as mdl_models
from nncodec.mdl.kinds import SideInfo
from nncodec.mdl.models import build, lstm_parameters

CNN = {"arch": "cnn", "shape": [8, 8], "channels": [2, 3], "kernel": 3, "hidden": [5], "classes": 4}
FAST = mdl.TrainConfig(epochs=2, min_steps=5, batch=8)


def _idx(arr: np.ndarray, code: int, dtype: str) -> bytes:
    a = np.ascontiguousarray(arr, dtype=dtype)
    return bytes([0, 0, code, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape) + a.tobytes()


def _images(n: int = 96) -> tuple[bytes, SideInfo]:
    rng = np.random.default_rng(3)
    imgs = rng.integers(0, 256, (n, 8, 8), dtype=np.uint8)
    labels = _idx((imgs[:, 0, 0] // 64).astype(np.uint8), 0x08, "u1")
    return labels, SideInfo.from_idx_bytes(_idx(imgs, 0x08, "u1"))


@pytest.mark.parametrize("prequential", [True, False])
def test_cnn_codes_labels_given_images_and_decodes_back(prequential: bool) -> None:
    labels, side = _images()
    s = mdl.EncodeSettings(kind="labels", prequential=prequential, spec=CNN, train=FAST, first_block=16)
    out, report = mdl.encode(labels, s, side, levels=("1/4",))
    assert mdl.decode(out, side) == labels
    assert json.loads(json.dumps(report.code)) == ("prequential" if prequential else "two-part")


@pytest.mark.parametrize("edit, error", [
    ({"kernel": 4}, "odd"), ({"kernel": 9}, "kernel"), ({"channels": []}, "channels"),
    ({"channels": [1] * 5}, "channels"), ({"shape": [8]}, "shape"), ({"shape": [2, 2], "channels": [1, 1]}, "small"),
    ({"extra": 1}, "exactly"), ({"hidden": [0]}, "w"),
    ({"shape": [1024, 1024], "channels": [1]}, "values per input"),
])
def test_bad_cnn_specs_are_format_errors(edit: dict, error: str) -> None:
    with pytest.raises(FormatError, match=error):
        build({**CNN, **edit}, 0)


LIMIT = DEFAULT_LIMITS.max_dataset_model_parameters
OVERSIZED = [
    {"arch": "lstm", "alphabet": 256, "emb": 1024, "hidden": 1024},  # every width allowed, 8.9 M parameters
    {"arch": "mlp", "inputs": 65536, "hidden": [64], "classes": 10},
    {**CNN, "shape": [64, 64], "channels": [8], "hidden": [1024, 1024, 1024, 1024, 1024]},
    {"arch": "gauss", "inputs": 65536, "hidden": [1024], "classes": 4, "step": "0.1", "offset": 0},
]


@pytest.mark.parametrize("spec", OVERSIZED, ids=lambda s: s["arch"])
def test_oversized_model_specs_are_refused_before_allocation(spec: dict, monkeypatch) -> None:
    def no_allocation(*args, **kwargs):
        raise AssertionError("a model was constructed before its parameter count was checked")

    for cls in ("ByteLSTM", "MLPClassifier", "CNNClassifier", "GaussRegressor"):
        monkeypatch.setattr(mdl_models, cls, no_allocation)
    with pytest.raises(LimitExceededError, match="max_dataset_model_parameters"):
        build(spec, 0)


@pytest.mark.parametrize(("a", "e", "h"), [(256, 16, 128), (7, 1, 1), (256, 1024, 1024), (3, 5, 2)])
def test_lstm_parameter_count_is_the_model_s(a: int, e: int, h: int) -> None:
    limits = Limits(max_dataset_model_parameters=2**24)
    model = build({"arch": "lstm", "alphabet": a, "emb": e, "hidden": h}, 0, limits)
    assert lstm_parameters(a, e, h) == sum(p.numel() for p in model.parameters())
    assert (lstm_parameters(256, 1024, 1024) > LIMIT) and lstm_parameters(256, 16, 128) <= LIMIT


def test_the_model_limit_is_the_reader_s_to_set() -> None:
    small = {"arch": "lstm", "alphabet": 256, "emb": 4, "hidden": 8}
    n = lstm_parameters(256, 4, 8)
    assert sum(p.numel() for p in build(small, 0, Limits(max_dataset_model_parameters=n)).parameters()) == n
    with pytest.raises(LimitExceededError):
        build(small, 0, Limits(max_dataset_model_parameters=n - 1))


def test_cnn_spec_must_fit_the_images() -> None:
    labels, side = _images()
    s = mdl.EncodeSettings(kind="labels", spec={**CNN, "shape": [4, 16]}, train=FAST)
    with pytest.raises(FormatError, match="does not fit"):
        mdl.encode(labels, s, side, levels=("1/4",))


def _regression(n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 2, generator=g) * 2 - 1
    y = torch.tanh(2 * x[:, :1] - x[:, 1:]) + 0.05 * torch.randn(n, 1, generator=g)
    return x.numpy(), y.numpy().reshape(-1)


def _gauss_spec(q: np.ndarray, step: float, hidden: list[int]) -> dict:
    return {"arch": "gauss", "inputs": 2, "hidden": hidden, "classes": int(q.max() - q.min()) + 1,
            "step": repr(step), "offset": int(q.min())}


def test_gauss_bins_are_a_discretised_gaussian() -> None:
    """The table is the Gaussian's mass per bin, the end bins taking the tails (sums to 1)."""
    spec = {"arch": "gauss", "inputs": 1, "hidden": [], "classes": 5, "step": "0.5", "offset": -2}
    m = build(spec, 0)
    with torch.no_grad():
        m.net[0].weight.fill_(0.0)
        m.net[0].bias.fill_(0.3)
        m.log_s.fill_(math.log(0.4))
    p = torch.softmax(m.logits(torch.zeros(1, 1)), -1)[0].detach().numpy()
    cdf = [0.5 * (1 + math.erf((e - 0.3) / (0.4 * math.sqrt(2)))) for e in (-0.75, -0.25, 0.25, 0.75)]
    want = np.diff([0.0, *cdf, 1.0])
    assert np.allclose(p, want, atol=1e-12)


def test_gauss_model_file_is_the_model_part_and_real_targets_decode(tmp_path) -> None:
    """A trained student saved as .nnc becomes the model part as is; the coded targets (rounded to
    the step) decode back in a fresh process through the CLI, given the float32 inputs."""
    from click.testing import CliRunner
    from nncodec_cli.main import main

    x, y = _regression()
    step = 0.01
    q = np.round(y.astype(np.float64) / step).astype(np.int64)
    spec = _gauss_spec(q, step, [6])
    targets = _idx(q - q.min(), 0x08, "u1")
    inputs = tmp_path / "inputs.idx"
    inputs.write_bytes(_idx(x, 0x0D, ">f4"))
    side = SideInfo.from_path(inputs)
    assert side.array.dtype == np.float32
    trained, _ = mdl.encode(targets, mdl.EncodeSettings(kind="labels", spec=spec, train=mdl.TrainConfig(
        lr=1e-2, epochs=20, batch=32)), side, levels=("lossless",))
    model = tmp_path / "student.nnc"
    with nncodec.open(trained) as f:
        nncodec.save_file({k: f.get_tensor(k) for k in f.keys()}, model)
    (tmp_path / "targets.idx").write_bytes(targets)
    coded = tmp_path / "coded.nnc"
    result = CliRunner().invoke(main, ["mdl", "encode", str(tmp_path / "targets.idx"), "-o", str(coded), "--labels-for",
                                       str(inputs), "--model", str(model), "--arch", json.dumps(spec)])
    assert result.exit_code == 0, result.output
    cli = [sys.executable, "-c", "from nncodec_cli.main import main; main()", "mdl"]
    run = subprocess.run(cli + ["decode", str(coded), "-o", str(tmp_path / "back"), "--labels-for", str(inputs)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "back").read_bytes() == targets
    with Container(coded.read_bytes()) as c:
        data_part = sum(sec.length for sec in c.sections if sec.kind == "dataset")
    in_file, given = nncodec.load_file(coded), nncodec.load_file(model)
    assert in_file.keys() == given.keys() and all(torch.equal(in_file[k], given[k]) for k in given)
    # an untrained model of the same kind codes them worse (the model part is what it claims to be)
    _, untrained = mdl.encode(targets, mdl.EncodeSettings(kind="labels", spec=spec, train=mdl.TrainConfig(
        epochs=0, min_steps=1)), side, levels=("lossless",))
    assert data_part < untrained.data_bytes


@pytest.mark.parametrize("edit, error", [({"step": "0"}, "step"), ({"step": 0.5}, "step"), ({"step": "x"}, "step"),
                                         ({"offset": 1.5}, "offset"), ({"offset": 2**40}, "offset")])
def test_bad_gauss_specs_are_format_errors(edit: dict, error: str) -> None:
    spec = {"arch": "gauss", "inputs": 2, "hidden": [3], "classes": 4, "step": "0.1", "offset": 0}
    with pytest.raises(FormatError, match=error):
        build({**spec, **edit}, 0)


def test_prequential_refuses_a_model_file() -> None:
    labels, side = _images()
    s = mdl.EncodeSettings(kind="labels", prequential=True, spec=CNN, train=FAST)
    with pytest.raises(nncodec.NNCodecError, match="stores no model"):
        mdl.encode(labels, s, side, model_file=b"whatever")


_VALUE = st.one_of(st.none(), st.booleans(), st.integers(-3, 2**40), st.text(max_size=6), st.floats(allow_nan=True),
                   st.lists(st.integers(-2, 2000), max_size=6))
_SPECS = {"cnn": CNN, "gauss": {"arch": "gauss", "inputs": 2, "hidden": [3], "classes": 4, "step": "0.1", "offset": 0}}


@settings(max_examples=60, deadline=None)
@given(arch=st.sampled_from(sorted(_SPECS)), key=st.text(max_size=8) | st.sampled_from(
    ["shape", "channels", "kernel", "hidden", "classes", "inputs", "step", "offset"]), value=_VALUE)
def test_any_spec_value_builds_a_bounded_model_or_is_a_format_error(arch: str, key: str, value) -> None:
    """A header's model spec is untrusted: any value gives a small model, FormatError or LimitExceededError."""
    try:
        model = build({**_SPECS[arch], key: value}, 0)
    except (FormatError, LimitExceededError):
        return
    assert sum(p.numel() for p in model.parameters()) <= LIMIT
