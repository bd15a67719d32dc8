"""The public API, shaped after safetensors: save_file / load_file / open, plus bytes-level
save / load and load_into for a torch module."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np

from . import fidelity, gc_pause, parallel
from .codecs.base import EncodeOptions, check_threads
from .components import QuantTensor, RawTensor
from .compress.lossless import lossless
from .container.writer import atomic_write
from .convert import storage_key, to_numpy, torch_converter, words_to_numpy, words_to_torch
from .errors import BadArgumentError, ClosedFileError, LimitExceededError
from .limits import DEFAULT_LIMITS, Limits
from .sharded import ShardedFile, is_index
from .slicing import TensorSlice
from .tensorfile import TensorEntry, TensorFile, open_tensor_file
from .tensorwriter import Alias, encode_file, encode_to_path

Compressor = Callable[[str, Any], "RawTensor | QuantTensor | None"]
Progress = Callable[[str, str], None]  # progress(stage, tensor name); stage "compress" or "code"


def _check_metadata(metadata: Mapping[str, str] | None) -> dict[str, str] | None:
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise BadArgumentError("metadata must map str to str (like safetensors); json.dumps other values first")
    return dict(metadata)


def compress_tensors(tensors: Mapping[str, Any], compressor: Compressor | None = None,
                     progress: Callable[[str], None] | None = None) -> dict[str, RawTensor | QuantTensor | Alias]:
    """Components for every tensor: `compressor(name, tensor)` may return a component set or None
    (None = lossless). Tensors that share memory (tied weights) are stored once, as aliases;
    `progress(name)` is called after each stored (non-alias) tensor is compressed."""
    if not isinstance(tensors, Mapping):
        raise BadArgumentError(f"tensors must be a mapping of names to tensors, not {type(tensors).__name__}")
    return dict(compressed_items(tensors.items(), compressor, progress))


def compressed_items(items: Iterable[tuple[str, Any]], compressor: Compressor | None = None,
                     progress: Callable[[str], None] | None = None, dedupe: bool = True
                     ) -> Iterator[tuple[str, RawTensor | QuantTensor | Alias]]:
    """`compress_tensors` one tensor at a time (streaming). With `dedupe`, tensors that share memory
    become aliases; each first tensor of a storage is kept referenced until the end, so its address
    cannot be reused by a later tensor and taken for a tie (sources whose tensors cannot share memory,
    read one at a time, pass dedupe=False)."""
    seen: dict[tuple, tuple[str, Any]] = {}
    for name, value in items:
        if not isinstance(name, str):
            raise BadArgumentError(f"tensor names must be strings, got {name!r}")
        if isinstance(value, (RawTensor, QuantTensor, Alias)):
            yield name, value
            continue
        key = storage_key(value) if dedupe else None
        if key is not None and key in seen:
            yield name, Alias(seen[key][0])
            continue
        comp = compressor(name, value) if compressor else None
        if comp is None:
            dt, arr = to_numpy(value, name)
            comp = lossless(arr, dt)
        if key is not None:
            seen[key] = (name, value)
        if progress:
            progress(name)
        yield name, comp


def unique_nbytes(tensors: Mapping[str, Any]) -> int:
    """The uncompressed size of `tensors`: each storage counted once, as it is stored once (tied
    weights), each tensor in its own dtype. The one definition used by `encode`, `info` and the bar."""
    total, seen = 0, set()
    for value in tensors.values():
        if isinstance(value, (RawTensor, QuantTensor)):
            total += int(np.prod(value.shape, dtype=np.int64)) * value.dtype.itemsize
            continue
        if isinstance(value, Alias):
            continue
        key = storage_key(value)
        if key is not None:
            if key in seen:
                continue
            seen.add(key)
        if hasattr(value, "element_size"):
            total += int(value.numel()) * int(value.element_size())
        else:
            total += int(getattr(value, "nbytes", 0))
    return total


def save(tensors: Mapping[str, Any], metadata: Mapping[str, str] | None = None, *, prefer: str = "balanced",
         compressor: Compressor | None = None, align: int = 1, progress: Progress | None = None,
         threads: int | None = None) -> bytes:
    """The bytes of a .nnc file holding `tensors` (lossless unless a compressor says otherwise).

    Large tensors are cut into chunks coded on `threads` threads (None or 0: every core); the bytes
    are the same for any number of threads.

    `progress(stage, name)` is called after each stored tensor is compressed (stage "compress", only
    with a compressor) and coded (stage "code"); nothing is printed. A lossy file carries the relative
    L2 error of its weights (nncodec.fidelity), which `nncodec info` shows."""
    meta = _check_metadata(metadata)
    with gc_pause.paused():
        comps = compress_tensors(tensors, compressor, (lambda n: progress("compress", n)) if progress and compressor else None)
        summary = fidelity.measure(tensors, comps) if compressor else None
        code_progress = None
        if progress:
            def code_progress(name: str) -> None:
                if not isinstance(comps.get(name), Alias):
                    progress("code", name)
        return encode_file(comps, meta, EncodeOptions(prefer=prefer, threads=threads), align, code_progress,
                           optional={fidelity.HEADER_KEY: summary} if summary else None)


def save_file(tensors: Mapping[str, Any], filename: str | os.PathLike, *, metadata: Mapping[str, str] | None = None,
              prefer: str = "balanced", compressor: Compressor | None = None, overwrite: bool = True,
              threads: int | None = None) -> int:
    """Write `tensors` to `filename` atomically; returns the file size in bytes (its description length).

    Lossless files are streamed: each tensor is coded and its sections written before the next, so
    memory holds one tensor's coding at a time (the bytes are those of `save`)."""
    name = os.fspath(filename)
    try:
        if compressor is None:
            if not isinstance(tensors, Mapping):
                raise BadArgumentError(f"tensors must be a mapping of names to tensors, not {type(tensors).__name__}")
            meta = _check_metadata(metadata)
            with gc_pause.paused():
                return encode_to_path(compressed_items(tensors.items()), name, meta,
                                      EncodeOptions(prefer=prefer, threads=threads), overwrite=overwrite)
        data = save(tensors, metadata, prefer=prefer, compressor=compressor, threads=threads)
        atomic_write(filename, data, overwrite=overwrite)
        return len(data)
    except FileExistsError:  # name the user's file, not the temporary one beside it
        raise FileExistsError(errno.EEXIST, "file exists (pass overwrite=True to replace it)", name) from None
    except FileNotFoundError:
        folder = os.path.dirname(os.path.abspath(name))
        if os.path.isdir(folder):
            raise
        raise FileNotFoundError(errno.ENOENT, "the folder does not exist (create it first)", folder) from None


@contextmanager
def out_of_memory_is_a_limit(what: str) -> Iterator[None]:
    """A MemoryError (numpy, torch) while `what` becomes LimitExceededError: nothing foreign escapes."""
    try:
        yield
    except MemoryError:
        raise LimitExceededError(f"out of memory while {what}") from None


class NncFile:
    """A lazily read .nnc file: opening reads only the preamble and header."""

    def __init__(self, source: Any, *, framework: str = "pt", device: str = "cpu", limits: Limits = DEFAULT_LIMITS,
                 threads: int | None = None) -> None:
        if framework not in ("pt", "torch", "np", "numpy"):
            raise BadArgumentError(f"framework must be 'pt' or 'np', not {framework!r}")
        check_threads(threads)
        if framework in ("pt", "torch") and device != "cpu":  # "cpu" needs no check (and no torch import)
            check_device(device)
        self._closed = False
        with out_of_memory_is_a_limit("reading the header"):
            self._tf: TensorFile = open_tensor_file(source, limits, threads)
        self._numpy = framework in ("np", "numpy")
        self._device = device
        self._cache: dict[str, Any] = {}
        self._tied: set[str] | None = None  # targets of aliases: cached so tied names share one object

    def _open_file(self) -> TensorFile:
        if self._closed:
            raise ClosedFileError("this NncFile is closed: use it inside its `with nncodec.open(...)` block "
                                  "(or call nncodec.load_file to keep every tensor)")
        return self._tf

    def keys(self) -> list[str]:
        return list(self._open_file().names)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __contains__(self, name: object) -> bool:
        tf = self._open_file()
        if not isinstance(name, str):
            return False
        try:
            tf.alias_of(name)
        except KeyError:
            return False
        return True

    def __len__(self) -> int:
        return len(self._open_file().names)

    def metadata(self) -> dict[str, str]:
        return dict(self._open_file().metadata)

    def get_tensor(self, name: str) -> Any:
        """Decode one tensor, reading only its own sections. Tied names return the same object."""
        tf = self._open_file()
        target = tf.alias_of(name) or name
        if target in self._cache:
            return self._cache[target]
        with out_of_memory_is_a_limit(f"decoding {name!r}"):
            dt, shape, words = tf.decode(name)  # (through resolve: an alias of a missing tensor is a FormatError)
            value = words_to_numpy(dt, shape, words) if self._numpy else words_to_torch(dt, shape, words, self._device)
        if self._tied is None:
            self._tied = tf.alias_targets()
        if target in self._tied:
            self._cache[target] = value
        return value

    def get_slice(self, name: str) -> TensorSlice:
        """Part of tensor `name`, decoded on indexing: `f.get_slice(name)[a:b]` reads only the chunks
        holding rows a..b of a chunked raw tensor; other tensors are decoded whole, then indexed
        (nncodec/slicing.py). `.get_shape()` and `.get_dtype()` need no decoding."""
        with out_of_memory_is_a_limit(f"opening a slice of {name!r}"):
            return TensorSlice(self, name)

    def check_memory(self, names: list[str] | None = None) -> None:
        """Raise LimitExceededError unless the tensors `names` (default: all), decoded and all kept,
        fit in memory: their outputs plus the largest single decode's working memory."""
        tf = self._open_file()
        tf.check_memory_for_all(tf.names if names is None else list(names))

    def _load_all(self) -> dict[str, Any]:
        """Every tensor, after checking the whole file (every entry and reference) and that all of
        them together fit in memory (they are all kept). That one check covers each tensor's own, so
        the tensors are decoded straight from their entries (no per-tensor re-check: files hold
        thousands of small tensors). Its callers, load and load_file, pause the garbage collector around
        the open and this call."""
        tf = self._open_file()
        tf.validate_all()
        self.check_memory()
        names, aliases, by_name = list(self), tf.aliases, tf.entries  # (validated: every alias names an entry)
        targets = list(dict.fromkeys(aliases.get(n, n) for n in names))  # tied names: decoded once
        entries = [by_name[t] for t in targets]
        convert = words_to_numpy if self._numpy else torch_converter(self._device)

        def one(e: TensorEntry) -> Any:
            try:
                return convert(*tf.decode_entry(e))
            except MemoryError:
                raise LimitExceededError(f"out of memory while decoding {e.name!r}") from None

        values = dict(zip(targets, parallel.map_sized(one, entries, [e.nbytes for e in entries], tf.ctx.threads,
                                                          shared=True, min_bytes=parallel.DECODE_MIN_BYTES),
                          strict=True))
        return {name: values[aliases.get(name, name)] for name in names}

    def components(self, name: str) -> RawTensor | QuantTensor:
        """The decoded components (mask, levels, quantizer or raw words) of tensor `name`."""
        tf = self._open_file()
        with out_of_memory_is_a_limit(f"decoding the components of {name!r}"):
            return tf.decode_components(name)

    def get_pip(self, name: str) -> Any:
        """The posterior inclusion probabilities of tensor `name` (float32, its shape), decoded from its
        `pip` component alone; None if the tensor was stored without them."""
        tf = self._open_file()
        pip = tf.decode_pip(tf.alias_of(name) or name)
        if pip is None:
            return None
        shape = tf.resolve(name).shape
        value = pip.probabilities().reshape(shape)
        if self._numpy:
            return value
        import torch

        return torch.from_numpy(value).to(self._device)

    def info(self) -> dict:
        """Every byte of the file attributed to a part; see `nncodec info`."""
        tf = self._open_file()
        with out_of_memory_is_a_limit("building the byte report"):
            return tf.byte_report()

    def verify(self) -> None:
        """Check every section checksum and decode every tensor; raises NNCodecError on damage."""
        tf = self._open_file()
        tf.validate_all()
        for s in tf.container.sections:
            tf.read_section(s.index)
        for name in tf.entries:
            tf.decode(name)

    def error_summary(self) -> dict | None:
        """The relative L2 error per tensor class stored by a lossy encode (None: lossless file)."""
        return self._open_file().error_summary

    def close(self) -> None:
        self._closed = True
        self._tf.container.close()

    def __enter__(self) -> NncFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_device(device: object) -> None:
    """Refuse a device this torch cannot use before anything is decoded (a typed error, not torch's)."""
    from .convert import _torch

    torch = _torch()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise BadArgumentError(f"{device!r} is not a torch device (use 'cpu', 'cuda', 'cuda:1', 'mps'...)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BadArgumentError(f"device {device!r} is not available: this torch build or machine has no CUDA "
                               "(use device='cpu')")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise BadArgumentError(f"device {device!r} is not available on this machine (use device='cpu')")


def open(filename: Any, framework: str = "pt", device: str = "cpu", *, limits: Limits = DEFAULT_LIMITS,  # noqa: A001
         threads: int | None = None) -> NncFile:
    """Open a .nnc file (path, bytes or binary file object) for lazy access, like safetensors.safe_open;
    a sharded checkpoint's `NAME.nnc.index.json` opens all its shards as one (nncodec/sharded.py).
    Chunked tensors decode on `threads` threads (None or 0: every core)."""
    if is_index(filename):
        return ShardedFile(filename, framework=framework, device=device, limits=limits,  # type: ignore[return-value]
                           threads=threads)
    return NncFile(filename, framework=framework, device=device, limits=limits, threads=threads)


def load_file(filename: str | os.PathLike, device: str = "cpu", *, limits: Limits = DEFAULT_LIMITS,
              threads: int | None = None) -> dict[str, Any]:
    """All tensors of a .nnc file (or of a sharded checkpoint's `.nnc.index.json`) as a dict of torch tensors."""
    with gc_pause.paused(), open(filename, device=device, limits=limits, threads=threads) as f:
        return f._load_all()


def load(data: bytes, device: str = "cpu", *, framework: str = "pt", limits: Limits = DEFAULT_LIMITS,
         threads: int | None = None) -> dict[str, Any]:
    """All tensors of .nnc bytes (torch tensors, or numpy arrays with framework='np')."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BadArgumentError(f"load() takes bytes, not {type(data).__name__}; use load_file() for paths")
    with gc_pause.paused(), NncFile(data, framework=framework, device=device, limits=limits, threads=threads) as f:
        return f._load_all()


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
