"""How far a lossy file's weights are from the originals: relative L2 error per tensor class.

A lossy encode measures it once (from the tensors it was given and the components it wrote) and
stores the summary in the file as the optional header member ``x-error`` (spec/FORMAT.md), so that
`nncodec info` can show it later without the original weights. Classes are by dimensionality:
"weights" are tensors of two or more dimensions (linear and conv kernels, embeddings), "vectors"
the rest (biases, normalisation scales, scalars). Lossless tensors have zero error and are not listed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .components import QuantTensor, RawTensor, dequantize
from .convert import to_numpy

HEADER_KEY = "x-error"
CLASSES = ("weights", "vectors")
WARN_REL_L2 = 0.15  # above this relative L2 error on the weights, `encode` warns (see README, "Lossy compression")


def tensor_class(shape: tuple[int, ...]) -> str:
    return "weights" if len(shape) >= 2 else "vectors"


def as_float64(words: np.ndarray, dtype_name: str) -> np.ndarray:
    """Float64 values of float storage words (bfloat16 words are the top half of a float32)."""
    w = np.asarray(words).reshape(-1)
    if dtype_name == "bfloat16":
        return (w.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return w.view(np.dtype(dtype_name)).astype(np.float64)


def _round(x: float) -> float:
    """4 significant digits: enough to read, compact in the header, and deterministic."""
    return float(f"{x:.4g}")


def measure(originals: Mapping[str, Any], components: Mapping[str, Any]) -> dict[str, dict] | None:
    """The per-class error summary of the quantized tensors among `components` that came from one of
    `originals` (None when nothing was quantized: a lossless file).

    Each class maps to {"tensors": n, "rel_l2": ||w' - w|| / ||w|| over the whole class,
    "worst": [name, its own relative L2 error]}. Non-finite originals count as zero-norm.
    """
    sums: dict[str, list[float]] = {}
    worst: dict[str, tuple[str, float]] = {}
    counts: dict[str, int] = {}
    for name, comp in components.items():
        original = originals.get(name)
        if not isinstance(comp, QuantTensor) or original is None or isinstance(original, (QuantTensor, RawTensor)):
            continue
        dt, arr = to_numpy(original, name)
        x = as_float64(arr, dt.name) if dt.name == "bfloat16" else np.asarray(arr, dtype=np.float64).reshape(-1)
        y = as_float64(dequantize(comp), comp.dtype.name)
        finite = np.isfinite(x)
        err = float(np.sum((y[finite] - x[finite]) ** 2))
        ref = float(np.sum(x[finite] ** 2))
        cls = tensor_class(tuple(comp.shape))
        s = sums.setdefault(cls, [0.0, 0.0])
        s[0] += err
        s[1] += ref
        counts[cls] = counts.get(cls, 0) + 1
        rel = math.sqrt(err / ref) if ref > 0 else (0.0 if err == 0 else math.inf)
        if cls not in worst or rel > worst[cls][1]:
            worst[cls] = (name, rel)
    if not counts:
        return None
    out: dict[str, dict] = {}
    for cls in CLASSES:
        if cls not in counts:
            continue
        err, ref = sums[cls]
        rel = math.sqrt(err / ref) if ref > 0 else 0.0
        w_name, w_rel = worst[cls]
        out[cls] = {"tensors": counts[cls], "rel_l2": _round(rel),
                    "worst": [w_name, _round(w_rel) if math.isfinite(w_rel) else 1e300]}
    return out


def parse(member: object) -> dict[str, dict] | None:
    """The summary stored in a file's header, or None when absent or not in the expected shape
    (an optional member: a reader may ignore what it cannot interpret)."""
    if not isinstance(member, dict):
        return None
    out: dict[str, dict] = {}
    for cls, v in member.items():
        if cls not in CLASSES or not isinstance(v, dict):
            return None
        n, rel, worst = v.get("tensors"), v.get("rel_l2"), v.get("worst")
        if (isinstance(n, bool) or not isinstance(n, int) or n < 0 or isinstance(rel, bool)
                or not isinstance(rel, (int, float)) or not rel >= 0 or not isinstance(worst, list) or len(worst) != 2
                or not isinstance(worst[0], str) or isinstance(worst[1], bool) or not isinstance(worst[1], (int, float))):
            return None
        out[cls] = {"tensors": n, "rel_l2": float(rel), "worst": [worst[0], float(worst[1])]}
    return out or None


def snr_db(rel_l2: float) -> float:
    """Signal-to-noise ratio in dB for a relative L2 error (inf for an exact tensor)."""
    return math.inf if rel_l2 <= 0 else -20.0 * math.log10(rel_l2)


def describe(summary: Mapping[str, dict]) -> list[str]:
    """One line per class: `weights (3 tensors): relative L2 error 2.31 % (SNR 32.7 dB), worst fc1.weight 2.5 %`."""
    lines = []
    for cls, v in summary.items():
        n = v["tensors"]
        worst = f", worst {v['worst'][0]} {v['worst'][1]:.2%}" if n > 1 else ""
        lines.append(f"{cls} ({n} tensor{'' if n == 1 else 's'}): relative L2 error {v['rel_l2']:.2%} "
                     f"(SNR {snr_db(v['rel_l2']):.1f} dB){worst}")
    return lines


def warning(summary: Mapping[str, dict] | None) -> str | None:
    """A warning when the weights are far from the originals, or None."""
    w = (summary or {}).get("weights")
    if w is None or w["rel_l2"] <= WARN_REL_L2:
        return None
    return (f"the weights' relative L2 error is {w['rel_l2']:.1%} (above {WARN_REL_L2:.0%}): check the model's "
            "accuracy on validation data, or choose a finer setting (--config fine, more --bits, less --sparsity)")
