"""Building VAE files directly from components (no training): fast fixtures for the VAE tests."""

from __future__ import annotations

import numpy as np
from script_modules import load_script

from nncodec.compress.lossless import lossless
from nncodec.compress.uniform import quantize_uniform
from nncodec.container.reader import Container
from nncodec.container.writer import assemble
from nncodec.dtypes import DTYPES
from nncodec.tensorwriter import encode_file
from nncodec.vae_components import DecoderSpec, Latents, VaeGroup, VaeSet, VaeTensor

F32 = DTYPES["float32"]


def make_decoder(rng: np.random.Generator, latent: int, hidden: int, chunk: int, act: str = "relu") -> DecoderSpec:
    w = {"l0.weight": rng.normal(0, 1, (hidden, latent)), "l0.bias": rng.normal(0, 0.1, hidden),
         "l1.weight": rng.normal(0, 0.1, (chunk, hidden)), "l1.bias": rng.normal(0, 0.1, chunk)}
    weights = {k: lossless(v.astype(np.float32), F32) for k, v in w.items()}
    return DecoderSpec(chunk, latent, (("linear", "l0.weight", "l0.bias"), (act,), ("linear", "l1.weight", "l1.bias")),
                       weights)


def make_collection(seed: int = 0, models: tuple[str, ...] = ("a", "b", "c"), shapes=((6, 5), (6,)),
                    latent: int = 3, hidden: int = 4, chunk: int = 8, residual: bool = True, act: str = "relu"):
    """(file bytes, {model: {tensor: reference float32 values decoded by a naive float64 loop}})."""
    rng = np.random.default_rng(seed)
    dec = make_decoder(rng, latent, hidden, chunk, act)
    total = sum(int(np.prod(s)) for s in shapes)
    chunks = -(-total // chunk)
    groups, tensors, want = [], {}, {}
    for g, m in enumerate(models):
        levels = rng.integers(-20, 21, (chunks, latent))
        lat = Latents(levels, 0.125)
        groups.append(VaeGroup(m, 0, lat))
        flat = reference_decoder(dec, lat.values()).reshape(-1)
        start = 0
        want[m] = {}
        for i, s in enumerate(shapes):
            n = int(np.prod(s))
            d = flat[start : start + n].reshape(s)
            start += n
            res = None
            if residual:
                r = rng.normal(0, 0.05, s)
                res = quantize_uniform(r, F32, np.float32(0.01))
                d = d + res.levels.reshape(s).astype(np.float32) * np.float32(0.01)
            tensors[f"{m}/t{i}"] = VaeTensor(F32, tuple(s), g, res)
            want[m][f"t{i}"] = d.astype(np.float32)
        tensors[f"{m}/count"] = lossless(np.array([g], dtype=np.int64), DTYPES["int64"])
        want[m]["count"] = np.array([g], dtype=np.int64)
    data = encode_file(tensors, vae=VaeSet((dec,), tuple(groups)))
    return data, want


def reference_decoder(dec: DecoderSpec, z: np.ndarray) -> np.ndarray:
    """An independent decoder: the spec generator's exact-sum reference (spec/make_vectors.py), per row."""
    w = {k: t.words.view(np.float32).reshape(t.shape).astype(np.float64) for k, t in dec.weights.items()}
    out = [make_vectors_module().reference_forward(dec.layers, w, list(row)) for row in np.asarray(z, dtype=np.float64)]
    return np.array(out, dtype=np.float64).astype(np.float32)


def make_vectors_module():
    """spec/make_vectors.py as a module (it is a script, not part of the package); loaded once."""
    return load_script("spec/make_vectors.py")


def rewrite(data: bytes, edit) -> bytes:
    """The file with its header object changed by `edit(header)` (sections kept, CRCs recomputed)."""
    c = Container(data)
    header = {k: v for k, v in c.header.items() if k not in ("sections", "align")}
    payloads = [c.read_section(s.index) for s in c.sections]
    edit(header)
    return assemble(header, payloads)
