"""VAE golden vectors (spec §19.8): decoded within the §19.4 tolerance of the reference decoding,
identical bytes when encoded again, and a tolerance check that can fail."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pytest
from vae_helpers import make_vectors_module

ROOT = Path(__file__).resolve().parent.parent
VAE_DIR = ROOT / "spec" / "vectors" / "vae"
MANIFEST = json.loads((VAE_DIR / "manifest.json").read_text(encoding="utf-8"))
ENTRIES = {e["file"]: e for e in MANIFEST["vectors"]}

mv = make_vectors_module()


def test_every_vae_vector_is_listed():
    assert {p.name for p in VAE_DIR.glob("*.nnc")} == set(ENTRIES) == {f"{m()[0]}.nnc" for m in mv.VAE_VECTORS}


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_vae_vector_decodes_within_tolerance(name):
    data = (VAE_DIR / name).read_bytes()
    assert hashlib.sha256(data).hexdigest() == ENTRIES[name]["sha256"]
    mv.check_vae_tolerance(data, ENTRIES[name]["tensors"])


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_vae_vector_tolerance_check_can_fail(name):
    data = (VAE_DIR / name).read_bytes()
    tensors = copy.deepcopy(ENTRIES[name]["tensors"])
    victim = next(t for t in tensors.values() if t.get("reference"))
    words = victim["reference"].split()
    words[0] = f"{int(words[0], 16) ^ 0x00400000:08x}"  # a mantissa bit high up: far beyond the tolerance
    victim["reference"] = " ".join(words)
    with pytest.raises(AssertionError):
        mv.check_vae_tolerance(data, tensors)


@pytest.mark.parametrize("make", mv.VAE_VECTORS, ids=lambda m: m.__name__)
def test_vae_vector_encodes_to_identical_bytes(make):
    from nncodec.tensorwriter import encode_file

    name, _, tensors, vae = make()
    assert encode_file(tensors, vae=vae) == (VAE_DIR / f"{name}.nnc").read_bytes()


def test_vae_vectors_cover_section_18():
    import nncodec

    layers, dtypes, masked, quantized_decoder, empty = set(), set(), False, False, False
    for name in ENTRIES:
        with nncodec.open((VAE_DIR / name).read_bytes()) as f:
            rep = f.info()
        for d in rep["vae"]["decoders"]:
            layers |= {layer[0] for layer in d["layers"]}
            quantized_decoder |= any(c["kind"] == "levels" for c in d["components"])
        for t in rep["tensors"]:
            if t.get("encoding", "").startswith("vae"):
                dtypes.add(t["dtype"])
                masked |= any(c["kind"] == "mask" for c in t["components"])
                empty |= t["numel"] == 0
    assert layers == {"linear", "relu", "tanh"} and dtypes == {"float32", "bfloat16"}
    assert masked and quantized_decoder and empty
    assert any(len(rep["vae"]["groups"]) > 1 for _ in [0])
