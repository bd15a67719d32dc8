"""The `pip` component: quantization in logit space, its codec round trip, the derived mask, and
malformed input (probabilities outside [0, 1] or NaN, a threshold that disagrees with the survivors)."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nncodec
from nncodec import BadArgumentError, CorruptFileError, FormatError, NNCodecError
from nncodec.codecs import pip as pipc
from nncodec.codecs.base import DecodeContext, EncodeOptions
from nncodec.compress import quantize_uniform
from nncodec.container.reader import Container
from nncodec.container.writer import assemble
from nncodec.dtypes import DTYPES


def pip_tensor(seed: int = 0, shape: tuple[int, ...] = (12, 20)) -> tuple[nncodec.QuantTensor, np.ndarray]:
    rng = np.random.default_rng(seed)
    phi = 1 / (1 + np.exp(-rng.normal(0, 6, shape)))
    mask = phi > 0.5
    w = (rng.normal(0, 0.1, shape) * mask).astype(np.float32)
    q = quantize_uniform(w, DTYPES["float32"], np.float32(0.01), mask=mask)
    return replace(q, pip=pipc.quantize_pip(phi, mask)), phi


@settings(max_examples=60, deadline=None)
@given(bits=st.integers(1, 8), limit=st.integers(1, 32), n=st.integers(0, 300), seed=st.integers(0, 2**32 - 1),
       prefer=st.sampled_from(["size", "balanced", "speed"]))
def test_pip_codec_round_trip(bits, limit, n, seed, prefer):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 1 << bits, n).astype(np.int64)
    if n and rng.random() < 0.3:
        codes[:] = codes[0]  # constant codes: a one-symbol table
    p = pipc.Pip(codes, bits, limit, int(rng.integers(0, (1 << bits) + 1)))
    enc = pipc.encode(p, EncodeOptions(prefer=prefer))
    back = pipc.decode(enc.codec, enc.params, memoryview(enc.payload), n, DecodeContext())
    assert np.array_equal(back.codes, codes) and (back.bits, back.limit, back.threshold) == (bits, limit, p.threshold)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), bits=st.integers(1, 8), tau=st.floats(0.05, 0.95))
def test_quantize_pip_keeps_the_mask_and_the_probabilities(seed, bits, tau):
    rng = np.random.default_rng(seed)
    phi = 1 / (1 + np.exp(-rng.normal(0, 5, 200)))
    mask = phi > tau
    p = pipc.quantize_pip(phi, mask, bits=bits, limit=8, threshold=tau)
    assert np.array_equal(p.mask((200,)), mask)
    # away from the threshold every code is the nearest in logit (within half a grid step)
    logit = np.clip(np.log(phi / (1 - phi)), -8, 8)
    got = np.log(p.probabilities() / (1 - p.probabilities()))
    half = 8.0 / ((1 << bits) - 1) + 1e-3
    far = np.abs(np.log(phi / (1 - phi)) - np.log(tau / (1 - tau))) > 4 * half  # no nudge across the threshold
    assert np.all(np.abs(got - logit)[far] <= half)


def test_file_round_trip_derives_the_mask_from_the_pips():
    q, phi = pip_tensor()
    plain = replace(q, pip=None)
    data = nncodec.save({"w": q, "v": plain})
    with nncodec.open(data, framework="np") as f:
        comp = f.components("w")
        assert np.array_equal(comp.mask, phi > 0.5) and comp.pip is not None
        assert np.array_equal(f.get_tensor("w"), f.get_tensor("v"))
        assert np.abs(f.get_pip("w") - phi).max() < 0.27  # 4 bits over logits [-8, 8]
        assert f.get_pip("v") is None
        report = f.info()
    w = report["tensors"][0]
    assert [c["kind"] for c in w["components"]] == ["levels", "quantizer", "pip"]  # no mask part
    assert w["pip_bytes"] == w["components"][2]["bytes"] > 0


@pytest.mark.parametrize("bad", [np.nan, -0.1, 1.5, np.inf])
def test_probabilities_outside_unit_interval_or_nan_are_refused_at_write(bad):
    phi = np.full(10, 0.7)
    phi[3] = bad
    with pytest.raises(BadArgumentError):
        pipc.quantize_pip(phi, phi > 0.5)


def test_writer_refuses_a_pip_that_disagrees_with_the_mask():
    q, _ = pip_tensor()
    wrong = replace(q, pip=replace(q.pip, threshold=q.pip.threshold + 1))
    with pytest.raises(BadArgumentError, match="disagrees"):
        nncodec.save({"w": wrong})


def _parts(data: bytes) -> tuple[dict, list[bytes]]:
    with Container(data) as c:
        body = {k: v for k, v in c.header.items() if k not in ("sections", "align")}
        return copy.deepcopy(body), [c.read_section(s.index) for s in c.sections]


def _decode_all(data: bytes) -> None:
    with nncodec.open(data, framework="np") as f:
        f.info()
        for name in f:
            f.get_tensor(name)
            f.get_pip(name)


def _edited(edit) -> bytes:
    q, _ = pip_tensor()
    body, sections = _parts(nncodec.save({"w": q}))
    edit(body["tensors"]["w"], sections)
    return assemble(body, sections)


@pytest.mark.parametrize("edit, exc", [
    (lambda e, s: e["pip"]["p"].update(t=e["pip"]["p"]["t"] + 1), CorruptFileError),  # threshold vs survivors
    (lambda e, s: e["pip"]["p"].update(t=e["pip"]["p"]["t"] - 2), CorruptFileError),
    (lambda e, s: e["pip"]["p"].update(t=17), CorruptFileError),  # past 2**bits
    (lambda e, s: e["pip"]["p"].update(bits=0), CorruptFileError),
    (lambda e, s: e["pip"]["p"].update(bits=9), CorruptFileError),
    (lambda e, s: e["pip"]["p"].update(limit=0), CorruptFileError),
    (lambda e, s: e["pip"]["p"].update(limit=1.5), CorruptFileError),
    (lambda e, s: e["pip"]["p"].pop("t"), CorruptFileError),
    (lambda e, s: e["pip"].update(codec="gzip"), nncodec.UnsupportedVersionError),
    (lambda e, s: e.update(mask=copy.deepcopy(e["pip"])), FormatError),  # a mask besides the pip
])
def test_malformed_pip_entries(edit, exc):
    with pytest.raises(NNCodecError) as info:
        _decode_all(_edited(edit))
    assert isinstance(info.value, exc), f"{type(info.value).__name__}: {info.value}"


def test_codes_beyond_the_grid_are_corrupt():
    """A count table over more than 2**bits symbols (a code outside the grid: no probability)."""
    q, _ = pip_tensor()
    big = replace(q.pip, codes=np.where(q.pip.codes > 7, q.pip.codes + 16, q.pip.codes))
    payload = pipc.ans.encode_with_table(big.codes)
    with pytest.raises(CorruptFileError):
        pipc.decode("ans", {"bits": 4, "limit": 8, "t": 8}, memoryview(payload), big.codes.size, DecodeContext())
    raw = pipc.zstd.compress(np.full(q.pip.codes.size, 200, np.uint8).tobytes())
    with pytest.raises(CorruptFileError):
        pipc.decode("zstd", {"bits": 4, "limit": 8, "t": 8}, memoryview(raw), q.pip.codes.size, DecodeContext())


@settings(max_examples=300, deadline=None)
@given(codec=st.sampled_from(["ans", "zstd"]), bits=st.integers(-1, 10), limit=st.integers(-1, 40),
       t=st.integers(-2, 300), n=st.integers(0, 500), payload=st.binary(max_size=200))
def test_arbitrary_pip_payloads_raise_only_nncodec_errors(codec, bits, limit, t, n, payload):
    try:
        p = pipc.decode(codec, {"bits": bits, "limit": limit, "t": t}, memoryview(payload), n, DecodeContext())
    except NNCodecError:
        return
    assert p.codes.size == n and (p.codes.size == 0 or 0 <= p.codes.min() <= p.codes.max() < p.levels)
