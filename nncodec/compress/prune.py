"""Magnitude pruning: which weights survive, chosen by |w| per tensor or with one global threshold.

Pruning only decides a mask; the survivors are then quantized (uniform, RDOQ or codebook). Ties at
the threshold are broken by position (stable sort), so the same input always gives the same mask.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..errors import BadArgumentError


def _check_sparsity(sparsity: float) -> float:
    s = float(sparsity)
    if not 0.0 <= s <= 1.0:
        raise BadArgumentError(f"sparsity must be in [0, 1], got {sparsity!r}")
    return s


def magnitude_mask(values: np.ndarray, sparsity: float) -> np.ndarray:
    """Boolean mask keeping the round((1 - sparsity) * n) largest-magnitude entries of `values`."""
    s = _check_sparsity(sparsity)
    x = np.abs(np.asarray(values, dtype=np.float64)).reshape(-1)
    keep = int(round((1.0 - s) * x.size))
    mask = np.zeros(x.size, dtype=bool)
    if keep > 0:
        order = np.argsort(-x, kind="stable")
        mask[order[:keep]] = True
    return mask.reshape(np.shape(values))


def global_masks(tensors: Mapping[str, np.ndarray], sparsity: float) -> dict[str, np.ndarray]:
    """Masks for several tensors sharing one magnitude threshold, so that `sparsity` of all their
    weights together are pruned (layers with many small weights lose more)."""
    s = _check_sparsity(sparsity)
    names = list(tensors)
    flat = [np.abs(np.asarray(tensors[n], dtype=np.float64)).reshape(-1) for n in names]
    sizes = [f.size for f in flat]
    allx = np.concatenate(flat) if flat else np.zeros(0)
    keep = int(round((1.0 - s) * allx.size))
    chosen = np.zeros(allx.size, dtype=bool)
    if keep > 0:
        chosen[np.argsort(-allx, kind="stable")[:keep]] = True
    out, pos = {}, 0
    for n, size in zip(names, sizes, strict=True):
        out[n] = chosen[pos : pos + size].reshape(np.shape(tensors[n]))
        pos += size
    return out


def threshold_mask(values: np.ndarray, threshold: float) -> np.ndarray:
    """Keep the entries with |w| > threshold."""
    return np.abs(np.asarray(values)) > threshold


def sparsity_of(mask: np.ndarray | None, numel: int) -> float:
    """Fraction of pruned entries (0 for no mask)."""
    if mask is None or numel == 0:
        return 0.0
    return 1.0 - float(np.count_nonzero(mask)) / numel
