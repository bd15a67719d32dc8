"""`NncFile.get_slice(name)`: part of a tensor, as safetensors' `get_slice` gives it.

`f.get_slice("w")[a:b]` (or `[a:b, :]`, `[i]`, `[a:b, c:d]`) decodes only the rows a..b of a
chunked raw tensor (§23: chunks hold whole rows where a row fits, each with its own CRC), so reading
a few rows of a 1 GB embedding costs a few chunks. Everything else is decoded whole and then indexed:
an unchunked raw tensor (one CRC covers its section, which must be checked before any byte is
used), quantized and VAE tensors (their values depend on whole-tensor components: masks, levels in
mask order, the decoder's output), and any first index that is not a row range (a step other than
1, an Ellipsis, None, an array). The result always equals indexing the whole tensor: numpy's basic
indexing rules, applied to the storage words, then converted like `get_tensor`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .convert import words_to_numpy, words_to_torch

if TYPE_CHECKING:
    from .api import NncFile


class TensorSlice:
    """A lazily read tensor: `get_shape()`, `get_dtype()`, and `[index]` to decode part of it."""

    def __init__(self, file: NncFile, name: str) -> None:
        self._file = file
        self._name = name
        self._entry = file._open_file().resolve(name)  # KeyError / FormatError now, not at indexing

    def get_shape(self) -> list[int]:
        return list(self._entry.shape)

    def get_dtype(self) -> str:
        """The nncodec dtype name ("float32", "bfloat16", ...: torch's names, not safetensors' "F32")."""
        return self._entry.dtype.name

    def __len__(self) -> int:
        if not self._entry.shape:
            raise TypeError("len() of a 0-d tensor")
        return self._entry.shape[0]

    def __getitem__(self, index: Any) -> Any:
        f, e = self._file, self._entry
        tf = f._open_file()
        key = index if isinstance(index, tuple) else (index,)
        rows = _row_range(key[0], e.shape) if key and e.shape and tf.chunk_table(e) is not None else None
        if rows is None:  # decode whole (its memory checked first, as get_tensor), index
            words = tf.decode(self._name)[2].reshape(e.shape)
            part = words[index]
        else:
            start, stop, take = rows
            row = int(np.prod(e.shape[1:], dtype=np.int64))
            flat = tf.decode_elements(e, start * row, stop * row)
            block = flat.reshape((stop - start,) + e.shape[1:])
            part = block[(take,) + key[1:]]
        part = np.asarray(part)
        part = np.ascontiguousarray(part) if part.ndim else part
        shape = tuple(part.shape)
        flat_words = part.reshape(-1)
        if f._numpy:
            return words_to_numpy(e.dtype, shape, flat_words)
        return words_to_torch(e.dtype, shape, flat_words, f._device)


def _row_range(first: Any, shape: tuple[int, ...]) -> tuple[int, int, Any] | None:
    """(start, stop, index into the decoded block) when the first index selects a contiguous range
    of rows (a slice of step 1 or an integer); None otherwise."""
    n = shape[0]
    if isinstance(first, slice):
        start, stop, step = first.indices(n)
        if step != 1:
            return None
        stop = max(start, stop)
        return start, stop, slice(None)
    if isinstance(first, (int, np.integer)) and not isinstance(first, bool):
        i = int(first)
        if not -n <= i < n:
            raise IndexError(f"index {i} is out of bounds for axis 0 with size {n}")
        i %= n
        return i, i + 1, 0
    return None
