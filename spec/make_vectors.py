"""Golden test vectors for the .nnc format 2.0 (spec/FORMAT.md): small files, fixed inputs, known outputs.

    python spec/make_vectors.py            # write spec/vectors/*.nnc and manifest.json (refuses to change a vector)
    python spec/make_vectors.py --check    # only compare: exit 1 if any vector or manifest entry would differ
    python spec/make_vectors.py --force    # rewrite vectors whose bytes changed (their decoded sha256 must not!)

Every input is built from numpy's default_rng with a fixed seed or from literal values, so the
inputs never change. The manifest records, per file, its sha256 and, per tensor, the sha256 of the
decoded tensor's little-endian bytes (bool: one byte 0/1; bfloat16: its uint16 words). Decoding a
vector must always give those hashes; encoding the same inputs with the same settings gives the same
file bytes for a given nncodec, libzstd and constriction version (recorded as `generator`).

tests/test_vectors.py imports this module (`VECTORS`, `encode_vector`, `decoded_entries`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import nncodec
from nncodec.components import Quantizer, QuantTensor, RawTensor
from nncodec.compress import quantize_uniform
from nncodec.dtypes import DTYPES
from nncodec.tensorfile import open_tensor_file

HERE = Path(__file__).resolve().parent
VECTOR_DIR = HERE / "vectors"
MANIFEST = VECTOR_DIR / "manifest.json"


@dataclass(frozen=True)
class Vector:
    """One golden file: its inputs and the settings they are encoded with."""

    name: str
    description: str
    tensors: dict[str, Any]  # numpy arrays, torch tensors, RawTensor or QuantTensor (compressor output)
    metadata: dict[str, str] | None = None
    prefer: str = "balanced"
    align: int = 1
    inputs: dict[str, str] = field(default_factory=dict)  # per-tensor description of how it was made
    chunk_bytes: int | None = None  # raw tensors larger than this are chunked (§23); None: the default


def _bf16_words(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 words, round to nearest even (finite inputs only)."""
    bits = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def _bf16_tensor(words: np.ndarray) -> Any:
    """A torch bfloat16 tensor with exactly these words (what users pass in)."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(words).view(np.int16)).view(torch.bfloat16)


def _bits(words: list[int], dtype: str, storage: str) -> np.ndarray:
    return np.array(words, dtype=storage).view(dtype)


# ------------------------------------------------------------------------------------------ vectors


def fp32_lossless() -> Vector:
    rng = np.random.default_rng(1001)
    w = (rng.standard_normal((24, 32)) * 0.08).astype(np.float32)
    b = (rng.standard_normal(32) * 0.01).astype(np.float32)
    return Vector("fp32_lossless", "lossless float32 weights shaped like a trained layer (default settings)",
                  {"fc.weight": w, "fc.bias": b},
                  inputs={"fc.weight": "default_rng(1001).standard_normal((24, 32)) * 0.08 as float32",
                          "fc.bias": "then .standard_normal(32) * 0.01 as float32"})


def bf16_lossless() -> Vector:
    rng = np.random.default_rng(1002)
    w = _bf16_words((rng.standard_normal((32, 32)) * 0.05).astype(np.float32))
    return Vector("bf16_lossless", "lossless bfloat16 weights (prefer='size')",
                  {"attn.weight": _bf16_tensor(w)}, prefer="size",
                  inputs={"attn.weight": "default_rng(1002).standard_normal((32, 32)) * 0.05 as float32, "
                                         "rounded to bfloat16 (nearest, ties to even), as a torch.bfloat16 tensor"})


def fp64_fp16_lossless() -> Vector:
    rng = np.random.default_rng(1013)
    d = rng.standard_normal((16, 16)) * 0.05
    h = (rng.standard_normal((16, 16)) * 0.05).astype(np.float16)
    return Vector("fp64_fp16_lossless", "lossless float64 (11-bit exponent stream of 16-bit symbols) and float16 "
                  "(prefer='size')", {"d": d, "h": h}, prefer="size",
                  inputs={"d": "default_rng(1013).standard_normal((16, 16)) * 0.05 (float64)",
                          "h": "then .standard_normal((16, 16)) * 0.05 as float16"})


def int64_lossless() -> Vector:
    rng = np.random.default_rng(1003)
    counts = rng.integers(0, 5000, 300).astype(np.int64)
    extremes = np.array([-(2**63), 2**63 - 1, 0, -1, 1, 2**32, -(2**32), 255, 256], dtype=np.int64)
    return Vector("int64_lossless", "lossless int64: small non-negative values and the extremes of the type",
                  {"num_batches_tracked": counts, "extremes": extremes},
                  inputs={"num_batches_tracked": "default_rng(1003).integers(0, 5000, 300) as int64",
                          "extremes": "literal [-2**63, 2**63-1, 0, -1, 1, 2**32, -2**32, 255, 256]"})


def empty_and_scalar() -> Vector:
    return Vector("empty_and_scalar", "0-size tensors and 0-d scalars of several dtypes",
                  {"empty_f32": np.zeros((0, 5), dtype=np.float32),
                   "empty_i64": np.zeros((3, 0, 2), dtype=np.int64),
                   "scalar_f64": np.array(np.pi, dtype=np.float64),
                   "scalar_i32": np.array(-7, dtype=np.int32),
                   "scalar_bool": np.array(True),
                   "one_f16": np.array([1.5], dtype=np.float16)},
                  inputs={"empty_f32": "zeros((0, 5)) float32", "empty_i64": "zeros((3, 0, 2)) int64",
                          "scalar_f64": "float64 pi, shape ()", "scalar_i32": "int32 -7, shape ()",
                          "scalar_bool": "bool True, shape ()", "one_f16": "float16 [1.5]"})


def masked_quant() -> Vector:
    rng = np.random.default_rng(1005)
    w = (rng.standard_normal((16, 40)) * 0.1).astype(np.float32)
    density = np.linspace(0.05, 0.9, 16)
    thresh = np.array([np.quantile(np.abs(r), 1 - d) for r, d in zip(w, density, strict=True)], dtype=np.float32)
    mask = np.abs(w) >= thresh[:, None]
    steps = (np.abs(w).max(axis=1) / 15).astype(np.float32)
    fc = quantize_uniform(w, DTYPES["float32"], steps, axis=0, mask=mask)

    conv = (rng.standard_normal((8, 3, 3, 3)) * 0.2).astype(np.float32)
    conv_steps = (np.abs(conv).reshape(8, -1).max(axis=1) / 7).astype(np.float32)
    conv_q = quantize_uniform(conv, DTYPES["float16"], conv_steps, axis=0)

    emb = (rng.standard_normal((10, 6)) * 0.3).astype(np.float32)
    emb_mask = rng.random((10, 6)) < 0.5
    emb_q = quantize_uniform(emb, DTYPES["bfloat16"], np.float32(0.02), mask=emb_mask)

    cols = (rng.standard_normal((6, 12)) * 0.1).astype(np.float32)
    cols_q = quantize_uniform(cols, DTYPES["float64"], (np.arange(1, 13) * 0.004).astype(np.float32), axis=1)

    pruned = quantize_uniform(np.ones((4, 5), np.float32), DTYPES["float32"], np.float32(0.5),
                              mask=np.zeros((4, 5), dtype=bool))
    dense_mask = quantize_uniform(np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4), DTYPES["float32"],
                                  np.float32(0.25), mask=np.ones((3, 4), dtype=bool))
    return Vector("masked_quant", "masked + uniformly quantized tensors: per-channel steps on axis 0 and 1, "
                  "per-tensor step, float32/float16/bfloat16/float64 outputs, sparsity 1 and 0",
                  {"fc.weight": fc, "conv.weight": conv_q, "emb.weight": emb_q, "cols.weight": cols_q,
                   "pruned.weight": pruned, "dense.weight": dense_mask},
                  inputs={"fc.weight": "default_rng(1005).standard_normal((16, 40)) * 0.1; row r keeps the "
                                       "linspace(0.05, 0.9, 16)[r] largest-magnitude fraction (>= quantile); "
                                       "steps = row max |w| / 15 (axis 0); quantize_uniform to float32",
                          "conv.weight": "then .standard_normal((8, 3, 3, 3)) * 0.2; steps = channel max |w| / 7 "
                                         "(axis 0); no mask; output dtype float16",
                          "emb.weight": "then .standard_normal((10, 6)) * 0.3, mask = .random((10, 6)) < 0.5; "
                                        "step 0.02 per tensor; output dtype bfloat16",
                          "cols.weight": "then .standard_normal((6, 12)) * 0.1; steps (1..12) * 0.004 on axis 1; "
                                         "output dtype float64",
                          "pruned.weight": "ones((4, 5)) with an all-False mask (sparsity 1)",
                          "dense.weight": "linspace(-1, 1, 12).reshape(3, 4), step 0.25, all-True mask"})


def metadata() -> Vector:
    meta = {"arch": "lenet-300-100", "framework": "pt", "empty": "", "ünïcödé ключ": "値 ✓ \u2028 \"quoted\"",
            "config": json.dumps({"lr": 0.001, "epochs": 3}, sort_keys=True)}
    return Vector("metadata", "a tiny tensor plus user metadata (non-ASCII keys/values, an empty value)",
                  {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}, metadata=meta,
                  inputs={"w": "arange(6).reshape(2, 3) float32"})


def special_floats() -> Vector:
    rng = np.random.default_rng(1007)
    f32 = [0x7FC00000, 0x7FA00001, 0xFFC12345, 0x7F800000, 0xFF800000, 0x80000000, 0x00000000,
           0x00000001, 0x807FFFFF, 0x7F7FFFFF, 0xFF7FFFFF, 0x3F800000]
    f16 = [0x7E00, 0x7D01, 0xFE01, 0x7C00, 0xFC00, 0x8000, 0x0000, 0x0001, 0x83FF, 0x7BFF, 0x3C00]
    bf16 = [0x7FC0, 0x7F81, 0xFFC1, 0x7F80, 0xFF80, 0x8000, 0x0000, 0x0001, 0x807F, 0x7F7F, 0x3F80]
    f64 = [0x7FF8000000000000, 0x7FF0000000000001, 0xFFF8DEADBEEF0001, 0x7FF0000000000000, 0xFFF0000000000000,
           0x8000000000000000, 0x0000000000000000, 0x0000000000000001, 0x7FEFFFFFFFFFFFFF, 0x3FF0000000000000]
    picks = {k: rng.integers(0, n, 64) for k, n in (("f32", len(f32)), ("f16", len(f16)), ("bf16", len(bf16)))}
    return Vector("special_floats", "lossless NaN payloads (quiet, signalling, negative), +-inf, -0.0, subnormals "
                  "and extremes in float32, float16, bfloat16 and float64",
                  {"f32": _bits(f32, "float32", "<u4")[picks["f32"]].reshape(8, 8),
                   "f16": _bits(f16, "float16", "<u2")[picks["f16"]],
                   "bf16": _bf16_tensor(np.array(bf16, dtype=np.uint16)[picks["bf16"]]),
                   "f64": _bits(f64, "float64", "<u8")},
                  inputs={"f32": f"words {[hex(x) for x in f32]} picked by default_rng(1007).integers(0, 12, 64), "
                                 "reshaped (8, 8)",
                          "f16": f"words {[hex(x) for x in f16]} picked by the next .integers(0, 11, 64)",
                          "bf16": f"words {[hex(x) for x in bf16]} picked by the next .integers(0, 11, 64)",
                          "f64": f"words {[hex(x) for x in f64]} in order"})


def tied_alias() -> Vector:
    rng = np.random.default_rng(1008)
    emb = (rng.standard_normal((20, 8)) * 0.1).astype(np.float32)
    bias = np.zeros(20, dtype=np.float32)
    return Vector("tied_alias", "tied weights: one array under three names is stored once, twice as an alias",
                  {"embed.weight": emb, "lm_head.weight": emb, "bias": bias, "decoder.weight": emb},
                  inputs={"embed.weight": "default_rng(1008).standard_normal((20, 8)) * 0.1 as float32",
                          "lm_head.weight": "the same array object as embed.weight",
                          "bias": "zeros(20) float32", "decoder.weight": "the same array object as embed.weight"})


def codebook() -> Vector:
    rng = np.random.default_rng(1009)
    book = np.array([-0.5, -0.25, -0.0, 0.125, 0.25, 0.5, 1.0, 3.0e-5], dtype=np.float32)
    mask = rng.random((12, 20)) < 0.5
    lv = rng.integers(0, 8, int(mask.sum())).astype(np.int64)
    a = QuantTensor(DTYPES["float16"], (12, 20), lv, Quantizer("codebook", book), mask)
    book4 = np.array([-1.0, 0.0, 0.5, 2.0], dtype=np.float32)
    lv4 = rng.choice(4, 30, p=[0.1, 0.6, 0.2, 0.1]).astype(np.int64)
    b = QuantTensor(DTYPES["float32"], (5, 6), lv4, Quantizer("codebook", book4))
    return Vector("codebook", "codebook quantizers: a masked float16 tensor (8 entries incl. -0.0) and an "
                  "unmasked float32 tensor (4 entries)", {"a": a, "b": b},
                  inputs={"a": f"codebook {book.tolist()}; mask = default_rng(1009).random((12, 20)) < 0.5; "
                               "levels = next .integers(0, 8, mask.sum())",
                          "b": f"codebook {book4.tolist()}; levels = next .choice(4, 30, p=[.1, .6, .2, .1]), "
                               "shape (5, 6), no mask"})


def bool_and_ints() -> Vector:
    rng = np.random.default_rng(1010)
    t = {"flags": rng.random((7, 9)) < 0.3}
    for dt in ("int8", "uint8", "int16", "uint16", "int32", "uint32", "uint64"):
        info = np.iinfo(dt)
        t[dt] = rng.integers(info.min, info.max, 40, dtype=dt, endpoint=True)
    t["small_i32"] = rng.integers(-3, 4, (10, 10)).astype(np.int32)
    return Vector("bool_and_ints", "lossless bool and every other integer dtype",
                  t, inputs={"flags": "default_rng(1010).random((7, 9)) < 0.3",
                             **{dt: f"then .integers(iinfo.min, iinfo.max, 40, dtype={dt}, endpoint=True)"
                                for dt in ("int8", "uint8", "int16", "uint16", "int32", "uint32", "uint64")},
                             "small_i32": "then .integers(-3, 4, (10, 10)) as int32"})


def aligned_speed() -> Vector:
    rng = np.random.default_rng(1011)
    h = (rng.standard_normal((10, 10)) * 0.5).astype(np.float16)
    d = rng.standard_normal(50) * 1e-3
    bf = _bf16_words((rng.standard_normal((16, 32)) * 0.05).astype(np.float32))
    ids = rng.integers(0, 300, 200).astype(np.int32)
    w = (rng.standard_normal((8, 64)) * 0.1).astype(np.float32)
    q = quantize_uniform(w, DTYPES["float32"], np.float32(0.01), mask=np.abs(w) > 0.12)
    return Vector("aligned_speed", "align=64 (zero padding between sections) and prefer='speed' (no ANS): "
                  "float16, float64, bfloat16, int32, all-zero float32 and a masked quantized tensor",
                  {"h": h, "d": d, "z": np.zeros(100, dtype=np.float32), "bf": _bf16_tensor(bf), "ids": ids, "q": q},
                  prefer="speed", align=64,
                  inputs={"h": "default_rng(1011).standard_normal((10, 10)) * 0.5 as float16",
                          "d": "then .standard_normal(50) * 1e-3 (float64)", "z": "zeros(100) float32",
                          "bf": "then .standard_normal((16, 32)) * 0.05 rounded to bfloat16 (nearest even)",
                          "ids": "then .integers(0, 300, 200) as int32",
                          "q": "then w = .standard_normal((8, 64)) * 0.1 as float32, mask |w| > 0.12, "
                               "step 0.01 per tensor, output float32"})


def minimal() -> Vector:
    return Vector("minimal", "one float32 scalar: the header is plain JSON (smaller than its zstd frame)",
                  {"x": np.array(1.0, dtype=np.float32)}, inputs={"x": "float32 1.0, shape ()"})


def no_tensors() -> Vector:
    return Vector("no_tensors", "no tensors and no sections, only metadata: the file ends with its header",
                  {}, metadata={"note": "no tensors"})


def many_tensors() -> Vector:
    rng = np.random.default_rng(1012)
    t: dict[str, Any] = {}
    for i in range(24):
        for part in ("attn", "mlp"):
            t[f"blocks.{i}.{part}.weight"] = (rng.standard_normal((2, 3)) * 0.1).astype(np.float32)
    return Vector("many_tensors", "48 tiny tensors: the header compresses, so it is stored as a zstd frame", t,
                  inputs={"blocks.{i}.{attn,mlp}.weight": "for i in 0..23, attn then mlp: "
                                                          "default_rng(1012).standard_normal((2, 3)) * 0.1 float32"})


def indexed_header() -> Vector:
    """§4.5: 130 tensors, so the header is indexed (binary section table and names, one JSON text
    per entry); one of them is an alias."""
    rng = np.random.default_rng(1045)
    t: dict[str, Any] = {}
    for i in range(129):
        t[f"layers.{i}.scale"] = (rng.standard_normal(2 + i % 3) * 0.1).astype(np.float16)
    t["layers.0.scale.tied"] = t["layers.0.scale"]  # the same array object: stored once, as an alias
    return Vector("indexed_header", "130 tensors (129 float16 vectors and an alias): the header is indexed (§4.5)", t,
                  inputs={"layers.{i}.scale": "for i in 0..128: default_rng(1045).standard_normal(2 + i % 3) * 0.1 "
                                              "float16", "layers.0.scale.tied": "the same array object as layers.0.scale"})


def pip_spike_slab() -> Vector:
    """§20: a spike-and-slab layer stored with its inclusion probabilities (derived mask, no mask part)."""
    from dataclasses import replace

    from nncodec.codecs.pip import quantize_pip

    rng = np.random.default_rng(1018)
    phi = 1 / (1 + np.exp(-rng.normal(-2.0, 4.0, (10, 24))))
    mask = phi > 0.5
    w = (rng.standard_normal((10, 24)) * 0.2 * mask).astype(np.float32)
    q = quantize_uniform(w, DTYPES["float32"], np.float32(0.02), mask=mask)
    fc = replace(q, pip=quantize_pip(phi, mask, bits=4, limit=8, threshold=0.5))
    small = quantize_uniform(np.array([[0.5, -0.25], [0.0, 1.0]], np.float32), DTYPES["float16"], np.float32(0.25),
                             mask=np.array([[True, True], [False, True]]))
    small = replace(small, pip=quantize_pip(np.array([0.9, 0.6, 0.1, 0.999]), small.mask.reshape(-1), bits=2, limit=4,
                                            threshold=0.5))
    return Vector("pip_spike_slab", "quantized tensors with a pip part (format 2.0 addition, FORMAT.md §20): "
                  "4-bit and 2-bit logit grids, mask derived from the codes and threshold",
                  {"fc.weight": fc, "small.weight": small},
                  inputs={"fc.weight": "phi = sigmoid(default_rng(1018).normal(-2, 4, (10, 24))), mask = phi > 0.5; "
                                       "w = .standard_normal((10, 24)) * 0.2 * mask; step 0.02; quantize_pip(bits=4, "
                                       "limit=8, threshold=0.5)",
                          "small.weight": "[[0.5, -0.25], [0, 1]] float16, step 0.25, phi [0.9, 0.6, 0.1, 0.999], "
                                          "quantize_pip(bits=2, limit=4, threshold=0.5)"})


def chunked() -> Vector:
    """§23 (format 2.1): chunked raw tensors, with chunk_bytes=1000 so that small inputs are chunked."""
    rng = np.random.default_rng(1020)
    w = (rng.standard_normal((40, 30)) * 0.05).astype(np.float32)
    wide = (rng.standard_normal((3, 700)) * 0.1).astype(np.float16)
    flat = rng.integers(-40, 40, 777).astype(np.int16)
    noise = rng.integers(0, 256, 1500, dtype=np.uint8)
    ramp = np.tile(rng.integers(-(2**31), 2**31, 50).astype(np.int32), 20)
    return Vector("chunked", "chunked raw tensors (format 2.1, §23) written with 1,000-byte chunks: whole rows per "
                  "chunk (float32), chunk boundaries inside rows (float16 rows longer than a chunk), a 1-D int16 "
                  "tensor whose last chunk is shorter, incompressible bytes (copy chunks) and a repeating int32 "
                  "pattern (zstd chunks)", {"w": w, "wide": wide, "flat": flat, "noise": noise, "ramp": ramp}, chunk_bytes=1000,
                  inputs={"w": "default_rng(1020).standard_normal((40, 30)) * 0.05 as float32",
                          "wide": "then .standard_normal((3, 700)) * 0.1 as float16",
                          "flat": "then .integers(-40, 40, 777) as int16",
                          "noise": "then .integers(0, 256, 1500, dtype=uint8)",
                          "ramp": "tile(next .integers(-2**31, 2**31, 50) as int32, 20)"})


def float8() -> Vector:
    """§6.1 (format 2.1): float8_e4m3fn and float8_e5m2, lossless, as torch tensors."""
    import torch

    rng = np.random.default_rng(1021)
    special = np.array([0x00, 0x80, 0x7F, 0xFF, 0x7E, 0xFE, 0x01, 0x81, 0x38, 0xB8], dtype=np.uint8)
    e4 = np.concatenate([special, rng.integers(0x20, 0x48, 54, dtype=np.uint8) | (rng.integers(0, 2, 54, dtype=np.uint8) << 7)])
    e5 = np.concatenate([special, np.array([0x7C, 0xFC, 0x7D], dtype=np.uint8), rng.integers(0x28, 0x40, 51, dtype=np.uint8)])
    return Vector("float8", "float8_e4m3fn and float8_e5m2 tensors (format 2.1, §6.1), lossless: NaN, +-0, +-max, "
                  "subnormals, +-1, +-inf (e5m2) and weight-like words",
                  {"e4m3": torch.from_numpy(e4).view(torch.float8_e4m3fn),
                   "e5m2": torch.from_numpy(e5.reshape(8, 8)).view(torch.float8_e5m2)},
                  inputs={"e4m3": f"words {special.tolist()} then default_rng(1021).integers(0x20, 0x48, 54) | "
                                  "(next .integers(0, 2, 54) << 7), as torch.float8_e4m3fn",
                          "e5m2": f"words {special.tolist() + [0x7C, 0xFC, 0x7D]} then next .integers(0x28, 0x40, 51), "
                                  "shape (8, 8), as torch.float8_e5m2"})


def pairs() -> Vector:
    """§9.1 (format 2.2): `pairs` streams, with escapes (an exponent stream of more than 15 symbols), an odd
    element count (a padding code) and bfloat16, and an exponent stream of fewer than 15 symbols."""
    rng = np.random.default_rng(1022)
    w = rng.uniform(-0.05, 0.05, 4001).astype(np.float32)
    w[::97] *= np.float32(2.0**-20)  # rare tiny values: exponents outside the table of 15, coded as escapes
    h = _bf16_words(rng.uniform(-1, 1, 3000).astype(np.float32))
    return Vector("pairs", "float32 weights (4,001 values: odd) with rare tiny values, so that the exponent stream "
                  "has escapes, and bfloat16 weights whose exponents use fewer than 15 symbols: `pairs` streams "
                  "(format 2.2, §9.1)", {"w": w, "h": _bf16_tensor(h)},
                  inputs={"w": "default_rng(1022).uniform(-0.05, 0.05, 4001) as float32, every 97th value times 2**-20",
                          "h": "then .uniform(-1, 1, 3000) as float32, rounded to bfloat16"})


VECTORS: list[Callable[[], Vector]] = [
    fp32_lossless, bf16_lossless, fp64_fp16_lossless, int64_lossless, empty_and_scalar, masked_quant, metadata,
    special_floats, tied_alias, codebook, bool_and_ints, aligned_speed, many_tensors, minimal, no_tensors,
    pip_spike_slab, chunked, float8, indexed_header, pairs,
]


# ------------------------------------------------------------------------------------------ VAE vectors (§19)

VAE_DIR = VECTOR_DIR / "vae"
VAE_MANIFEST = VAE_DIR / "manifest.json"
VAE_TOLERANCE = "|v - ref| <= 2**-20 * max|ref| over the tensor + one ulp of the dtype at ref (float16/bfloat16 only)"


def _vae_decoder(rng: np.random.Generator, latent: int, hidden: int, chunk: int, act: str, quantized: bool):
    from nncodec.compress.lossless import lossless
    from nncodec.vae_components import DecoderSpec

    f32 = DTYPES["float32"]
    w = {"l0.weight": rng.normal(0, 1, (hidden, latent)), "l0.bias": rng.normal(0, 0.1, hidden),
         "l1.weight": rng.normal(0, 0.1, (chunk, hidden)), "l1.bias": rng.normal(0, 0.1, chunk)}
    weights = {k: (quantize_uniform(v, f32, np.float32(0.01)) if quantized else lossless(v.astype(np.float32), f32))
               for k, v in w.items()}
    layers = (("linear", "l0.weight", "l0.bias"), (act,), ("linear", "l1.weight", "l1.bias"))
    return DecoderSpec(chunk, latent, layers, weights)


def vae_single() -> tuple[str, str, dict, Any]:
    """One model, plain names, a ReLU decoder with raw weights; residual on one tensor."""
    from nncodec.compress.lossless import lossless
    from nncodec.vae_components import Latents, VaeGroup, VaeSet, VaeTensor

    rng = np.random.default_rng(1801)
    f32 = DTYPES["float32"]
    dec = _vae_decoder(rng, 3, 5, 16, "relu", quantized=False)
    res = quantize_uniform(rng.normal(0, 0.05, (4, 5)), f32, np.float32(0.02))
    tensors = {"fc.weight": VaeTensor(f32, (4, 5), 0, res), "fc.bias": VaeTensor(f32, (4,), 0),
               "empty": VaeTensor(f32, (0, 3), 0), "steps": lossless(np.array([7], np.int64), DTYPES["int64"])}
    lat = Latents(rng.integers(-30, 31, (2, 3)), 0.0625)  # 24 values -> 2 chunks of 16
    return "vae_single", "one model: relu decoder (raw float32 weights), latents, a residual, a 0-size VAE tensor", \
        tensors, VaeSet((dec,), (VaeGroup("", 0, lat),))


def vae_collection() -> tuple[str, str, dict, Any]:
    """Three models sharing one tanh decoder with quantized weights; bfloat16 and masked residuals."""
    from nncodec.vae_components import Latents, VaeGroup, VaeSet, VaeTensor

    rng = np.random.default_rng(1802)
    f32, bf16 = DTYPES["float32"], DTYPES["bfloat16"]
    dec = _vae_decoder(rng, 4, 6, 32, "tanh", quantized=True)
    tensors, groups = {}, []
    for g, m in enumerate(("a", "b", "c")):
        r = rng.normal(0, 0.05, (8, 6))
        mask = np.abs(r) > 0.05
        tensors[f"{m}/w"] = VaeTensor(f32, (8, 6), g, quantize_uniform(r, f32, np.float32(0.01), mask=mask))
        tensors[f"{m}/b"] = VaeTensor(bf16, (8,), g, quantize_uniform(rng.normal(0, 0.05, 8), bf16, np.float32(0.01)))
        groups.append(VaeGroup(m, 0, Latents(rng.integers(-12, 13, (2, 4)), 0.25)))  # 56 values -> 2 chunks
    return "vae_collection", "three models sharing one tanh decoder (quantized weights); masked and bfloat16 residuals", \
        tensors, VaeSet((dec,), tuple(groups))


VAE_VECTORS = [vae_single, vae_collection]


def reference_forward(layers: Any, w: dict[str, np.ndarray], x: list[float]) -> list[float]:
    """One latent vector through a decoder's layer list as §19.4 says, written independently of
    nncodec's decoder: exact sums (math.fsum) per unit in binary64, then relu or tanh."""
    import math

    for layer in layers:
        if layer[0] == "linear":
            W, b = w[layer[1]], w[layer[2]]
            x = [math.fsum([*(W[o, i] * x[i] for i in range(len(x))), b[o]]) for o in range(W.shape[0])]
        elif layer[0] == "relu":
            x = [max(v, 0.0) for v in x]
        else:
            x = [math.tanh(v) for v in x]
    return x


def reference_vae_values(tensors: dict, vae: Any) -> dict[str, np.ndarray]:
    """§19.4 computed independently of nncodec's reader: exact sums (math.fsum) in binary64, the
    float32 rounding, the residual added in binary32. Returns binary32 values before the dtype conversion."""

    from nncodec.vae_components import VaeTensor

    def values(t) -> np.ndarray:
        if isinstance(t, QuantTensor):
            return np.frombuffer(_reference_dequantize_f32(t), dtype="<f4").astype(np.float64).reshape(t.shape)
        return t.words.view("<f4").astype(np.float64).reshape(t.shape)

    flat = []
    for grp in vae.groups:
        dec = vae.decoders[grp.decoder]
        w = {k: values(t) for k, t in dec.weights.items()}
        rows = []
        for row in grp.latents.levels:
            rows.extend(reference_forward(dec.layers, w, [float(np.float32(v) * np.float32(grp.latents.step))
                                                          for v in row]))
        flat.append(np.array(rows, dtype=np.float64).astype(np.float32))
    out, pos = {}, [0] * len(vae.groups)
    for name, t in tensors.items():
        if not isinstance(t, VaeTensor):
            continue
        n = t.numel
        d = flat[t.group][pos[t.group] : pos[t.group] + n]
        pos[t.group] += n
        if t.residual is not None:
            d = d + np.frombuffer(_reference_dequantize_f32(t.residual), dtype="<f4")
        out[name] = d.astype(np.float32)
    return out


def _reference_dequantize_f32(q: QuantTensor) -> bytes:
    """The binary32 values of §7 (before the dtype conversion), computed as _reference_dequantize does."""
    from dataclasses import replace

    return _reference_dequantize(replace(q, dtype=DTYPES["float32"]))


def build_vae() -> tuple[dict[str, bytes], dict]:
    from nncodec.tensorwriter import encode_file
    from nncodec.vae_components import VaeTensor

    files, entries = {}, []
    for make in VAE_VECTORS:
        name, description, tensors, vae = make()
        data = encode_file(tensors, vae=vae)
        ref = reference_vae_values(tensors, vae)
        decoded = {}
        with nncodec.open(data, framework="np") as f:
            report = f.info()
            for tname, t in tensors.items():
                entry = {"dtype": t.dtype.name, "shape": list(t.shape)}
                if isinstance(t, VaeTensor):
                    entry["reference"] = " ".join(f"{w:08x}" for w in ref[tname].view("<u4").tolist())
                else:
                    words = f._tf.decode(tname)[2]
                    entry["sha256"] = hashlib.sha256(np.ascontiguousarray(words).tobytes()).hexdigest()
                decoded[tname] = entry
        check_vae_tolerance(data, decoded)
        files[f"{name}.nnc"] = data
        entries.append({"file": f"{name}.nnc", "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                        "description": description, "vae": {k: report["vae"][k] for k in
                                                            ("decoder_bytes", "latent_bytes", "residual_bytes")},
                        "tensors": decoded})
    return files, {"format": "nnc 2.0 (§19)", "spec": "spec/FORMAT.md §19", "generator": _versions(),
                   "tolerance": VAE_TOLERANCE, "vectors": entries}


def check_vae_tolerance(data: bytes, expected: dict[str, dict]) -> None:
    """Every VAE tensor of `data` within the §19.4 tolerance of its reference; others by sha256."""
    from nncodec.components import float32_to_words
    from nncodec.tensorfile_vae import float_values

    with nncodec.open(data, framework="np") as f:
        assert f.keys() == list(expected)
        for name, want in expected.items():
            dt, shape, words = f._tf.decode(name)
            assert dt.name == want["dtype"] and list(shape) == want["shape"], name
            if "sha256" in want:
                assert hashlib.sha256(np.ascontiguousarray(words).tobytes()).hexdigest() == want["sha256"], name
                continue
            ref32 = np.array([int(w, 16) for w in want["reference"].split()], dtype="<u4").view("<f4")
            ref = float_values(dt.name, float32_to_words(ref32, dt)).astype(np.float64)
            got = float_values(dt.name, words).astype(np.float64)
            ulp = np.spacing(np.abs(ref).astype(np.float16)).astype(np.float64) if dt.name == "float16" else \
                (np.abs(ref) * 2.0**-7 if dt.name == "bfloat16" else 0.0)
            tol = 2.0**-20 * float(np.abs(ref).max(initial=0.0)) + ulp
            assert np.all(np.abs(got - ref) <= tol), name


# ------------------------------------------------------------------------------------------ encode / describe


def encode_vector(v: Vector) -> bytes:
    """The file bytes for a vector's inputs and settings, through the public API (a chunk size other than
    the default: through the same steps with EncodeOptions, as nncodec.save takes none)."""
    if v.chunk_bytes is None:
        return nncodec.save(v.tensors, v.metadata, prefer=v.prefer, align=v.align)
    from nncodec.api import compress_tensors
    from nncodec.codecs.base import EncodeOptions
    from nncodec.tensorwriter import encode_file

    options = EncodeOptions(prefer=v.prefer, chunk_bytes=v.chunk_bytes)
    return encode_file(compress_tensors(v.tensors), v.metadata, options, v.align)


def decoded_entries(data: bytes) -> dict[str, dict]:
    """Per tensor: dtype, shape and sha256 of the decoded little-endian bytes (aliases: their target)."""
    out: dict[str, dict] = {}
    tf = open_tensor_file(data, nncodec.DEFAULT_LIMITS)
    try:
        for name in tf.names:
            if name in tf.aliases:
                e = tf.resolve(name)
                out[name] = {"alias": tf.aliases[name], "dtype": e.dtype.name, "shape": list(e.shape)}
                continue
            dt, shape, words = tf.decode(name)
            le = np.ascontiguousarray(words).astype(dt.storage.newbyteorder("<"), copy=False)
            out[name] = {"dtype": dt.name, "shape": list(shape), "sha256": hashlib.sha256(le.tobytes()).hexdigest()}
        for name, target in tf.aliases.items():
            out[name]["sha256"] = out[target]["sha256"]
    finally:
        tf.container.close()
    return out


def _input_words(value: Any) -> np.ndarray | None:
    """The exact storage words a lossless input must decode to (None for compressor output)."""
    if isinstance(value, QuantTensor):
        return None
    if isinstance(value, RawTensor):
        return value.words
    from nncodec.compress.lossless import lossless
    from nncodec.convert import to_numpy

    dt, arr = to_numpy(value)
    return lossless(arr, dt).words


def _reference_dequantize(q: QuantTensor) -> bytes:
    """FORMAT.md §7 computed another way than nncodec does (float64 products, torch casts), as an
    independent check of the decoded bytes: the exact product of two float32 values fits in a
    float64, so rounding it once to float32 is the float32 product."""
    import torch

    values = q.quantizer.values.astype(np.float64)
    if q.quantizer.mode == "codebook":
        surv = values[q.levels]
    else:
        flat = np.flatnonzero(q.mask) if q.mask is not None else np.arange(q.numel)
        if q.quantizer.axis is None:
            channel = np.zeros(flat.size, dtype=np.int64)
        else:
            inner = int(np.prod(q.shape[q.quantizer.axis + 1:], dtype=np.int64))
            channel = (flat // inner) % q.shape[q.quantizer.axis]
        surv = q.levels.astype(np.float32).astype(np.float64) * values[channel]
    full = np.zeros(q.numel, dtype=np.float64)
    full[np.flatnonzero(q.mask) if q.mask is not None else slice(None)] = surv
    f32 = torch.from_numpy(full.astype(np.float32))
    out = {"float32": f32, "float64": f32.double(), "float16": f32.half(), "bfloat16": f32.bfloat16()}[q.dtype.name]
    return out.view(torch.uint8).numpy().tobytes() if out.numel() else b""


def _check_decodes_to_inputs(v: Vector, data: bytes) -> None:
    """A vector is only written if decoding it gives back exactly what went in."""
    with nncodec.open(data, framework="np") as f:
        for name, value in v.tensors.items():
            words = _input_words(value)
            comps = f.components(name)
            if words is not None:
                assert isinstance(comps, RawTensor) and comps.words.tobytes() == words.tobytes(), name
            else:
                decoded = np.ascontiguousarray(f.get_tensor(name))
                assert decoded.tobytes() == _reference_dequantize(value), name
                assert isinstance(comps, QuantTensor), name
                assert np.array_equal(comps.levels, value.levels), name
                assert comps.quantizer.values.tobytes() == value.quantizer.values.astype(np.float32).tobytes(), name
                assert (comps.mask is None) == (value.mask is None), name
                assert comps.mask is None or np.array_equal(comps.mask, value.mask), name
        assert f.metadata() == (v.metadata or {})


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    import zstandard

    return {"nncodec": nncodec.__version__, "zstandard": zstandard.__version__,
            "libzstd": ".".join(map(str, zstandard.ZSTD_VERSION)), "constriction": md.version("constriction"),
            "numpy": np.__version__}


def manifest_entry(v: Vector, data: bytes) -> dict:
    with nncodec.open(data) as f:
        report = f.info()
    def label(c: dict) -> str:
        if c["codec"] == "planes":
            return f"[{','.join(s[0] for s in c['params']['streams'])}]"
        return f"[{','.join(c['chunk_codecs'])}]" if c["codec"] == "chunks" else ""

    codecs = sorted({f"{c['kind']}/{c['codec']}{label(c)}" for t in report["tensors"] for c in t["components"]})
    return {
        "file": f"{v.name}.nnc",
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "description": v.description,
        "encode": {"prefer": v.prefer, "align": v.align, **({"chunk_bytes": v.chunk_bytes} if v.chunk_bytes else {})},
        "header_encoding": report["header_encoding"],
        "codecs": codecs,
        "metadata": v.metadata or {},
        "inputs": v.inputs,
        "tensors": decoded_entries(data),
    }


def build_all() -> tuple[dict[str, bytes], dict]:
    files: dict[str, bytes] = {}
    entries = []
    for make in VECTORS:
        v = make()
        data = encode_vector(v)
        _check_decodes_to_inputs(v, data)
        files[f"{v.name}.nnc"] = data
        entries.append(manifest_entry(v, data))
    manifest = {"format": "nnc 2.0", "spec": "spec/FORMAT.md", "generator": _versions(),
                "note": "tensor sha256 = sha256 of the decoded tensor's little-endian bytes (bool: 1 byte 0/1, "
                        "bfloat16: uint16 words); these must never change. File sha256 and bytes hold for the "
                        "generator versions listed.",
                "vectors": entries}
    return files, manifest


# ------------------------------------------------------------------ coded datasets (§21, nncodec.mdl)

DATASET_DIR = VECTOR_DIR / "dataset"  # own folder and manifest: these decode to data, not tensors


def dataset_vectors() -> tuple[dict[str, bytes], dict]:
    """§21 vectors: a prequential byte code and a two-part code of labels given inputs (the inputs
    file is stored beside it). Decoding needs the environment recorded in each file's `env`."""
    from nncodec import mdl
    from nncodec.mdl.kinds import SideInfo

    text = b"In the beginning God created the heaven and the earth. " * 8
    pre = mdl.EncodeSettings(kind="bytes", prequential=True, spec={"arch": "lstm", "alphabet": 256, "emb": 4, "hidden": 8},
                             train=mdl.TrainConfig(epochs=1, min_steps=4, batch=4, seqlen=16), streams=2, first_block=64)
    rng = np.random.default_rng(1812)
    n = 64
    imgs = rng.integers(0, 256, (n, 3, 3), dtype=np.uint8)
    labels = b"\x00\x00\x08\x01" + n.to_bytes(4, "big") + (imgs[:, 0, 0] // 64).astype(np.uint8).tobytes()
    side = b"\x00\x00\x08\x03" + n.to_bytes(4, "big") + (3).to_bytes(4, "big") * 2 + imgs.tobytes()
    two = mdl.EncodeSettings(kind="labels", spec={"arch": "mlp", "inputs": 9, "hidden": [3], "classes": 4},
                             train=mdl.TrainConfig(epochs=4, min_steps=8, batch=16))
    imgs8 = rng.integers(0, 256, (n, 8, 8), dtype=np.uint8)
    labels8 = b"\x00\x00\x08\x01" + n.to_bytes(4, "big") + (imgs8[:, 0, 0] // 64).astype(np.uint8).tobytes()
    side8 = b"\x00\x00\x08\x03" + n.to_bytes(4, "big") + (8).to_bytes(4, "big") * 2 + imgs8.tobytes()
    cnn = mdl.EncodeSettings(kind="labels", prequential=True, first_block=16,
                             spec={"arch": "cnn", "shape": [8, 8], "channels": [2, 3], "kernel": 3, "hidden": [],
                                   "classes": 4}, train=mdl.TrainConfig(lr=1e-2, epochs=2, min_steps=4, batch=8))
    pp = {"arch": "patchpca", "shape": [8, 8], "kernel": 3, "filters": 2, "pool": 4, "classes": 4}
    mix = mdl.EncodeSettings(kind="labels", prequential=True, first_block=16,
                             spec={"arch": "mix", "members": [{**pp, "hidden": [3]}, {**pp, "hidden": []},
                                                              {"arch": "uniform", "classes": 4}],
                                   "temps": ["1", "2"], "share": "0.05"},
                             train=mdl.TrainConfig(lr=1e-2, epochs=2, min_steps=4, batch=8, weight_decay=1e-2))
    averaged = mdl.EncodeSettings(kind="labels", prequential=True, first_block=8, block_ratio=2 ** 0.5,
                                  spec={"arch": "mix", "members": [{**pp, "hidden": [3]}, {**pp, "hidden": [2]}],
                                        "temps": ["1"], "share": "1"},
                                  train=mdl.TrainConfig(lr=1e-2, epochs=2, min_steps=4, batch=8, weight_decay=1e-2,
                                                        average=0.5))
    xs = rng.uniform(-1, 1, (n, 2)).astype(">f4")
    q = np.round((np.tanh(xs[:, 0] - 2 * xs[:, 1]) + 0.1 * rng.standard_normal(n)) / 0.05).astype(np.int64)
    targets = b"\x00\x00\x08\x01" + n.to_bytes(4, "big") + (q - q.min()).astype(np.uint8).tobytes()
    side_f = b"\x00\x00\x0d\x02" + n.to_bytes(4, "big") + (2).to_bytes(4, "big") + xs.tobytes()
    gauss = mdl.EncodeSettings(kind="labels", spec={"arch": "gauss", "inputs": 2, "hidden": [4], "step": "0.05",
                                                    "offset": int(q.min()), "classes": int(q.max() - q.min()) + 1},
                               train=mdl.TrainConfig(lr=1e-2, epochs=8, min_steps=8, batch=16))
    cm = mdl.EncodeSettings(kind="bytes", prequential=True, streams=3,
                            spec={"arch": "cm", "orders": [0, 1, 2, 4], "words": 2, "match": 3, "match_bits": 8,
                                  "table_bits": 8, "limit": 30, "lr": 8, "apm": 1, "mixer": 1})
    files = {"bytes-prequential.nnc": mdl.encode(text, pre)[0],
             "bytes-cm-prequential.nnc": mdl.encode(text, cm)[0],
             "labels-two-part.nnc": mdl.encode(labels, two, SideInfo.from_idx_bytes(side), levels=("1/4",))[0],
             "labels-two-part.side.idx": side,
             "labels-cnn-prequential.nnc": mdl.encode(labels8, cnn, SideInfo.from_idx_bytes(side8))[0],
             "labels-cnn-prequential.side.idx": side8,
             "labels-mix-prequential.nnc": mdl.encode(labels8, mix, SideInfo.from_idx_bytes(side8))[0],
             "labels-mix-averaged-prequential.nnc": mdl.encode(labels8, averaged, SideInfo.from_idx_bytes(side8))[0],
             "targets-gauss-two-part.nnc": mdl.encode(targets, gauss, SideInfo.from_idx_bytes(side_f),
                                                      levels=("1/8",))[0],
             "targets-gauss-two-part.side.idx": side_f}
    entries = [
        {"file": "bytes-prequential.nnc", "data_sha256": hashlib.sha256(text).hexdigest(), "data_bytes": len(text),
         "description": "57-byte sentence x 8, prequential code, LSTM emb 4 hidden 8, 2 streams, blocks 64, 128, 256, 456"},
        {"file": "bytes-cm-prequential.nnc", "data_sha256": hashlib.sha256(text).hexdigest(), "data_bytes": len(text),
         "description": "the 57-byte sentence x 8 of bytes-prequential; prequential code, context mixing (§21.7: "
                        "orders 0 1 2 4, word and word pair, match 3, 2^8 slots per table, APM, weight sets by match state), 3 streams; "
                        "integer arithmetic: decoding needs only the recorded constriction version"},
        {"file": "labels-two-part.nnc", "side": "labels-two-part.side.idx", "data_sha256": hashlib.sha256(labels).hexdigest(),
         "data_bytes": len(labels), "description": "64 labels (pixel [0,0] // 64) given 3x3 images from "
                                                   "default_rng(1812); two-part code, MLP 9-3-4 at level 1/4"},
        {"file": "labels-cnn-prequential.nnc", "side": "labels-cnn-prequential.side.idx",
         "data_sha256": hashlib.sha256(labels8).hexdigest(), "data_bytes": len(labels8),
         "description": "64 labels (pixel [0,0] // 64) given 8x8 images; prequential code, CNN 3x3 convs of 2 and 3 "
                        "channels, blocks 16, 32, 64"},
        {"file": "labels-mix-prequential.nnc", "side": "labels-cnn-prequential.side.idx",
         "data_sha256": hashlib.sha256(labels8).hexdigest(), "data_bytes": len(labels8),
         "description": "the labels and 8x8 images of labels-cnn-prequential; prequential code, mix (share 0.05, "
                        "temperatures 1 and 2) of patchpca heads 3x3 kernel, 2 filters, pool 4 (hidden [3] and none) "
                        "and uniform, blocks 16, 32, 64"},
        {"file": "labels-mix-averaged-prequential.nnc", "side": "labels-cnn-prequential.side.idx",
         "data_sha256": hashlib.sha256(labels8).hexdigest(), "data_bytes": len(labels8),
         "description": "the labels and 8x8 images of labels-cnn-prequential; prequential code, the plain average "
                        "(share 1) of two patchpca heads (hidden [3] and [2]) with iterate averaging (train.average "
                        "0.5, §21.3) and geometric blocks 8, 11, 16, 23, 32, 45, 64 (session 6)"},
        {"file": "targets-gauss-two-part.nnc", "side": "targets-gauss-two-part.side.idx",
         "data_sha256": hashlib.sha256(targets).hexdigest(), "data_bytes": len(targets),
         "description": "64 real targets tanh(x0 - 2 x1) + noise rounded to step 0.05, given float32 inputs [64, 2]; "
                        "two-part code, gauss model 2-4-1 at level 1/8"},
    ]
    for e in entries:
        e["sha256"] = hashlib.sha256(files[e["file"]]).hexdigest()
        e["bytes"] = len(files[e["file"]])
    from nncodec.mdl import env

    return files, {"spec": "spec/FORMAT.md §21", "env": env.current(), "vectors": entries}


def write_dataset_vectors(check: bool) -> list[str]:
    """Write (or, with `check`, compare) the §21 vectors; the list of differences."""
    files, manifest = dataset_vectors()
    problems = [f"dataset/{name}: encoder output differs" for name, data in files.items()
                if (DATASET_DIR / name).exists() and (DATASET_DIR / name).read_bytes() != data]
    if not check:
        DATASET_DIR.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (DATASET_DIR / name).write_bytes(data)
        (DATASET_DIR / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return problems


def _manifest_text(manifest: dict) -> str:
    """Indented JSON with shapes kept on one line."""
    text = json.dumps(manifest, indent=1, ensure_ascii=False)
    return re.sub(r"\[\s*((?:\d+,\s*)*\d+)\s*\]", lambda m: "[" + ", ".join(m.group(1).replace(",", " ").split()) + "]",
                  text) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="compare only; exit 1 on any difference")
    ap.add_argument("--force", action="store_true", help="rewrite vectors whose bytes changed")
    args = ap.parse_args(argv)
    files, manifest = build_all()
    dataset_problems = write_dataset_vectors(check=True)
    old = json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {"vectors": []}
    old_tensors = {e["file"]: e["tensors"] for e in old["vectors"]}
    problems = []
    for entry in manifest["vectors"]:
        prev = old_tensors.get(entry["file"])
        if prev is not None and prev != entry["tensors"]:
            problems.append(f"{entry['file']}: decoded tensors differ from the manifest (never allowed)")
        path = VECTOR_DIR / entry["file"]
        if path.exists() and path.read_bytes() != files[entry["file"]]:
            problems.append(f"{entry['file']}: encoder output differs from the stored vector")
    vae_files, vae_manifest = build_vae()
    for name, data in vae_files.items():
        if (VAE_DIR / name).exists() and (VAE_DIR / name).read_bytes() != data:
            problems.append(f"vae/{name}: encoder output differs from the stored vector")
    problems += dataset_problems
    for p in problems:
        print(p, file=sys.stderr)
    if args.check:
        print("vectors match" if not problems else f"{len(problems)} differences")
        return 1 if problems else 0
    if problems and not args.force:
        print("refusing to overwrite golden vectors; use --force if the change is intended", file=sys.stderr)
        return 1
    VECTOR_DIR.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (VECTOR_DIR / name).write_bytes(data)
    MANIFEST.write_text(_manifest_text(manifest), encoding="utf-8")
    VAE_DIR.mkdir(parents=True, exist_ok=True)
    for name, data in vae_files.items():
        (VAE_DIR / name).write_bytes(data)
    VAE_MANIFEST.write_text(_manifest_text(vae_manifest), encoding="utf-8")
    write_dataset_vectors(check=False)
    for e in manifest["vectors"]:
        print(f"{e['file']:24} {e['bytes']:6d} B  header={e['header_encoding']:4}  {' '.join(e['codecs'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
