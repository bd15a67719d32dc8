"""Quantized VAE latent vectors (`latent` component): one float32 step, then ANS-coded levels.

The levels are coded with a categorical model rebuilt from stored integer counts (the shared
helpers in `ans`), not with a parametric quantized-Gaussian prior: that prior's fixed-point table
would depend on each platform's libm `exp`, while a count table decodes identically everywhere.
"""

from __future__ import annotations

import numpy as np

from ..errors import BadArgumentError, CorruptFileError, UnsupportedVersionError
from . import ans
from .base import DecodeContext, Encoded, EncodeOptions, expect_params

_STEP = np.dtype("<f4")


def encode(levels: np.ndarray, step: float, options: EncodeOptions) -> Encoded:
    """The step as little-endian float32, then a count table and the ANS words of the levels."""
    lv = np.asarray(levels, dtype=np.int64).reshape(-1)
    s = np.float32(step)
    if not (np.isfinite(s) and s > 0):
        raise BadArgumentError(f"latent step must be positive and finite, got {step!r}")
    if lv.size and (int(lv.min()) < -(2**31) or int(lv.max()) >= 2**31):
        raise BadArgumentError("latent levels must fit in int32")
    return Encoded("ans", np.array([s], dtype=_STEP).tobytes() + ans.encode_with_table(lv, coarsen=(15, 255, 4095)),
                   slow=True)


def decode(codec: str, params: dict, payload: memoryview, count: int, ctx: DecodeContext) -> tuple[np.ndarray, float]:
    """(levels int64 [count], step) of a latent part; the payload must be consumed exactly."""
    what = f"latent/{codec}"
    if codec != "ans":
        raise UnsupportedVersionError(f"unknown latent codec {codec!r} (written by a newer nncodec?)")
    expect_params(params, {}, what)
    if len(payload) < 4:
        raise CorruptFileError(f"{what}: {len(payload)} bytes, too short for the step")
    step = np.frombuffer(payload[:4], dtype=_STEP)[0]
    if not (np.isfinite(step) and step > 0):
        raise CorruptFileError(f"{what}: step must be positive and finite, got {float(step)!r}")
    levels = ans.decode_with_table(payload[4:], count, what, ctx.limits.max_alphabet)
    return levels, float(step)
