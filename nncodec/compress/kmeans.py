"""Weight sharing: the surviving weights take one of K shared values (a codebook quantizer).

One-dimensional k-means (Lloyd's algorithm) from quantile starting points, so results are
deterministic. Levels are codebook indices ordered by value, so neighbouring levels are
neighbouring values (this keeps the level histogram smooth for the entropy coder). Unlike a
uniform grid, the codebook follows the weight distribution: dense near zero, sparse in the tails.
"""

from __future__ import annotations

import numpy as np

from ..components import Quantizer, QuantTensor
from ..dtypes import DType
from ..errors import BadArgumentError

MAX_CODEBOOK = 65536


def kmeans_1d(values: np.ndarray, k: int, iterations: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """(sorted float64 centroids, index of each value's centroid) of 1-D k-means on `values`."""
    x = np.sort(np.asarray(values, dtype=np.float64).reshape(-1))
    if x.size == 0:
        return np.zeros(1), np.zeros(0, dtype=np.int64)
    unique = np.unique(x)
    k = min(k, unique.size)
    centroids = np.quantile(x, (np.arange(k) + 0.5) / k) if unique.size > k else unique.copy()
    centroids = np.unique(centroids)
    for _ in range(iterations):
        edges = (centroids[1:] + centroids[:-1]) / 2
        idx = np.searchsorted(edges, x)
        sums = np.bincount(idx, weights=x, minlength=centroids.size)
        counts = np.bincount(idx, minlength=centroids.size)
        new = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
        new = np.unique(new)
        if new.size == centroids.size and np.allclose(new, centroids, rtol=0, atol=0):
            break
        centroids = new
    edges = (centroids[1:] + centroids[:-1]) / 2
    return centroids, np.searchsorted(edges, np.asarray(values, dtype=np.float64).reshape(-1)).astype(np.int64)


def quantize_kmeans(values: np.ndarray, dtype: DType, k: int, *, mask: np.ndarray | None = None,
                    iterations: int = 50) -> QuantTensor:
    """Share the surviving weights (all, or those where `mask` is True) among at most `k` values."""
    if dtype.kind != "f":
        raise BadArgumentError(f"only float tensors can be quantized, not {dtype.name}")
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= MAX_CODEBOOK:
        raise BadArgumentError(f"codebook size must be an integer in [1, {MAX_CODEBOOK}], got {k!r}")
    x = np.asarray(values, dtype=np.float32)
    if not np.isfinite(x).all():
        raise BadArgumentError("cannot quantize non-finite values")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != x.shape:
            raise BadArgumentError(f"mask shape {mask.shape} differs from tensor shape {x.shape}")
        survivors = x[mask]
    else:
        survivors = x.reshape(-1)
    centroids, idx = kmeans_1d(survivors, int(k), iterations)
    codebook = centroids.astype(np.float32)
    return QuantTensor(dtype, tuple(x.shape), idx, Quantizer("codebook", codebook, None), mask)
