"""Checkpoints read one tensor at a time, so that `encode` holds one input tensor (and at most one
shard's file mapping) at a time instead of the whole checkpoint.

`open_checkpoint` learns names, dtypes, shapes and metadata from the files' headers only;
`LazyCheckpoint.items()` then yields the tensors in order. Safetensors files are checked by
safe_open, then each tensor is read into its own buffer (numpy arrays; bfloat16/float8 as their
lossless components), one shard open at a time, the next tensor on a helper thread while this one is
coded when both are at most READ_AHEAD_BYTES (memory: one more tensor of at most that size); torch checkpoints are loaded
with ``torch.load(weights_only=True, mmap=True)`` (the weights stay in the page cache), and .npz
members are read one by one. The tensors and metadata are exactly those of `io.read_checkpoint`,
in the same order, so the file written from them is byte-identical.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .compress.lossless import lossless
from .dtypes import DTYPES
from .errors import UnsupportedInputError
from .io import INDEX_SUFFIX, TORCH_SUFFIXES, read_checkpoint, read_index, split_checkpoint, torch_load

READ_AHEAD_BYTES = 64 * 2**20  # the next tensor is read while this one is coded when both are at most this large

# bytes per element of safetensors' dtype names (what a safetensors header may declare)
_ST_ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
                "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


@dataclass
class LazyCheckpoint:
    """A checkpoint whose tensors are read when iterated. `shards` maps each input file (a shard
    name for a sharded index, else the file's name) to its tensors; `nbytes` is each tensor's size;
    `dedupe` says whether tensors may share memory (tied weights: only torch checkpoints)."""

    path: str
    names: list[str]
    metadata: dict[str, str]
    notes: list[str]
    shards: dict[str, list[str]]
    nbytes: dict[str, int]
    dedupe: bool = False
    _paths: dict[str, str] = field(default_factory=dict)  # safetensors shard -> its path
    _tensors: dict[str, Any] | None = None  # torch / npz: tensors already at hand (mmap-backed for torch)

    def items(self, names: Iterable[str] | None = None) -> Iterator[tuple[str, Any]]:
        """(name, tensor) for `names` (default: all, in checkpoint order), one at a time."""
        wanted = self.names if names is None else list(names)
        if self._tensors is not None:
            for name in wanted:
                yield name, self._tensors[name]
            return
        shard_of = {name: shard for shard, members in self.shards.items() for name in members}
        current: _ShardReader | None = None

        def read(name: str) -> Any:  # (never on two threads at once: one read is in flight at most)
            nonlocal current
            if current is None or current.path != self._paths[shard_of[name]]:
                if current is not None:
                    current.close()
                current = _ShardReader(self._paths[shard_of[name]])
            return current.get(name)

        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nncodec-read")
        ahead: tuple[str, Future] | None = None
        try:
            for i, name in enumerate(wanted):
                value = ahead[1].result() if ahead is not None and ahead[0] == name else read(name)
                following = wanted[i + 1] if i + 1 < len(wanted) else None
                small = following is not None and max(self.nbytes.get(name, 0), self.nbytes.get(following, 0)) <= READ_AHEAD_BYTES
                ahead = (following, pool.submit(read, following)) if small else None
                yield name, value
                del value
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            if current is not None:
                current.close()

    def total_bytes(self) -> int:
        return sum(self.nbytes.values())


class _ShardReader:
    """Tensors of a safetensors file that safe_open has accepted, each read with one readinto its
    own buffer: no file mapping grows with what was read, and no torch is needed (bfloat16 and
    float8 come as raw storage words, RawTensor, which the lossless path takes as they are)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._file = open(path, "rb", buffering=0)  # noqa: SIM115 - closed in close()
        try:
            n = int.from_bytes(self._file.read(8), "little")
            self._header = json.loads(self._file.read(n))  # (safe_open has validated it)
            self._start = 8 + n
        except BaseException:
            self._file.close()
            raise

    def get(self, name: str) -> Any:
        info = self._header[name]
        begin, end = info["data_offsets"]
        shape = tuple(int(d) for d in info["shape"])
        kind = info["dtype"]
        words = _WORDS.get(kind)
        if words is None:
            raise UnsupportedInputError(f"{self.path}: tensor {name!r} has dtype {kind}, which nncodec does not store")
        numel = math.prod(shape)
        if end - begin != numel * words[1].itemsize:
            raise UnsupportedInputError(f"{self.path}: tensor {name!r} has {end - begin} bytes for shape {shape}")
        data = np.empty(end - begin, dtype=np.uint8)  # (not bytearray: no zeroing, and huge pages when large)
        self._file.seek(self._start + begin)
        if end > begin and self._file.readinto(memoryview(data)) != end - begin:
            raise UnsupportedInputError(f"{self.path}: file ended inside tensor {name!r} (changed while read?)")
        arr = np.frombuffer(data, dtype=words[1]).reshape(shape) if numel else np.zeros(shape, words[1])
        if words[0] is None:
            return arr
        return lossless(arr, DTYPES[words[0]])  # storage words: already the lossless component

    def close(self) -> None:
        self._file.close()


# safetensors dtype -> (nncodec dtype for word-only types or None, numpy dtype of the stored bytes)
_WORDS = {"F64": (None, np.dtype("<f8")), "F32": (None, np.dtype("<f4")), "F16": (None, np.dtype("<f2")),
          "I64": (None, np.dtype("<i8")), "I32": (None, np.dtype("<i4")), "I16": (None, np.dtype("<i2")),
          "I8": (None, np.dtype("i1")), "U64": (None, np.dtype("<u8")), "U32": (None, np.dtype("<u4")),
          "U16": (None, np.dtype("<u2")), "U8": (None, np.dtype("u1")), "BOOL": (None, np.dtype("?")),
          "BF16": ("bfloat16", np.dtype("<u2")), "F8_E4M3": ("float8_e4m3fn", np.dtype("u1")),
          "F8_E5M2": ("float8_e5m2", np.dtype("u1"))}


@contextmanager
def _safetensors_errors(path: str) -> Iterator[None]:
    from safetensors import SafetensorError

    try:
        yield
    except (SafetensorError, RuntimeError, TypeError, ValueError) as e:  # bad header, unknown dtype
        raise UnsupportedInputError(f"{path}: not a readable safetensors file: "
                                    f"{str(e).strip().splitlines()[0]}") from None


def _safe_open(path: str) -> Any:
    from safetensors import safe_open

    with open(path, "rb"):  # a missing or unreadable file raises the usual OSError first
        pass
    with _safetensors_errors(path):
        return safe_open(path, framework="numpy")  # (header checks only: no torch needed)


def _safetensors_header(path: str, names: list[str] | None, index_path: str | None
                        ) -> tuple[list[str], dict[str, str], dict[str, int]]:
    """(tensor names, metadata, bytes per tensor) from a safetensors file's header alone."""
    with _safe_open(path) as f, _safetensors_errors(path):
        meta = dict(sorted((f.metadata() or {}).items()))  # a hash map's order: sorted for deterministic output
        keys = list(f.keys())
        if names is not None:
            present = set(keys)
            missing = [n for n in names if n not in present]
            if missing:
                raise UnsupportedInputError(f"{path}: the index lists {missing[0]!r}, which this shard lacks")
            keys = names
        sizes = {}
        for k in keys:
            s = f.get_slice(k)
            sizes[k] = math.prod(s.get_shape()) * _ST_ITEMSIZE.get(s.get_dtype(), 1)
    return keys, meta, sizes


def open_checkpoint(path: str | os.PathLike) -> LazyCheckpoint:
    """A checkpoint file (.safetensors, sharded *.safetensors.index.json, .pt..., .npz) for lazy
    reading; the same files, errors and refusals as `io.read_checkpoint`."""
    p = os.fspath(path)
    name = os.path.basename(p).lower()
    suffix = os.path.splitext(name)[1]
    if os.path.isdir(p):
        raise IsADirectoryError(21, "is a directory, not a checkpoint file", p)
    if name.endswith(INDEX_SUFFIX):
        index = read_index(p)
        meta = dict(index.metadata)
        shards, paths, sizes = {}, {}, {}
        for shard, members in index.shards.items():
            paths[shard] = index.shard_path(shard)
            shards[shard], shard_meta, shard_sizes = _safetensors_header(paths[shard], members, p)
            sizes.update(shard_sizes)
            for k, v in shard_meta.items():
                meta.setdefault(k, v)
        notes = [f"reading {len(index.weight_map)} tensors from {len(index.shards)} shards"]
        return LazyCheckpoint(p, list(index.weight_map), meta, notes, shards, sizes, _paths=paths)
    if suffix == ".safetensors":
        keys, meta, sizes = _safetensors_header(p, None, None)
        base = os.path.basename(p)
        return LazyCheckpoint(p, keys, meta, [], {base: keys}, sizes, _paths={base: p})
    if suffix in TORCH_SUFFIXES:
        tensors, meta, notes = split_checkpoint(torch_load(p, mmap=True), p)
    else:  # .npz, .nnc and unknown suffixes: read_checkpoint's answer (or its refusal)
        tensors, meta, notes = read_checkpoint(p)
    sizes = {k: int(getattr(t, "nbytes", 0)) for k, t in tensors.items()}
    return LazyCheckpoint(p, list(tensors), meta, notes, {os.path.basename(p): list(tensors)}, sizes,
                          dedupe=suffix in TORCH_SUFFIXES, _tensors=tensors)
