"""Flattening a model's tensors into fixed-size chunks and back (the paper's data layout).

The tensors of one model are flattened in row-major order, concatenated in the given order and cut
into chunks of `chunk` values; the last chunk is padded with zeros. The reader does the inverse:
it concatenates the decoder's chunks, drops the padding and cuts the tensors back out in order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def to_chunks(arrays: Sequence[np.ndarray], chunk: int) -> np.ndarray:
    """float32 [ceil(total / chunk), chunk]: the concatenated values, last chunk zero-padded."""
    flat = np.concatenate([np.asarray(a, dtype=np.float32).reshape(-1) for a in arrays]) if arrays else np.zeros(0, np.float32)
    n = -(-flat.size // chunk)
    out = np.zeros(n * chunk, dtype=np.float32)
    out[: flat.size] = flat
    return out.reshape(n, chunk)


def from_chunks(chunks: np.ndarray, shapes: Sequence[tuple[int, ...]]) -> list[np.ndarray]:
    """The tensors cut back out of decoded chunks (padding dropped)."""
    flat = np.asarray(chunks).reshape(-1)
    out, start = [], 0
    for shape in shapes:
        n = int(np.prod(shape, dtype=np.int64))
        out.append(flat[start : start + n].reshape(shape))
        start += n
    return out
