"""The lossless compressor: a tensor's exact bits as a `raw` component."""

from __future__ import annotations

import numpy as np

from ..components import RawTensor
from ..dtypes import DType, to_storage


def lossless(values: np.ndarray, dtype: DType) -> RawTensor:
    """`values` are the tensor's values (or, for bfloat16 and float8, its storage words)."""
    words = values.view(dtype.storage) if dtype.words_only else to_storage(values, dtype)
    if not words.flags.c_contiguous:  # (np.array(copy=None, order="C") costs ~1 us per tensor even when it is)
        words = np.ascontiguousarray(words)
    return RawTensor(dtype, tuple(values.shape), words.reshape(-1))
