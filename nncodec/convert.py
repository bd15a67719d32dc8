"""Between user tensors (torch or numpy) and nncodec's (dtype, shape, storage words)."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from .dtypes import DTYPES, DType, dtype_of_numpy, from_storage, numpy_value_dtype
from .errors import UnsupportedInputError

_TORCH_NAMES = {
    "float64": "float64", "float32": "float32", "float16": "float16", "bfloat16": "bfloat16",
    "int8": "int8", "int16": "int16", "int32": "int32", "int64": "int64", "uint8": "uint8",
    "uint16": "uint16", "uint32": "uint32", "uint64": "uint64", "bool": "bool",
    "float8_e4m3fn": "float8_e4m3fn", "float8_e5m2": "float8_e5m2",
}
_TORCH_WORD_VIEW = {2: "int16", 1: "uint8"}  # dtypes numpy lacks (bfloat16, float8) pass as their words


def _torch():
    """torch, imported on first use: numpy-only decoding (and the CLI's start-up) stays light."""
    import torch

    return torch


def is_torch_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")  # a torch tensor can only exist if torch was imported
    return torch is not None and isinstance(x, torch.Tensor)


_BY_TORCH: dict[Any, tuple[DType, Any]] = {}  # torch dtype -> (DType, torch dtype of its words or None)


def _torch_dtypes(torch: Any) -> dict[Any, tuple[DType, Any]]:
    if not _BY_TORCH:
        for tname, name in _TORCH_NAMES.items():
            if hasattr(torch, tname):
                dt = DTYPES[name]
                _BY_TORCH[getattr(torch, tname)] = dt, getattr(torch, _TORCH_WORD_VIEW[dt.itemsize]) if dt.words_only else None
    return _BY_TORCH


def to_numpy(x: Any, name: str = "tensor") -> tuple[DType, np.ndarray]:
    """(dtype, values) for a torch tensor or numpy array; bfloat16 values come back as uint16 words."""
    if is_torch_tensor(x):
        torch = _torch()
        # the common case first, with fewer calls into torch (checkpoints hold thousands of small tensors):
        # a dense CPU tensor of a supported dtype (quantized and complex dtypes are not in the table)
        hit = _torch_dtypes(torch).get(x.dtype)
        if hit is not None and x.is_cpu and x.layout is torch.strided and not x.is_nested:
            t = x.detach() if x.requires_grad else x
            if not t.is_contiguous():
                t = t.contiguous()
            dt, words = hit
            return dt, (t.numpy() if words is None else t.view(words).numpy().view(dt.storage))
        t = x.detach()
        if t.is_nested:
            raise UnsupportedInputError(f"{name}: nested tensors are not supported; store their components separately")
        if t.device.type == "meta":
            raise UnsupportedInputError(f"{name}: a meta tensor has no data; materialize the model's weights first")
        if t.layout != torch.strided:
            raise UnsupportedInputError(f"{name}: {t.layout} tensors are not supported; convert to dense first")
        if t.is_quantized or t.is_complex():
            raise UnsupportedInputError(f"{name}: dtype {t.dtype} is not supported")
        dname = str(t.dtype).removeprefix("torch.")
        if dname not in _TORCH_NAMES:
            raise UnsupportedInputError(f"{name}: dtype {t.dtype} is not supported; supported: {', '.join(DTYPES)}")
        t = t.to("cpu").contiguous()
        dt = DTYPES[_TORCH_NAMES[dname]]
        if dt.words_only:  # no numpy dtype (bfloat16, float8): its storage words
            return dt, t.view(getattr(torch, _TORCH_WORD_VIEW[dt.itemsize])).numpy().view(dt.storage)
        return dt, t.numpy()
    if isinstance(x, np.ndarray) or np.isscalar(x):
        arr = np.asarray(x)
        return dtype_of_numpy(arr), arr
    raise UnsupportedInputError(f"{name}: expected a torch.Tensor or numpy.ndarray, got {type(x).__name__}")


def words_to_numpy(dt: DType, shape: tuple[int, ...], words: np.ndarray) -> np.ndarray:
    """Values as numpy (bfloat16 as its uint16 words, since numpy has no bfloat16)."""
    return from_storage(words, dt).reshape(shape)


_TORCH_OF: dict[str, tuple[np.dtype, Any]] = {}  # dtype name -> (numpy view dtype, torch dtype to view as or None)


def _torch_view(dt: DType) -> tuple[np.dtype, Any]:
    """How words of `dt` become a torch tensor: the numpy dtype torch.from_numpy takes, and the torch
    dtype to view the result as (bfloat16, float8: numpy has none) or None. Cached: this runs per tensor."""
    got = _TORCH_OF.get(dt.name)
    if got is None:
        torch = _torch()
        if dt.words_only:
            got = np.dtype(_TORCH_WORD_VIEW[dt.itemsize]), getattr(torch, dt.name)
        else:
            got = numpy_value_dtype(dt).newbyteorder("="), None
        _TORCH_OF[dt.name] = got
    return got


def torch_converter(device: str = "cpu") -> Callable[[DType, tuple[int, ...], np.ndarray], Any]:
    """`words_to_torch(dt, shape, words, device)` as one function for a whole load: torch and each dtype's
    views are looked up once, not per tensor (a file of 470 tensors: ~1 us less each)."""
    if device != "cpu":
        return functools.partial(words_to_torch, device=device)
    from_numpy = _torch().from_numpy
    views: dict[str, tuple[np.dtype, Any]] = {}

    def convert(dt: DType, shape: tuple[int, ...], words: np.ndarray) -> Any:
        got = views.get(dt.name)
        if got is None:
            got = views[dt.name] = _torch_view(dt)
        return _as_cpu_torch(from_numpy, got, shape, words)

    return convert


def words_to_torch(dt: DType, shape: tuple[int, ...], words: np.ndarray, device: str = "cpu") -> Any:
    t = _as_cpu_torch(_torch().from_numpy, _torch_view(dt), shape, words)
    return t.to(device) if device != "cpu" else t


def _as_cpu_torch(from_numpy: Callable[[np.ndarray], Any], view: tuple[np.dtype, Any], shape: tuple[int, ...],
                  words: np.ndarray) -> Any:
    """The words as a CPU torch tensor of `shape` through `view` (numpy dtype, torch dtype or None), sharing
    memory when they are writable and contiguous."""
    arr = words.view(view[0]).reshape(shape)
    if not (arr.flags.writeable and arr.flags.c_contiguous):
        arr = arr.copy()  # (np.ascontiguousarray would turn a 0-d array into 1-d)
    t = from_numpy(arr)
    return t if view[1] is None else t.view(view[1])


def storage_key(x: Any) -> tuple | None:
    """Identifies tensors that are the same view of the same memory (tied weights)."""
    if is_torch_tensor(x):
        if x.is_nested or x.numel() == 0:  # (nested: no single shape; empty: every such storage is at 0)
            return None
        try:
            ptr = x.untyped_storage().data_ptr()
        except RuntimeError:
            return None
        device = "cpu" if x.is_cpu else x.device.type  # (is_cpu: no device object built)
        return ("torch", device, ptr, x.storage_offset(), tuple(x.shape), tuple(x.stride()), x.dtype)
    if isinstance(x, np.ndarray) and x.size:
        return ("numpy", x.__array_interface__["data"][0], x.shape, x.strides, x.dtype.str)
    return None
