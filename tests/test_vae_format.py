"""The `latent` and `decoder` components and the `vae` header member (spec §19): round trips,
the decoder's float tolerance, lazy collections, byte accounting, malformed input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vae_helpers import F32, make_collection, make_decoder, reference_decoder, rewrite

import nncodec
from nncodec.codecs import decoder as decoder_codec
from nncodec.codecs import latent as latent_codec
from nncodec.codecs.base import DEFAULT_OPTIONS, DecodeContext
from nncodec.errors import BadArgumentError, CorruptFileError, FormatError, LimitExceededError, UnsupportedVersionError
from nncodec.tensorfile_vae import VaeIndex
from nncodec.tensorwriter import encode_file
from nncodec.vae_components import Latents, VaeGroup, VaeSet, VaeTensor

CTX = DecodeContext()


def tolerance(ref: np.ndarray) -> float:
    """Spec §19.4: |decoded - reference| <= 2**-20 x max |reference| over the tensor."""
    return 2.0**-20 * float(np.abs(ref).max(initial=0.0))


# ------------------------------------------------------------------------------------ latent codec


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-300, 300), max_size=200), st.sampled_from([0, -(2**31) + 300, 2**31 - 301]),
       st.floats(1e-6, 1e3, allow_nan=False))
def test_latent_round_trip(values, offset, step):
    levels = np.array(values, dtype=np.int64) + offset  # the whole int32 range, within the alphabet limit
    enc = latent_codec.encode(levels, step, DEFAULT_OPTIONS)
    got, got_step = latent_codec.decode(enc.codec, enc.params, memoryview(enc.payload), levels.size, CTX)
    assert np.array_equal(got, levels)
    assert got_step == float(np.float32(step))


def test_latent_refuses_bad_payloads():
    enc = latent_codec.encode(np.arange(10), 0.5, DEFAULT_OPTIONS)
    with pytest.raises(CorruptFileError):
        latent_codec.decode("ans", {}, memoryview(enc.payload[:3]), 10, CTX)
    with pytest.raises(CorruptFileError):  # step 0
        latent_codec.decode("ans", {}, memoryview(b"\0\0\0\0" + enc.payload[4:]), 10, CTX)
    with pytest.raises(CorruptFileError):
        latent_codec.decode("ans", {}, memoryview(enc.payload + b"\1\0\0\0"), 10, CTX)
    with pytest.raises(UnsupportedVersionError):
        latent_codec.decode("gauss", {}, memoryview(enc.payload), 10, CTX)
    with pytest.raises(BadArgumentError):
        latent_codec.encode(np.arange(3), 0.0, DEFAULT_OPTIONS)


# ------------------------------------------------------------------------------- decoder + files


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 4), st.integers(1, 6), st.integers(1, 9), st.sampled_from(["relu", "tanh"]),
       st.lists(st.lists(st.integers(0, 5), min_size=0, max_size=3), min_size=1, max_size=3), st.booleans())
def test_vae_file_round_trip(seed, latent, hidden, chunk, act, shapes, residual):
    """decode(encode(x)) == x up to the spec's decoder tolerance, for arbitrary shapes (0-size, scalars)."""
    shapes = [tuple(s) for s in shapes]
    data, want = make_collection(seed, ("a", "b"), shapes, latent, hidden, chunk, residual, act)
    with nncodec.open(data, framework="np") as f:
        for m, tensors in want.items():
            for name, ref in tensors.items():
                got = f.get_tensor(f"{m}/{name}")
                assert got.shape == ref.shape and got.dtype == ref.dtype
                assert np.abs(got.astype(np.float64) - ref).max(initial=0) <= tolerance(ref)
        assert f.info()["file_bytes"] == len(data)


def test_decoder_output_within_tolerance_of_an_independent_decoder():
    rng = np.random.default_rng(3)
    dec = make_decoder(rng, 16, 64, 512, "tanh")
    z = Latents(rng.integers(-40, 41, (5, 16)), 0.0625).values()
    arch = decoder_codec.Arch(dec.chunk, dec.latent, dec.layers)
    weights = {k: t.words.view(np.float32).reshape(t.shape) for k, t in dec.weights.items()}
    got = decoder_codec.run(arch, weights, z)
    ref = reference_decoder(dec, z)
    assert got.dtype == np.float32 and got.shape == (5, 512)
    assert np.abs(got.astype(np.float64) - ref).max() <= tolerance(ref)
    # and the float32 path that a careless decoder might take is not what the spec asks for
    assert np.abs(got - ref).max() <= np.spacing(np.abs(ref)).max()


def test_collection_decodes_each_model_alone(monkeypatch):
    data, want = make_collection(1, ("a", "b", "c"))
    decoded_groups = []
    real = VaeIndex.latents

    def spy(self, g):
        decoded_groups.append(g)
        return real(self, g)

    monkeypatch.setattr(VaeIndex, "latents", spy)
    with nncodec.open(data, framework="np") as f:
        assert nncodec.model_names(f) == ["a", "b", "c"]
        b = nncodec.collection.get_model(f, "b")
    assert decoded_groups == [1]  # only b's latents (plus the shared decoder)
    assert set(b) == {"t0", "t1", "count"}
    for name, ref in want["b"].items():
        assert np.abs(b[name].astype(np.float64) - ref).max(initial=0) <= tolerance(ref)
    assert list(nncodec.load_model(data, "c", framework="np")["count"]) == [2]
    with pytest.raises(BadArgumentError, match="models: a, b, c"):
        nncodec.load_model(data, "zz")


def test_info_counts_every_byte():
    data, _ = make_collection(2)
    with nncodec.open(data) as f:
        rep = f.info()
    v = rep["vae"]
    tensor_bytes = sum(t["bytes"] for t in rep["tensors"])
    assert v["decoder_bytes"] > 0 and v["latent_bytes"] > 0 and v["residual_bytes"] > 0
    assert (rep["preamble_bytes"] + rep["header_bytes"] + rep["padding_bytes"] + rep["optional_section_bytes"]
            + tensor_bytes + v["decoder_bytes"] + v["latent_bytes"]) == len(data)
    assert [g["model"] for g in v["groups"]] == ["a", "b", "c"]


def test_writer_refuses_inconsistent_sets():
    rng = np.random.default_rng(0)
    dec = make_decoder(rng, 2, 3, 4)
    with pytest.raises(BadArgumentError):  # latents for 2 chunks, tensor needs 1
        encode_file({"t": VaeTensor(F32, (3,), 0)}, vae=VaeSet((dec,), (VaeGroup("", 0, Latents(np.zeros((2, 2), np.int64), 1.0)),)))
    with pytest.raises(BadArgumentError):
        encode_file({"t": VaeTensor(F32, (3,), 1)}, vae=VaeSet((dec,), (VaeGroup("", 0, Latents(np.zeros((1, 2), np.int64), 1.0)),)))


# ---------------------------------------------------------------------------------- malformed


def _open(data: bytes):
    with nncodec.open(data, framework="np") as f:
        for name in f.keys():
            f.get_tensor(name)


def test_decoder_output_size_disagreeing_with_chunk_is_refused():
    data, _ = make_collection(4)

    def edit(h):
        h["vae"]["decoders"][0]["chunk"] = 9  # the last layer still outputs 8
    with pytest.raises(FormatError, match="output size 8 differs from the chunk size 9"):
        _open(rewrite(data, edit))


def test_group_chunks_disagreeing_with_tensors_are_refused():
    data, _ = make_collection(4)

    def edit(h):
        h["vae"]["groups"][1]["chunks"] += 1
    with pytest.raises(FormatError, match="need 5 chunks"):
        _open(rewrite(data, edit))


def test_a_tensor_that_leaves_its_group_is_refused():
    data, _ = make_collection(4)

    def edit(h):
        h["tensors"]["a/t1"]["vae"] = 1  # a's group now holds fewer values than its chunks
    with pytest.raises(FormatError, match="chunks"):
        _open(rewrite(data, edit))


def test_missing_latents_are_refused():
    data, _ = make_collection(4)

    def drop_latent(h):
        del h["vae"]["groups"][0]["latent"]
    with pytest.raises(FormatError, match="latent"):
        _open(rewrite(data, drop_latent))

    def drop_group(h):
        h["vae"]["groups"].pop()
    with pytest.raises(FormatError, match="no vae group 2"):
        _open(rewrite(data, drop_group))

    def drop_vae(h):
        del h["vae"]
    with pytest.raises(FormatError, match="no vae member"):
        _open(rewrite(data, drop_vae))

    with pytest.raises(CorruptFileError):  # latent payload cut short (CRC recomputed by rewrite)
        c = nncodec.container.reader.Container(data)
        idx = c.header["vae"]["groups"][0]["latent"]["s"]
        from nncodec.container.writer import assemble
        payloads = [c.read_section(s.index) for s in c.sections]
        payloads[idx] = payloads[idx][:-4]
        header = {k: v for k, v in c.header.items() if k != "sections"}
        _open(assemble(header, payloads))


@pytest.mark.parametrize("edit, error", [
    (lambda h: h["vae"]["decoders"][0].update(chunk=2**40), LimitExceededError),
    (lambda h: h["vae"]["decoders"][0].update(latent=2**30), LimitExceededError),
    (lambda h: h["vae"]["decoders"][0].update(layers=[["relu"]] * 1000), LimitExceededError),
    (lambda h: h["vae"]["decoders"][0]["tensors"]["l0.weight"].update(shape=[2**20, 3]), LimitExceededError),
    (lambda h: h["vae"]["decoders"][0]["tensors"]["l0.weight"].update(shape=[2**40, 2**40]), LimitExceededError),
    (lambda h: h["vae"]["decoders"][0]["tensors"]["l1.weight"].update(shape=[8, 2**16]), FormatError),
    (lambda h: h["vae"]["decoders"][0]["layers"].append(["softmax"]), UnsupportedVersionError),
    (lambda h: h["vae"]["decoders"][0]["layers"].__setitem__(1, ["eval", "x"]), FormatError),
    (lambda h: h["vae"]["decoders"][0]["layers"].pop(0), FormatError),
    (lambda h: h["vae"]["decoders"][0].update(layers=[]), FormatError),
    (lambda h: h["vae"].update(x=1), UnsupportedVersionError),
    (lambda h: h["vae"]["groups"][0].update(decoder=3), FormatError),
    (lambda h: h["vae"]["decoders"][0]["tensors"]["l0.bias"].update(vae=0), FormatError),
    (lambda h: h["tensors"]["a/t0"].update(dtype="int32"), FormatError),
])
def test_malformed_vae_headers_are_refused(edit, error):
    data, _ = make_collection(5)
    with pytest.raises(error):
        _open(rewrite(data, edit))


def test_decoder_weights_count_in_the_decoded_size_limit():
    data, _ = make_collection(6)
    small = nncodec.Limits(max_total_decoded_bytes=500)  # the tensors fit, tensors + decoder weights do not
    with pytest.raises(LimitExceededError, match="total decoded size"):
        nncodec.open(data, limits=small)


# make_collection(6): latent 3 -> 4 (relu) -> 8 = chunk, 2 linear layers (3 layers), 44 multiply-adds
# per chunk, 5 chunks per group. Each limit is set one below what the file needs, then at it.
@pytest.mark.parametrize("field, need, message", [
    ("max_vae_chunk", 8, "chunk"),
    ("max_vae_latent", 3, "latent"),
    ("max_vae_width", 8, "units"),
    ("max_vae_layers", 3, "number of layers"),
    ("max_vae_work", 5 * 44, "multiply-adds"),
])
def test_decoder_sizes_are_refused_by_the_readers_limits_before_any_section_is_read(monkeypatch, field, need, message):
    """The decoder's size limits are `nncodec.Limits` fields (spec §11): a reader refuses a decoder
    over them on open, from the header alone: no section payload is read, nothing is decoded."""
    data, _ = make_collection(6)
    reads = []
    monkeypatch.setattr(nncodec.tensorfile.TensorFile, "_payload", lambda self, part: reads.append(part))
    with pytest.raises(LimitExceededError, match=message):
        nncodec.open(data, limits=nncodec.Limits(**{field: need - 1}))
    assert reads == []
    monkeypatch.undo()
    with nncodec.open(data, limits=nncodec.Limits(**{field: need}), framework="np") as f:
        assert f.get_tensor("a/t0").shape == (6, 5)


def test_absurd_layer_sizes_in_a_header_are_refused_before_allocation():
    """A header that declares a 2^16 x 2^16 decoder layer over a tiny file: refused by the default
    limits before the 32 GiB of float64 weights (or the outputs) are allocated."""
    data, _ = make_collection(6)

    def huge(h):
        d = h["vae"]["decoders"][0]
        d["tensors"]["l0.weight"]["shape"] = [2**17, 3]
        d["tensors"]["l0.bias"]["shape"] = [2**17]
    with pytest.raises(LimitExceededError, match="layer 0: units is 131072"):
        nncodec.open(rewrite(data, huge))


def test_non_finite_decoder_weights_are_refused():
    rng = np.random.default_rng(0)
    dec = make_decoder(rng, 2, 3, 4)
    bad = dict(dec.weights)
    from nncodec.compress.lossless import lossless
    bad["l0.bias"] = lossless(np.array([np.nan, 0, 0], np.float32), F32)
    dec = type(dec)(dec.chunk, dec.latent, dec.layers, bad)
    data = encode_file({"t": VaeTensor(F32, (4,), 0)}, vae=VaeSet((dec,), (VaeGroup("", 0, Latents(np.zeros((1, 2), np.int64), 1.0)),)))
    with pytest.raises(CorruptFileError, match="non-finite"):
        _open(data)
