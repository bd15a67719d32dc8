"""nncodec.mdl: heads on unsupervised patch-PCA features of the side information (`patchpca`), and
the switching mixture of models (`mix`): exact round trips in a fresh process, the mixture's
arithmetic, and typed errors for malformed or mismatched specs. Tiny images, synthetic labels."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nncodec
from nncodec import mdl
from nncodec.errors import BadArgumentError, CorruptFileError, FormatError, LimitExceededError
from nncodec.limits import Limits
from nncodec.mdl import models as mdl_models
from nncodec.mdl.features import feature_count, patch_pca_features
from nncodec.mdl.kinds import SideInfo
from nncodec.mdl.mixture import Mixture
from nncodec.mdl.models import build

PP = {"arch": "patchpca", "shape": [8, 8], "kernel": 3, "filters": 3, "pool": 2, "hidden": [6], "classes": 4}
MIX = {"arch": "mix", "members": [PP, {**PP, "hidden": []}, {"arch": "uniform", "classes": 4}],
       "temps": ["1", "1.5"], "share": "0.01"}
FAST = mdl.TrainConfig(lr=3e-3, epochs=2, min_steps=5, batch=8, weight_decay=1e-2)


def _idx(arr: np.ndarray) -> bytes:
    a = np.ascontiguousarray(arr, dtype=np.uint8)
    return bytes([0, 0, 8, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape) + a.tobytes()


def _images(n: int = 120) -> tuple[bytes, bytes, SideInfo]:
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 4, n)
    imgs = np.clip(rng.integers(0, 90, (n, 8, 8)) + 50 * labels[:, None, None], 0, 255).astype(np.uint8)
    raw = _idx(imgs)
    return _idx(labels), raw, SideInfo.from_idx_bytes(raw)


def _encode(spec: dict, prequential: bool = True, seed: int = 0) -> tuple[bytes, bytes, bytes, SideInfo]:
    labels, raw, side = _images()
    s = mdl.EncodeSettings(kind="labels", prequential=prequential, spec=spec, train=FAST, first_block=16, seed=seed)
    return mdl.encode(labels, s, side, levels=("1/4",))[0], labels, raw, side


@pytest.fixture(scope="module")
def mixed() -> tuple[bytes, bytes, bytes, SideInfo]:
    return _encode(MIX)


def test_new_model_kinds_decode_exactly_in_a_fresh_process(tmp_path, mixed) -> None:
    """patchpca (both codes) and mix files written here; a process that never saw the encoder decodes them."""
    files = {"mix": mixed[0], "pp_pre": _encode(PP)[0], "pp_two": _encode(PP, prequential=False)[0]}
    labels, raw = mixed[1], mixed[2]
    (tmp_path / "images.idx").write_bytes(raw)
    calls = []
    for name, data in files.items():
        (tmp_path / f"{name}.nnc").write_bytes(data)
        calls.append(["mdl", "decode", str(tmp_path / f"{name}.nnc"), "-o", str(tmp_path / f"{name}.out"),
                      "--labels-for", str(tmp_path / "images.idx")])
    script = "from nncodec_cli.main import main\n" f"for args in {calls!r}:\n    main(args, standalone_mode=False)\n"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for name in files:
        assert (tmp_path / f"{name}.out").read_bytes() == labels


def test_same_input_same_bytes(mixed) -> None:
    assert _encode(MIX)[0] == mixed[0]
    assert _encode(MIX, seed=1)[0] != mixed[0]


def test_features_are_standardised_and_a_function_of_the_inputs_alone() -> None:
    _, _, side = _images()
    f = patch_pca_features(side.array, (8, 8), 3, 3, 2)
    assert f.shape == (120, feature_count((8, 8), 3, 2)) == (120, 96) and f.dtype == np.float32
    assert np.array_equal(f, patch_pca_features(side.array.copy(), (8, 8), 3, 3, 2))
    assert np.allclose(f.mean(0), 0, atol=1e-4) and np.all(f.std(0) < 1.0 + 1e-4)
    assert not np.array_equal(f, patch_pca_features(side.array[::-1].copy(), (8, 8), 3, 3, 2)[::-1])  # statistics of all


def test_mixture_weights_are_bayes_then_fixed_share() -> None:
    a, b = build(PP, 0), build({"arch": "uniform", "classes": 4}, 1)
    x = np.random.default_rng(0).normal(size=(5, 96)).astype(np.float32)
    for share in (0.0, 0.3, 1.0):
        mix = Mixture([a, b], [1.0], share)
        tables = mix.tables([x, x], np.arange(5))
        w = np.array([0.5, 0.5])
        for t, s in enumerate([0, 3, 1, 1, 2]):
            assert np.allclose(mix.table(tables, t)[0], w @ tables[:, t, :])
            mix.observe(tables[:, t, s])
            w = w * tables[:, t, s]
            w = (1 - share) * w / w.sum() + share / 2
        assert np.allclose(mix.weights, w)
    assert np.allclose(Mixture([a, b], [1.0], 1.0).weights, 0.5)  # share 1: the plain average


@pytest.mark.parametrize("edit, error", [
    ({"temps": []}, "temps"), ({"temps": ["0"]}, "temperature"), ({"temps": ["nan"]}, "temperature"),
    ({"temps": [1]}, "temperature"), ({"share": "1.5"}, "share"), ({"share": "x"}, "share"),
    ({"members": []}, "members"), ({"members": [PP] * 9}, "members"), ({"members": [MIX]}, "arch"),
    ({"members": [{"arch": "lstm", "alphabet": 4, "emb": 2, "hidden": 2}]}, "arch"),
    ({"members": [PP, {**PP, "classes": 5}]}, "classes"), ({"extra": 1}, "exactly"),
])
def test_bad_mix_specs_are_format_errors(edit: dict, error: str) -> None:
    with pytest.raises(FormatError, match=error):
        build({**MIX, **edit}, 0)


@pytest.mark.parametrize("edit, error", [
    ({"kernel": 4}, "odd"), ({"kernel": 9}, "kernel"), ({"filters": 10}, "filters"), ({"pool": 9}, "smaller"),
    ({"shape": [8]}, "shape"), ({"hidden": [0]}, "w"), ({"extra": 1}, "exactly"),
    ({"shape": [256, 256], "filters": 1}, "values per input"),
])
def test_bad_patchpca_specs_are_format_errors(edit: dict, error: str) -> None:
    with pytest.raises(FormatError, match=error):
        build({**PP, **edit}, 0)


def test_oversized_specs_are_refused_before_allocation(monkeypatch) -> None:
    def no_allocation(*args, **kwargs):
        raise AssertionError("a model was constructed before its parameter count was checked")

    monkeypatch.setattr(mdl_models, "PatchPCAClassifier", no_allocation)
    with pytest.raises(LimitExceededError, match="max_dataset_model_parameters"):
        build({**PP, "shape": [128, 128], "filters": 2, "pool": 1, "hidden": [1024]}, 0)
    one = feature_count((8, 8), 3, 2) * 6 + 6 + 6 * 4 + 4
    monkeypatch.undo()
    with pytest.raises(LimitExceededError):  # the members together, not each alone
        build({**MIX, "members": [PP, PP]}, 0, Limits(max_dataset_model_parameters=2 * one - 1))
    assert isinstance(build({**MIX, "members": [PP, PP]}, 0, Limits(max_dataset_model_parameters=2 * one)), Mixture)


def test_feature_memory_is_checked_before_the_features_are_computed(mixed, monkeypatch) -> None:
    def no_features(*args, **kwargs):
        raise AssertionError("features were computed before their memory was checked")

    monkeypatch.setattr(mdl_models, "patch_pca_features", no_features)
    need = 4 * 120 * feature_count((8, 8), 3, 2)  # one featuriser shared by the two patchpca members
    with pytest.raises(LimitExceededError, match="features"):
        mdl.decode(mixed[0], mixed[3], limits=Limits(max_total_decoded_bytes=need - 1))
    monkeypatch.undo()
    assert mdl.decode(mixed[0], mixed[3], limits=Limits(max_total_decoded_bytes=need)) == mixed[1]


def test_mix_is_for_the_prequential_code_only(mixed) -> None:
    with pytest.raises(BadArgumentError, match="prequential"):
        _encode(MIX, prequential=False)
    two = _encode(PP, prequential=False)[0]
    bad = _rebuild(two, lambda d: d.update(model=MIX))
    with pytest.raises(FormatError, match="does not fit"):
        mdl.decode(bad, mixed[3])


def _rebuild(data: bytes, edit) -> bytes:
    from nncodec.container.reader import CONTAINER_KEYS, Container
    from nncodec.container.writer import assemble

    with Container(data) as c:
        body = {k: v for k, v in c.header.items() if k not in CONTAINER_KEYS}
        sections = [bytes(c.read_section(s.index)) for s in c.sections]
        kinds = {s.index: s.kind for s in c.sections if s.kind != "data"}
    edit(body["dataset"])
    return assemble(body, sections, kinds=kinds)


@pytest.mark.parametrize("edit, error", [
    (lambda d: d["model"].update(share="0.02"), CorruptFileError),  # other (valid) weights: other tables
    (lambda d: d["model"]["members"][0].update(hidden=[7]), CorruptFileError),
    (lambda d: d["model"]["members"][0].update(shape=[4, 16]), FormatError),
    (lambda d: d["model"]["members"].append(MIX), FormatError),
    (lambda d: d["model"]["members"].__setitem__(2, {"arch": "uniform", "classes": 5}), FormatError),
    (lambda d: d["env"].update(torch="0.0"), mdl.EnvironmentMismatchError),
])
def test_mismatched_or_malformed_mix_headers_are_typed_errors(mixed, edit, error) -> None:
    with pytest.raises(error):
        mdl.decode(_rebuild(mixed[0], edit), mixed[3])


def test_info_accounts_for_every_byte_of_a_mix_file(mixed) -> None:
    info = nncodec.open(mixed[0]).info()
    assert not info["tensors"]
    assert info["preamble_bytes"] + info["header_bytes"] + info["padding_bytes"] + info["dataset_bytes"] \
        == info["file_bytes"] == len(mixed[0])


_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-3, 2**40), st.text(max_size=6),
                    st.lists(st.one_of(st.text(max_size=4), st.integers(0, 9)), max_size=3))


@settings(max_examples=20, deadline=None)
@given(key=st.sampled_from(["members", "temps", "share", "arch"]), value=_VALUES)
def test_any_mix_spec_value_gives_a_typed_error_or_the_data(mixed, key: str, value) -> None:
    bad = _rebuild(mixed[0], lambda d: d["model"].__setitem__(key, value))
    try:
        assert mdl.decode(bad, mixed[3]) == mixed[1]
    except nncodec.NNCodecError:
        pass
