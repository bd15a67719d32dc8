"""The public API, shaped after safetensors: save_file / load_file / open, plus bytes-level
save / load and load_into for a torch module."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from .codecs.base import EncodeOptions
from .components import QuantTensor, RawTensor
from .compress.lossless import lossless
from .container.writer import atomic_write
from .convert import storage_key, to_numpy, words_to_numpy, words_to_torch
from .errors import BadArgumentError
from .limits import DEFAULT_LIMITS, Limits
from .tensorfile import Alias, TensorFile, encode_file, open_tensor_file

Compressor = Callable[[str, Any], "RawTensor | QuantTensor | None"]


def _check_metadata(metadata: Mapping[str, str] | None) -> dict[str, str] | None:
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise BadArgumentError("metadata must map str to str (like safetensors); json.dumps other values first")
    return dict(metadata)


def compress_tensors(tensors: Mapping[str, Any], compressor: Compressor | None = None,
                     progress: Callable[[str], None] | None = None) -> dict[str, RawTensor | QuantTensor | Alias]:
    """Components for every tensor: `compressor(name, tensor)` may return a component set or None
    (None = lossless). Tensors that share memory (tied weights) are stored once, as aliases."""
    if not isinstance(tensors, Mapping):
        raise BadArgumentError(f"tensors must be a mapping of names to tensors, not {type(tensors).__name__}")
    out: dict[str, RawTensor | QuantTensor | Alias] = {}
    seen: dict[tuple, str] = {}
    for name, value in tensors.items():
        if not isinstance(name, str):
            raise BadArgumentError(f"tensor names must be strings, got {name!r}")
        if isinstance(value, (RawTensor, QuantTensor)):
            out[name] = value
            continue
        key = storage_key(value)
        if key is not None and key in seen:
            out[name] = Alias(seen[key])
            continue
        comp = compressor(name, value) if compressor else None
        if comp is None:
            dt, arr = to_numpy(value, name)
            comp = lossless(arr, dt)
        out[name] = comp
        if key is not None:
            seen[key] = name
        if progress:
            progress(name)
    return out


def save(tensors: Mapping[str, Any], metadata: Mapping[str, str] | None = None, *, prefer: str = "balanced",
         compressor: Compressor | None = None, align: int = 1, progress: Callable[[str], None] | None = None) -> bytes:
    """The bytes of a .nnc file holding `tensors` (lossless unless a compressor says otherwise);
    `progress(name)` is called as each tensor is coded."""
    meta = _check_metadata(metadata)
    return encode_file(compress_tensors(tensors, compressor), meta, EncodeOptions(prefer=prefer), align, progress)


def save_file(tensors: Mapping[str, Any], filename: str | os.PathLike, *, metadata: Mapping[str, str] | None = None,
              prefer: str = "balanced", compressor: Compressor | None = None, overwrite: bool = True) -> int:
    """Write `tensors` to `filename` atomically; returns the file size in bytes (its description length)."""
    data = save(tensors, metadata, prefer=prefer, compressor=compressor)
    atomic_write(filename, data, overwrite=overwrite)
    return len(data)


class NncFile:
    """A lazily read .nnc file: opening reads only the preamble and header."""

    def __init__(self, source: Any, *, framework: str = "pt", device: str = "cpu", limits: Limits = DEFAULT_LIMITS) -> None:
        if framework not in ("pt", "torch", "np", "numpy"):
            raise BadArgumentError(f"framework must be 'pt' or 'np', not {framework!r}")
        self._tf: TensorFile = open_tensor_file(source, limits)
        self._numpy = framework in ("np", "numpy")
        self._device = device
        self._cache: dict[str, Any] = {}

    def keys(self) -> list[str]:
        return list(self._tf.names)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __contains__(self, name: object) -> bool:
        return name in self._tf.names

    def __len__(self) -> int:
        return len(self._tf.names)

    def metadata(self) -> dict[str, str]:
        return dict(self._tf.metadata)

    def get_tensor(self, name: str) -> Any:
        """Decode one tensor, reading only its own sections. Tied names return the same object."""
        target = self._tf.aliases.get(name, name)
        if target in self._cache:
            return self._cache[target]
        dt, shape, words = self._tf.decode(target)
        value = words_to_numpy(dt, shape, words) if self._numpy else words_to_torch(dt, shape, words, self._device)
        if target != name or any(t == target for t in self._tf.aliases.values()):
            self._cache[target] = value
        return value

    def components(self, name: str) -> RawTensor | QuantTensor:
        """The decoded components (mask, levels, quantizer or raw words) of tensor `name`."""
        return self._tf.decode_components(name)

    def get_pip(self, name: str) -> Any:
        """The posterior inclusion probabilities of tensor `name` (float32, its shape), decoded from its
        `pip` component alone; None if the tensor was stored without them."""
        pip = self._tf.decode_pip(self._tf.aliases.get(name, name))
        if pip is None:
            return None
        shape = self._tf.resolve(name).shape
        value = pip.probabilities().reshape(shape)
        if self._numpy:
            return value
        import torch

        return torch.from_numpy(value).to(self._device)

    def info(self) -> dict:
        """Every byte of the file attributed to a part; see `nncodec info`."""
        return self._tf.byte_report()

    def verify(self) -> None:
        """Check every section checksum and decode every tensor; raises NNCodecError on damage."""
        for s in self._tf.container.sections:
            self._tf.container.read_section(s.index)
        for name in self._tf.entries:
            self._tf.decode(name)

    def close(self) -> None:
        self._tf.container.close()

    def __enter__(self) -> NncFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open(filename: Any, framework: str = "pt", device: str = "cpu", *, limits: Limits = DEFAULT_LIMITS) -> NncFile:  # noqa: A001
    """Open a .nnc file (path, bytes or binary file object) for lazy access, like safetensors.safe_open."""
    return NncFile(filename, framework=framework, device=device, limits=limits)


def load_file(filename: str | os.PathLike, device: str = "cpu", *, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """All tensors of a .nnc file as a dict of torch tensors."""
    with NncFile(filename, device=device, limits=limits) as f:
        return {name: f.get_tensor(name) for name in f}


def load(data: bytes, device: str = "cpu", *, framework: str = "pt", limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """All tensors of .nnc bytes (torch tensors, or numpy arrays with framework='np')."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BadArgumentError(f"load() takes bytes, not {type(data).__name__}; use load_file() for paths")
    with NncFile(data, framework=framework, device=device, limits=limits) as f:
        return {name: f.get_tensor(name) for name in f}


def load_into(module: Any, filename: str | os.PathLike, strict: bool = True, device: str | None = None) -> Any:
    """Load a .nnc file into a torch module's parameters and buffers (returns missing/unexpected keys)."""
    if device is None:
        try:
            device = str(next(module.parameters()).device)
        except StopIteration:
            device = "cpu"
    state = load_file(filename, device=device)
    return module.load_state_dict(state, strict=strict)


def numpy_state(tensors: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Numpy copies of torch/numpy tensors (bfloat16 as uint16 words)."""
    return {k: to_numpy(v, k)[1] for k, v in tensors.items()}
