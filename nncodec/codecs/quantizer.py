"""Step sizes or codebook entries (`quantizer` component): a few little-endian float32 values."""

from __future__ import annotations

import numpy as np

from ..errors import CorruptFileError, UnsupportedVersionError
from .base import DecodeContext, Encoded, EncodeOptions, expect_params


def encode(values: np.ndarray, options: EncodeOptions) -> Encoded:
    return Encoded("f32", np.asarray(values, dtype="<f4").tobytes())


def decode(codec: str, params: dict, payload: memoryview, count: int, ctx: DecodeContext) -> np.ndarray:
    what = f"quantizer/{codec}"
    if codec != "f32":
        raise UnsupportedVersionError(f"unknown quantizer codec {codec!r} (written by a newer nncodec?)")
    expect_params(params, {}, what)
    if len(payload) != 4 * count:
        raise CorruptFileError(f"{what}: {len(payload)} bytes for {count} float32 values")
    values = np.frombuffer(payload, dtype="<f4").astype(np.float32)
    if not np.isfinite(values).all():
        raise CorruptFileError(f"{what}: non-finite quantizer values")
    return values
