"""Lossy compressors do what they say, and the context-model codecs round-trip exactly."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nncodec
from nncodec import codecs
from nncodec.codecs import levels_ctx, mask_ctx
from nncodec.codecs.base import DecodeContext, EncodeOptions
from nncodec.components import QuantTensor, dequantize
from nncodec.compress.calibrate import LayerStats, bias_correction
from nncodec.compress.config import CONFIGS, get_config, make_compressor
from nncodec.compress.kmeans import quantize_kmeans
from nncodec.compress.prune import global_masks, magnitude_mask
from nncodec.compress.rdoq import quantize_rdoq
from nncodec.compress.uniform import quantize_uniform, step_for_bits, step_for_relative_error
from nncodec.dtypes import DTYPES
from nncodec.errors import BadArgumentError, CorruptFileError

F32 = DTYPES["float32"]
CTX = DecodeContext()


def laplace(shape: tuple[int, ...], seed: int = 0, scale: float = 0.05) -> np.ndarray:
    return np.random.default_rng(seed).laplace(0, scale, shape).astype(np.float32)


def values_of(t: QuantTensor) -> np.ndarray:
    return dequantize(t).view(np.float32).reshape(t.shape)


def file_size(tensors: dict) -> int:
    return len(nncodec.save(tensors))


# ------------------------------------------------------------------------------------ pruning


@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.9, 1.0])
def test_magnitude_mask_reaches_sparsity_and_keeps_the_largest(sparsity):
    w = laplace((40, 50))
    mask = magnitude_mask(w, sparsity)
    assert mask.sum() == round((1 - sparsity) * w.size)
    if 0 < mask.sum() < w.size:
        assert np.abs(w[mask]).min() >= np.abs(w[~mask]).max()


def test_global_masks_share_one_threshold():
    a, b = laplace((30, 30), 1, 0.1), laplace((30, 30), 2, 0.01)
    masks = global_masks({"a": a, "b": b}, 0.5)
    kept = masks["a"].sum() + masks["b"].sum()
    assert kept == a.size  # half of all weights
    assert masks["a"].sum() > masks["b"].sum()  # the layer of small weights loses more


# ------------------------------------------------------------------------------------ uniform


@pytest.mark.parametrize("per_channel", [False, True])
def test_uniform_error_is_at_most_half_a_step(per_channel):
    w = laplace((16, 64))
    axis = 0 if per_channel else None
    steps = step_for_relative_error(w, 0.1, axis)
    t = quantize_uniform(w, F32, steps, axis=axis)
    per_elem = steps.reshape(-1, 1) if per_channel else steps[0]
    assert (np.abs(values_of(t) - w) <= per_elem / 2 * (1 + 1e-6)).all()
    assert t.quantizer.values.size == (16 if per_channel else 1)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_bits_bound_the_levels(bits):
    w = laplace((8, 100))
    steps = step_for_bits(w, bits, axis=0)
    t = quantize_uniform(w, F32, steps, axis=0)
    assert np.abs(t.levels).max() <= 2 ** (bits - 1) - 1


def test_relative_error_step_meets_its_target():
    w = laplace((200, 200))
    t = quantize_uniform(w, F32, step_for_relative_error(w, 0.05))
    rel = np.sqrt(np.mean((values_of(t) - w) ** 2) / np.mean(w**2))
    assert 0.04 < rel < 0.06


def test_zero_step_and_bad_bits_are_refused():
    with pytest.raises(BadArgumentError):
        quantize_uniform(laplace((4, 4)), F32, 0.0)
    with pytest.raises(BadArgumentError):
        step_for_bits(laplace((4, 4)), 0)


# ------------------------------------------------------------------------------------ RDOQ


def test_rdoq_without_lambda_is_plain_rounding():
    w = laplace((20, 30))
    a = quantize_rdoq(w, F32, 0.02, 0.0, zeros="levels")
    b = quantize_uniform(w, F32, 0.02)
    assert np.array_equal(a.levels, b.levels)


def test_rdoq_shrinks_the_real_file_at_bounded_distortion():
    w = laplace((100, 200))
    step = 0.05
    plain = quantize_uniform(w, F32, step)
    rd = quantize_rdoq(w, F32, step, 0.2)
    mse_plain = np.mean((values_of(plain) - w) ** 2)
    mse_rd = np.mean((values_of(rd) - w) ** 2)
    assert file_size({"w": rd}) < 0.95 * file_size({"w": plain})
    assert mse_rd < 1.3 * mse_plain
    # the chosen level is never further than one step from the value, except when it is zero
    err = np.abs(values_of(rd) - w)
    assert ((err <= step * (1 + 1e-6)) | (values_of(rd) == 0)).all()


def test_optq_keeps_the_layer_output_closer_than_rounding():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2000, 24)) @ rng.normal(size=(24, 24))  # correlated inputs
    w = laplace((12, 24), 4, 0.2)
    stats = LayerStats.from_inputs(x)
    step = 0.3
    plain = values_of(quantize_uniform(w, F32, step))
    optq = values_of(quantize_rdoq(w, F32, step, 0.0, hessian=stats.cov, damp=1e-4))

    def output_error(w_hat):
        return np.mean(((x - stats.mean) @ (w - w_hat).T) ** 2)

    assert output_error(optq) < 0.8 * output_error(plain)


def test_bias_correction_restores_the_mean_output():
    rng = np.random.default_rng(5)
    x = rng.normal(1.0, 0.5, size=(500, 10))
    w, b = rng.normal(size=(4, 10)), rng.normal(size=4)
    w_hat = np.round(w)
    b_hat = b + bias_correction(w, w_hat, x.mean(0))
    assert np.allclose((x @ w.T + b).mean(0), (x @ w_hat.T + b_hat).mean(0))


def test_rdoq_respects_a_pruning_mask():
    w = laplace((10, 10))
    mask = magnitude_mask(w, 0.7)
    t = quantize_rdoq(w, F32, 0.01, 0.05, mask=mask)
    assert (values_of(t)[~mask] == 0).all()


# ------------------------------------------------------------------------------------ k-means


@pytest.mark.parametrize("k", [1, 4, 16])
def test_kmeans_codebook_has_at_most_k_values(k):
    w = laplace((30, 40))
    t = quantize_kmeans(w, F32, k)
    assert t.quantizer.mode == "codebook" and 1 <= t.quantizer.values.size <= k
    assert np.unique(values_of(t)).size <= k
    assert (np.diff(t.quantizer.values) >= 0).all()  # levels ordered by value


def test_kmeans_error_falls_with_more_centroids():
    w = laplace((30, 40))
    errors = [np.mean((values_of(quantize_kmeans(w, F32, k)) - w) ** 2) for k in (2, 4, 8, 16)]
    assert all(a > b for a, b in zip(errors, errors[1:], strict=False))


def test_kmeans_with_a_mask_codes_only_survivors():
    w = laplace((20, 20))
    mask = magnitude_mask(w, 0.5)
    t = quantize_kmeans(w, F32, 4, mask=mask)
    assert t.levels.size == mask.sum() and (values_of(t)[~mask] == 0).all()
    assert nncodec.load(nncodec.save({"w": t}), framework="np")["w"].shape == (20, 20)


# ------------------------------------------------------------------------------------ configs and callback


def state_dict() -> dict:
    rng = np.random.default_rng(7)
    return {"fc1.weight": laplace((64, 100), 1), "fc1.bias": rng.normal(0, 0.1, 64).astype(np.float32),
            "fc2.weight": laplace((10, 64), 2), "fc2.bias": rng.normal(0, 0.1, 10).astype(np.float32),
            "steps": np.array([3], dtype=np.int64)}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_named_configs_round_trip(name):
    sd = state_dict()
    data = nncodec.save(sd, compressor=make_compressor(name))
    out = nncodec.load(data, framework="np")
    assert np.array_equal(out["steps"], sd["steps"])  # non-float stays exact
    assert len(data) < sum(v.nbytes for v in sd.values())
    for key in ("fc1.weight", "fc2.weight"):
        rel = np.linalg.norm(out[key] - sd[key]) / np.linalg.norm(sd[key])
        assert rel < 0.8


def test_callback_options_and_small_tensors():
    sd = state_dict()
    comp = make_compressor(step=0.01, sparsity=0.5, rd_lambda=0.05, per_channel=False)
    data = nncodec.save(sd, compressor=comp)
    with nncodec.open(data, framework="np") as f:
        report = {t["name"]: t for t in f.info()["tensors"]}
        assert report["fc1.weight"]["sparsity"] >= 0.5
        assert report["fc1.weight"]["step"] == pytest.approx(0.01)
        bias = f.get_tensor("fc1.bias")
    assert np.abs(bias - sd["fc1.bias"]).max() < 0.01 * np.abs(sd["fc1.bias"]).max()
    lossless_small = make_compressor(step=0.01, small="lossless")
    out = nncodec.load(nncodec.save(sd, compressor=lossless_small), framework="np")
    assert np.array_equal(out["fc1.bias"], sd["fc1.bias"])


def test_global_sparsity_needs_and_uses_all_tensors():
    sd = state_dict()
    with pytest.raises(BadArgumentError):
        make_compressor(rel_error=0.05, sparsity=0.8, global_sparsity=True)
    comp = make_compressor(rel_error=0.05, sparsity=0.8, global_sparsity=True, tensors=sd)
    out = nncodec.load(nncodec.save(sd, compressor=comp), framework="np")
    zeros = sum(int((out[k] == 0).sum()) for k in ("fc1.weight", "fc2.weight"))
    assert zeros >= 0.8 * (64 * 100 + 10 * 64)


def test_conflicting_or_unknown_options_are_refused():
    with pytest.raises(BadArgumentError):
        get_config(step=0.1, bits=4)
    with pytest.raises(BadArgumentError):
        get_config("no-such-config")
    with pytest.raises(BadArgumentError):
        get_config(sparsity=1.5)
    assert get_config("int8", rel_error=0.1).bits is None  # an explicit resolution replaces the config's


def test_bfloat16_and_float16_weights_quantize():
    import torch

    sd = {"w": torch.tensor(laplace((32, 32))).to(torch.bfloat16), "h": torch.tensor(laplace((32, 32))).half()}
    out = nncodec.load(nncodec.save(sd, compressor=make_compressor(rel_error=0.05)))
    assert out["w"].dtype == torch.bfloat16 and out["h"].dtype == torch.float16
    assert torch.allclose(out["w"].float(), sd["w"].float(), atol=0.05)


# ------------------------------------------------------------------------------------ context codecs


@st.composite
def masks(draw):
    rows = draw(st.integers(1, 12))
    cols = draw(st.integers(1, 40))
    kind = draw(st.sampled_from(["random", "zeros", "ones", "columns"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "zeros":
        m = np.zeros((rows, cols), bool)
    elif kind == "ones":
        m = np.ones((rows, cols), bool)
    elif kind == "columns":  # whole columns pruned, the rest dense
        m = np.broadcast_to(rng.random(cols) < 0.5, (rows, cols)).copy() & (rng.random((rows, cols)) < 0.9)
    else:
        m = rng.random((rows, cols)) < draw(st.floats(0, 1))
    if draw(st.booleans()) and cols % 2 == 0:
        m = m.reshape(rows, 2, cols // 2)  # a conv-like 3-D tensor
    return m


@settings(max_examples=60, deadline=None)
@given(masks())
def test_mask_classes_codec_round_trips(m):
    if not mask_ctx.applies(m.shape):
        return
    payload = mask_ctx.encode(m)
    out = codecs.mask.decode("ans-classes", {}, memoryview(payload), m.shape, CTX)
    assert out.shape == m.shape and np.array_equal(out, m)


@st.composite
def row_levels(draw):
    rows = draw(st.integers(2, 10))
    cols = draw(st.integers(1, 30))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    mask = rng.random((rows, cols)) < draw(st.floats(0.05, 1))
    scale = rng.uniform(0.1, 20, size=(rows, 1))  # rows of very different scales
    levels = np.rint(rng.laplace(0, 1, (rows, cols)) * scale).astype(np.int64)
    if draw(st.booleans()):
        levels[:] = draw(st.integers(-3, 3))  # constant levels
    return mask, levels[mask]


@settings(max_examples=60, deadline=None)
@given(row_levels())
def test_levels_rowclass_codec_round_trips(case):
    mask, levels = case
    rows = levels_ctx.row_counts(mask.shape, mask)
    payload = levels_ctx.encode(levels, rows)
    if payload is None:
        assert (rows > 0).sum() < 2 or levels.size == 0
        return
    out = codecs.levels.decode("ans-rowclass", {}, memoryview(payload), levels.size, CTX, rows)
    assert np.array_equal(out, levels)


def test_context_codecs_win_where_they_pay_and_files_round_trip():
    rng = np.random.default_rng(11)
    col_density = rng.choice([0.02, 0.6], size=400)  # dead and live input columns
    mask = rng.random((300, 400)) < col_density
    scale = rng.choice([1.0, 12.0], size=(300, 1))
    levels_full = np.rint(rng.laplace(0, 1, (300, 400)) * scale).astype(np.int64)
    levels_full[levels_full == 0] = 1
    t = QuantTensor(F32, (300, 400), levels_full[mask], nncodec.Quantizer("uniform", np.array([0.01], np.float32)), mask)
    data = nncodec.save({"w": t}, prefer="size")
    with nncodec.open(data, framework="np") as f:
        parts = {c["kind"]: c["codec"] for c in f.info()["tensors"][0]["components"]}
        assert parts == {"mask": "ans-classes", "levels": "ans-rowclass", "quantizer": "f32"}
        back = f.components("w")
    assert np.array_equal(back.mask, mask) and np.array_equal(back.levels, t.levels)
    plain = nncodec.tensorwriter.encode_file({"w": t}, None, EncodeOptions(prefer="size", contexts=False))
    assert len(data) < len(plain)


def test_damaged_context_payloads_raise_corrupt_file_error():
    rng = np.random.default_rng(12)
    m = rng.random((20, 30)) < 0.3
    payload = bytearray(mask_ctx.encode(m))
    bad_inputs = [bytes(payload[:3]), bytes(payload[:-4]), bytes(payload) + b"\x01\x00\x00\x00", b"\x00", b"\x11\x01"]
    for bad in bad_inputs:
        with pytest.raises(CorruptFileError):
            codecs.mask.decode("ans-classes", {}, memoryview(bad), m.shape, CTX)
    with pytest.raises(CorruptFileError):
        codecs.mask.decode("ans-classes", {}, memoryview(bytes(payload)), (20,), CTX)
    levels = rng.integers(-5, 6, size=int(m.sum()))
    rows = levels_ctx.row_counts(m.shape, m)
    lp = levels_ctx.encode(levels, rows)
    for bad in (lp[:2], lp[:-4], lp + b"\x01\x00\x00\x00", b"\x01"):
        with pytest.raises(CorruptFileError):
            codecs.levels.decode("ans-rowclass", {}, memoryview(bad), levels.size, CTX, rows)
    with pytest.raises(CorruptFileError):
        codecs.levels.decode("ans-rowclass", {}, memoryview(lp), levels.size + 1, CTX, rows)


def test_compressor_with_calibration_statistics_uses_optq():
    rng = np.random.default_rng(8)
    x = rng.normal(size=(3000, 100)) @ rng.normal(size=(100, 100)) * 0.3
    sd = {"fc.weight": laplace((64, 100), 9)}
    stats = {"fc.weight": LayerStats.from_inputs(x)}
    plain = nncodec.load(nncodec.save(sd, compressor=make_compressor(rel_error=0.5)), framework="np")["fc.weight"]
    optq = nncodec.load(nncodec.save(sd, compressor=make_compressor(rel_error=0.5, statistics=stats)),
                        framework="np")["fc.weight"]

    def output_error(w_hat):
        return np.mean(((x - x.mean(0)) @ (sd["fc.weight"] - w_hat).T) ** 2)

    assert output_error(optq) < 0.7 * output_error(plain)
