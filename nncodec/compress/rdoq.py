"""Rate–distortion optimized quantization (RDOQ), optionally with error feedback (OPTQ / GPTQ).

Plain rounding picks the level nearest to w / step. RDOQ picks, for each weight, the level among
{0, the two grid points around w / step} that minimises

    g · (w / step - level)**2  +  lam · bits(level)

where bits(level) = -log2 of the level's probability under the categorical count table the codec
will store (zero included, so it covers the mask bit too), and g is the weight's importance (1, or
the OPTQ curvature of its input column). The table depends on the levels chosen, so the two are
iterated: estimate table -> choose levels -> re-estimate (a few passes converge). `lam` is in units
of step**2 per bit, so one value means the same trade-off at every step size.

With `hessian` (the second moment or covariance of the layer's inputs, fan-in x fan-in), the input
columns are quantized in order and each column's rounding error is pushed onto the not yet quantized
columns through the Cholesky factor of the inverse Hessian (OPTQ, Frantar et al. 2022). This keeps
the layer's *output* close to the original one, which is what accuracy depends on, and lets the
step be several times coarser at the same accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..components import QuantTensor
from ..dtypes import DType
from ..errors import BadArgumentError
from .uniform import channel_steps, levels_to_quant_tensor

ESCAPE_BITS = 24.0  # cost assumed for a level the current table has never seen


@dataclass(frozen=True)
class RateModel:
    """Bits per level under a categorical model (zero included): -log2((count + prior) / total)."""

    lo: int
    bits: np.ndarray  # float64, bits of level lo + i

    @staticmethod
    def from_levels(levels: np.ndarray, prior: float = 0.5) -> RateModel:
        lv = np.asarray(levels, dtype=np.int64).reshape(-1)
        if lv.size == 0:
            return RateModel(0, np.zeros(1))
        lo = int(lv.min())
        counts = np.bincount(lv - lo).astype(np.float64) + prior
        return RateModel(lo, -np.log2(counts / counts.sum()))

    def cost(self, levels: np.ndarray) -> np.ndarray:
        """Bits of each level; levels outside the table cost ESCAPE_BITS."""
        padded = np.concatenate(([ESCAPE_BITS], self.bits, [ESCAPE_BITS]))
        idx = np.asarray(levels, dtype=np.int64) - (self.lo - 1)
        return padded[np.clip(idx, 0, self.bits.size + 1)]


def rd_choose(x: np.ndarray, lam: float, rate: RateModel | None, weight: np.ndarray | float = 1.0,
              forced_zero: np.ndarray | None = None) -> np.ndarray:
    """The RD-optimal level for each scaled value x = w / step among {0, floor(x), floor(x) + 1}."""
    if lam <= 0 or rate is None:
        q = np.rint(x)
    else:
        lo = np.floor(x)
        cost_lo = weight * (x - lo) ** 2 + lam * rate.cost(lo)
        cost_hi = weight * (x - lo - 1.0) ** 2 + lam * rate.cost(lo + 1.0)
        cost_zero = weight * x * x + lam * float(rate.cost(np.zeros(1, dtype=np.int64))[0])
        q = np.where(cost_hi < cost_lo, lo + 1.0, lo)
        q = np.where(cost_zero <= np.minimum(cost_lo, cost_hi), 0.0, q)
    if forced_zero is not None:
        q = np.where(forced_zero, 0.0, q)
    return q


def _optq_factor(hessian: np.ndarray, damp: float) -> np.ndarray:
    """Upper Cholesky factor of the damped inverse Hessian (what OPTQ propagates errors through)."""
    h = np.array(hessian, dtype=np.float64)
    n = h.shape[0]
    diag = np.diag(h)
    dead = diag <= 0
    h[dead, dead] = 1.0  # inputs that never vary: their weights cannot matter, any value is fine
    h += np.eye(n) * (damp * float(np.mean(np.diag(h))) + 1e-12)
    for _ in range(6):
        try:
            return np.linalg.cholesky(np.linalg.inv(h)).T
        except np.linalg.LinAlgError:
            h += np.eye(n) * float(np.mean(np.diag(h)))  # more damping until it factors
    raise BadArgumentError("the Hessian is not positive definite even after damping")


def _optq_pass(w2: np.ndarray, steps_row: np.ndarray, lam: float, rate: RateModel | None, factor: np.ndarray,
               forced: np.ndarray | None, importance: bool) -> np.ndarray:
    """One OPTQ sweep over the input columns of a [rows, fan_in] weight; returns float levels."""
    wt = np.array(w2.T, dtype=np.float64, order="C")  # one contiguous row per input column
    n, rows = wt.shape
    q = np.zeros_like(wt)
    d = np.diag(factor) ** 2
    g_all = (np.mean(d) / d) if importance else np.ones(n)
    ft = forced.T if forced is not None else None
    block = 64
    for b0 in range(0, n, block):
        b1 = min(b0 + block, n)
        err_block = np.zeros((b1 - b0, rows))
        for j in range(b0, b1):
            col = wt[j]
            qj = rd_choose(col / steps_row, lam, rate, g_all[j], None if ft is None else ft[j])
            q[j] = qj
            err = (col - qj * steps_row) / factor[j, j]
            err_block[j - b0] = err
            if j + 1 < b1:
                wt[j + 1 : b1] -= factor[j, j + 1 : b1, None] * err[None, :]
        if b1 < n:  # lazy batch update of the columns after this block (as GPTQ does)
            wt[b1:] -= factor[b0:b1, b1:].T @ err_block
    return q.T


def quantize_rdoq(values: np.ndarray, dtype: DType, step: float | np.ndarray, lam: float = 0.0, *,
                  axis: int | None = None, mask: np.ndarray | None = None, hessian: np.ndarray | None = None,
                  iterations: int = 3, damp: float = 0.01, importance: bool = True,
                  zeros: str = "mask") -> QuantTensor:
    """RD-optimized uniform quantization of float `values` with `step` (scalar or per index of `axis`).

    `mask` (optional) forces the positions where it is False to zero (pruning before quantization).
    `hessian` (fan-in x fan-in, fan-in = prod(shape[1:])) turns on OPTQ error feedback; it needs
    `axis` None or 0. `zeros` says how zero levels are represented: "mask" (a mask component plus the
    non-zero levels) or "levels" (every level stored, no mask).
    """
    if dtype.kind != "f":
        raise BadArgumentError(f"only float tensors can be quantized, not {dtype.name}")
    if lam < 0 or not np.isfinite(lam):
        raise BadArgumentError(f"the RD lambda must be a finite non-negative number, got {lam!r}")
    x = np.asarray(values, dtype=np.float64)
    steps = np.atleast_1d(np.asarray(step, dtype=np.float32))
    per_elem = channel_steps(steps, x.shape, axis).astype(np.float64)
    if not (np.isfinite(steps).all() and (steps > 0).all()):
        raise BadArgumentError("step sizes must be positive and finite")
    forced = None if mask is None else ~np.asarray(mask, dtype=bool)
    if forced is not None and forced.shape != x.shape:
        raise BadArgumentError(f"mask shape {forced.shape} differs from tensor shape {x.shape}")
    if not np.isfinite(x).all():
        raise BadArgumentError("cannot quantize non-finite values")
    if hessian is not None:
        if x.ndim < 2 or axis not in (None, 0):
            raise BadArgumentError("OPTQ needs a weight of 2 or more dimensions and a per-tensor or axis-0 step")
        w2 = x.reshape(x.shape[0], -1)
        if np.shape(hessian) != (w2.shape[1], w2.shape[1]):
            raise BadArgumentError(f"Hessian of shape {np.shape(hessian)} for a fan-in of {w2.shape[1]}")
        factor = _optq_factor(hessian, damp)
        steps_row = per_elem.reshape(x.shape[0], -1)[:, 0]
        f2 = None if forced is None else forced.reshape(w2.shape)
        q = _optq_pass(w2, steps_row, 0.0, None, factor, f2, importance)
        for _ in range(iterations if lam > 0 else 0):
            q = _optq_pass(w2, steps_row, lam, RateModel.from_levels(q.astype(np.int64)), factor, f2, importance)
        q = q.reshape(x.shape)
    else:
        scaled = x / per_elem
        q = rd_choose(scaled, 0.0, None, forced_zero=forced)
        for _ in range(iterations if lam > 0 else 0):
            q = rd_choose(scaled, lam, RateModel.from_levels(q.astype(np.int64)), forced_zero=forced)
    if np.abs(q).max(initial=0) >= 2**31:
        raise BadArgumentError("the step is too small for int32 levels")
    return levels_to_quant_tensor(q.astype(np.int64), dtype, steps, axis, zeros=zeros)
