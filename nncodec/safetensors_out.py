"""Decoding to .safetensors one tensor at a time: the safetensors header is computed from the .nnc
header alone (names, dtypes, shapes), written first, and each tensor is then decoded and written in
place, so memory holds one decoded tensor at a time. A Hugging Face style sharded folder
(`model-00001-of-00003.safetensors` ... plus `model.safetensors.index.json`) is written the same way.

The files follow the safetensors format (8-byte little-endian header length, JSON header padded with
spaces to a multiple of 8, then the data): tensors are laid out by decreasing element size, then by
name, so every tensor is aligned to its element size; tied tensors get their own copy, since
safetensors has no sharing.
"""

from __future__ import annotations

import json
import os
import re
import stat
import struct
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO

import numpy as np

from . import chunk_reads, parallel
from .container.atomic import AtomicFile, StagingDir
from .errors import BadArgumentError

ST_DTYPES = {"float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16", "int64": "I64",
             "int32": "I32", "int16": "I16", "int8": "I8", "uint64": "U64", "uint32": "U32", "uint16": "U16",
             "uint8": "U8", "bool": "BOOL", "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2"}
HF_INDEX = "model.safetensors.index.json"
HF_SINGLE = "model.safetensors"
DEFAULT_SHARD_SIZE = "5GB"
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}

Spec = tuple[str, int, tuple[int, ...]]  # safetensors dtype, bytes per element, shape


def parse_size(text: str) -> int:
    """'5GB' (10**9), '500MiB' (2**20), '1000000' -> bytes; as Hugging Face's max_shard_size."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?I?B?)\s*", str(text).upper())
    if not found or found.group(2) not in _UNITS or float(found.group(1)) * _UNITS[found.group(2)] < 1:
        raise BadArgumentError(f"{text!r} is not a size (e.g. 5GB, 500MB, 2GiB)")
    return int(float(found.group(1)) * _UNITS[found.group(2)])


def tensor_spec(f: Any, name: str) -> Spec:
    """(safetensors dtype, element size, shape) of tensor `name` of an open .nnc (or sharded .nnc), from its header."""
    owner = f._shard_of(name) if hasattr(f, "_shard_of") else f
    entry = owner._open_file().resolve(name)
    if entry.dtype.name not in ST_DTYPES:
        raise BadArgumentError(f"tensor {name!r}: safetensors has no dtype for {entry.dtype.name}")
    return ST_DTYPES[entry.dtype.name], entry.dtype.itemsize, tuple(entry.shape)


def nbytes(spec: Spec) -> int:
    return int(np.prod(spec[2], dtype=object)) * spec[1] if spec[2] else spec[1]


def layout(specs: dict[str, Spec], metadata: dict[str, str] | None) -> tuple[bytes, list[str]]:
    """(the header bytes including the 8-byte length, tensor names in data order)."""
    order = sorted(specs, key=lambda n: (-specs[n][1], n))
    header: dict[str, Any] = {"__metadata__": dict(metadata)} if metadata else {}
    pos = 0
    for name in order:
        dtype, _, shape = specs[name]
        end = pos + nbytes(specs[name])
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [pos, end]}
        pos = end
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-(8 + len(text)) % 8)
    return struct.pack("<Q", len(text)) + text, order


def tensor_bytes(value: Any) -> memoryview:
    """The little-endian bytes of a decoded tensor (numpy; bfloat16 as its uint16 words)."""
    arr = np.ascontiguousarray(np.asarray(value))
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    return memoryview(arr.reshape(-1)).cast("B")


_AHEAD_BYTES = 64 * 2**20  # a tensor this small is decoded while the one before it is written


def write_safetensors(f: Any, names: list[str], out: BinaryIO, metadata: dict[str, str] | None,
                      progress: Callable[[str], None] | None = None) -> int:
    """Tensors `names` of the open file `f` (framework 'np') to `out`, one at a time; returns bytes written.
    Into a regular file, a chunked tensor (§23) is written chunk by chunk by the decoding workers themselves
    (chunk_reads.write_chunks: no array of the whole tensor, the writes beside the decoding on every core).
    Any other tensor is decoded whole; the next one, if at most _AHEAD_BYTES and not chunked, on a helper
    thread while this one is written (memory: one tensor plus at most _AHEAD_BYTES; `f` is only touched by
    one thread at a time)."""
    specs = {n: tensor_spec(f, n) for n in names}
    header, order = layout(specs, metadata)
    fd = _file_descriptor(out)
    pos = out.tell() if fd is not None else 0
    out.write(header)
    pos += len(header)
    if fd is not None:
        out.flush()
    direct = {n: _chunked(f, n) for n in order} if fd is not None else {}
    threads = _threads_of(f)

    def fetch(name: str) -> memoryview:
        data = tensor_bytes(f.get_tensor(name))
        release_pages(f)
        return data

    one_thread = parallel.resolve(threads) == 1
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="nncodec-ahead") as pool:
        pending = None
        for i, name in enumerate(order):
            if direct.get(name) is not None:
                tf, entry = direct[name]
                chunk_reads.write_chunks(tf, entry, fd, pos, threads)
                release_pages(f)
            else:
                data = pending.result() if pending is not None else fetch(name)
                following = order[i + 1] if i + 1 < len(order) else None
                ahead = (not one_thread and following is not None and direct.get(following) is None
                         and nbytes(specs[following]) <= _AHEAD_BYTES)
                pending = pool.submit(fetch, following) if ahead else None
                if fd is not None:
                    _pwrite_all(fd, data, pos)
                else:
                    out.write(data)
                del data
            pos += nbytes(specs[name])
            if progress:
                progress(name)
    if fd is not None:
        out.seek(pos)
    return len(header) + sum(nbytes(specs[n]) for n in order)


def _file_descriptor(out: BinaryIO) -> int | None:
    """The descriptor of `out` if it is a regular file that os.pwrite can write at any offset (not a pipe)."""
    if not hasattr(os, "pwrite"):  # (not on Windows)
        return None
    try:
        fd = out.fileno()
        return fd if out.seekable() and stat.S_ISREG(os.fstat(fd).st_mode) else None
    except (AttributeError, OSError, ValueError):
        return None


def _chunked(f: Any, name: str) -> tuple[Any, Any] | None:
    """(tensor file, entry) of tensor `name` if it is a chunked raw tensor (§23), else None."""
    owner = f._shard_of(name) if hasattr(f, "_shard_of") else f
    tf = owner._open_file()
    entry = tf.resolve(name)
    return (tf, entry) if entry.vae_group is None and tf.chunk_table(entry) is not None else None


def _pwrite_all(fd: int, data: memoryview, pos: int) -> None:
    while data:
        done = os.pwrite(fd, data, pos)
        data, pos = data[done:], pos + done


def _threads_of(f: Any) -> int | None:
    """The `threads` an open .nnc (NncFile) or sharded index (ShardedFile) was opened with."""
    options = getattr(f, "_options", None)
    if isinstance(options, dict):
        return options.get("threads")
    return f._open_file().ctx.threads


def release_pages(f: Any) -> None:
    """Drop the resident pages of the memory-mapped .nnc file(s) that `f` reads (Container.release):
    a mapped file's pages count in the process's memory while it is mapped, so decoding a whole file
    tensor by tensor would otherwise grow to the file's size."""
    shards = getattr(f, "_open", None)
    for nnc in shards.values() if isinstance(shards, dict) else (f,):
        nnc._open_file().container.release()


def plan_shards(specs: dict[str, Spec], names: list[str], max_bytes: int) -> list[list[str]]:
    """Hugging Face's split: tensors in order, a new shard when the next would pass `max_bytes`
    (a tensor larger than that gets a shard of its own)."""
    shards: list[list[str]] = [[]]
    size = 0
    for name in names:
        n = nbytes(specs[name])
        if shards[-1] and size + n > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += n
    return shards


def folder_files(f: Any, max_bytes: int) -> tuple[dict[str, list[str]], dict[str, Spec]]:
    """{file name: its tensors} of the Hugging Face layout of `f` (one `model.safetensors` when
    everything fits in one shard, as Hugging Face writes it), and every tensor's spec."""
    names = list(f.keys())
    specs = {n: tensor_spec(f, n) for n in names}
    shards = plan_shards(specs, names, max_bytes)
    if len(shards) == 1:
        return {HF_SINGLE: shards[0]}, specs
    count = len(shards)
    return {f"model-{i:05d}-of-{count:05d}.safetensors": s for i, s in enumerate(shards, start=1)}, specs


def write_folder(f: Any, folder: str | os.PathLike, max_bytes: int, *, overwrite: bool = False,
                 progress: Callable[[str], None] | None = None) -> dict[str, int]:
    """Decode `f` into `folder` as Hugging Face lays out a safetensors checkpoint; the files appear
    together at the end (staged beside the folder). Returns {file name: bytes}."""
    files, specs = folder_files(f, max_bytes)
    metadata = f.metadata()
    written: dict[str, int] = {}
    with StagingDir(folder, overwrite=overwrite) as stage:
        for file, names in files.items():
            with open(os.path.join(stage.path, file), "wb") as out:
                written[file] = write_safetensors(f, names, out, metadata, progress)
        if len(files) > 1:
            weight_map = {n: file for file, names in files.items() for n in names}
            index = {"metadata": {"total_size": sum(nbytes(specs[n]) for n in weight_map)},
                     "weight_map": dict(sorted(weight_map.items()))}
            data = (json.dumps(index, indent=2, sort_keys=True) + "\n").encode()
            with open(os.path.join(stage.path, HF_INDEX), "wb") as out:
                out.write(data)
            written[HF_INDEX] = len(data)
        stage.commit()
    return written


def write_file(f: Any, path: str | os.PathLike, *, overwrite: bool = False,
               progress: Callable[[str], None] | None = None) -> int:
    """Decode `f` into one .safetensors file, atomically, one tensor at a time."""
    out = AtomicFile(path, overwrite=overwrite)
    with out as fh:
        size = write_safetensors(f, list(f.keys()), fh, f.metadata(), progress)
        out.commit()
    return size
