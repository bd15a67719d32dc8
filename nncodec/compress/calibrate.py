"""Calibration statistics of a layer's inputs, and the bias correction they allow.

Post-training quantization without retraining works much better when it knows what the layer's
inputs look like: OPTQ (see rdoq.py) needs their covariance, and bias correction needs their mean.
Both come from running some calibration data (training images, never the test set) through the
float model; `nncodec.compress.layer_inputs.layer_statistics` computes them for torch models.

Bias correction: a layer computes y = W x + b. Replacing W by its quantized Ŵ shifts the mean
output by (W - Ŵ) E[x]; adding exactly that to the bias removes the shift at no cost in bits
(the bias is stored anyway). For a convolution, x is an input patch (fan-in = C·kh·kw).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import BadArgumentError


@dataclass(frozen=True)
class LayerStats:
    """First and second central moments of a layer's input vectors (fan-in long)."""

    mean: np.ndarray  # float64 [fan_in]
    cov: np.ndarray  # float64 [fan_in, fan_in]
    count: int = 0  # how many input vectors they were measured on

    @property
    def fan_in(self) -> int:
        return int(self.mean.size)

    @property
    def second_moment(self) -> np.ndarray:
        return self.cov + np.outer(self.mean, self.mean)

    @staticmethod
    def from_inputs(x: np.ndarray) -> LayerStats:
        """Statistics of input vectors x [N, fan_in]."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] == 0:
            raise BadArgumentError("calibration inputs must be a non-empty [N, fan_in] array")
        mean = x.mean(axis=0)
        xc = x - mean
        return LayerStats(mean, xc.T @ xc / x.shape[0], int(x.shape[0]))


def bias_correction(weight: np.ndarray, weight_hat: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """The shift (W - Ŵ) E[x] per output unit, to be added to the bias (weights are [out, fan_in...])."""
    w = np.asarray(weight, dtype=np.float64).reshape(np.shape(weight)[0], -1)
    wh = np.asarray(weight_hat, dtype=np.float64).reshape(w.shape)
    if w.shape[1] != np.size(mean):
        raise BadArgumentError(f"input mean of {np.size(mean)} values for a fan-in of {w.shape[1]}")
    return (w - wh) @ np.asarray(mean, dtype=np.float64)
