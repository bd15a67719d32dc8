"""Unsupervised image features computed from ALL the side information before any label is coded.

The decoder holds the inputs (images) from the start, so anything computed from them alone costs
no bits: here a first convolution layer whose filters are the principal components of the images'
k×k patches (as in PCANet), whitened, with split ReLU (max(z, 0), max(−z, 0)) and average pooling,
each feature then standardised over all inputs. A small head trained on these features learns from
few labels far faster, and far cheaper, than a CNN on pixels.

Deterministic by construction: float64 patch covariance accumulated in a fixed chunk order,
`torch.linalg.eigh`, float32 convolution in fixed chunks, float64 statistics; the same function
runs in the encoder and the decoder under `env.deterministic()` (one thread).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

PATCH_EVERY = 4  # patch statistics from images 0, 4, 8, ... (all of their k×k patches)
CHUNK = 500  # images per chunk (fixes the summation order)
EIG_EPS = 1e-4  # added to each eigenvalue before whitening
STD_EPS = 1e-3  # added to each feature's standard deviation


def _scaled(images: np.ndarray, a: int, b: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images[a:b])).to(dtype).unsqueeze(1) / 255.0


def patch_filters(images: np.ndarray, kernel: int, filters: int) -> torch.Tensor:
    """[filters, 1, k, k] float32: the top principal directions of the mean-removed k×k patches,
    each divided by the square root of its eigenvalue (+ EIG_EPS)."""
    n = len(images)
    cov = torch.zeros(kernel * kernel, kernel * kernel, dtype=torch.float64)
    count = 0
    sub = np.arange(0, n, PATCH_EVERY)
    for a in range(0, len(sub), CHUNK):
        x = torch.from_numpy(np.ascontiguousarray(images[sub[a:a + CHUNK]])).to(torch.float64).unsqueeze(1) / 255.0
        p = F.unfold(x, kernel).transpose(1, 2).reshape(-1, kernel * kernel)
        p = p - p.mean(1, keepdim=True)
        cov += p.T @ p
        count += p.shape[0]
    w, v = torch.linalg.eigh(cov / max(count, 1))  # ascending eigenvalues
    w, v = w.flip(0)[:filters], v.flip(1)[:, :filters]
    return (v / torch.sqrt(w.clamp(min=0) + EIG_EPS)).T.reshape(filters, 1, kernel, kernel).to(torch.float32)


def feature_count(shape: tuple[int, int], filters: int, pool: int) -> int:
    return 2 * filters * (shape[0] // pool) * (shape[1] // pool)


def patch_pca_features(images: np.ndarray, shape: tuple[int, int], kernel: int, filters: int, pool: int) -> np.ndarray:
    """[n, 2·filters·(H/pool)·(W/pool)] float32 standardised features of every input."""
    n = len(images)
    images = images.reshape(n, *shape)
    w = patch_filters(images, kernel, filters)
    out = np.empty((n, feature_count(shape, filters, pool)), dtype=np.float32)
    for a in range(0, n, CHUNK):
        z = F.conv2d(_scaled(images, a, a + CHUNK, torch.float32), w, padding=kernel // 2)
        z = F.avg_pool2d(torch.cat([F.relu(z), F.relu(-z)], 1), pool)
        out[a:a + CHUNK] = z.flatten(1).numpy()
    mean = np.zeros(out.shape[1])
    for a in range(0, n, CHUNK):
        mean += out[a:a + CHUNK].astype(np.float64).sum(0)
    mean /= max(n, 1)
    var = np.zeros(out.shape[1])
    for a in range(0, n, CHUNK):
        var += ((out[a:a + CHUNK].astype(np.float64) - mean) ** 2).sum(0)
    std = np.sqrt(var / max(n, 1)) + STD_EPS
    for a in range(0, n, CHUNK):
        out[a:a + CHUNK] = ((out[a:a + CHUNK].astype(np.float64) - mean) / std).astype(np.float32)
    return out
