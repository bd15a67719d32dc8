"""Reading and writing the checkpoint formats people already have (.pt, .safetensors, sharded
safetensors, .npz), so `nncodec encode` / `decode` convert to and from .nnc.

Nothing here executes code from a file: torch checkpoints are read only with
``torch.load(weights_only=True)`` and .npz only with ``allow_pickle=False``.
"""

from __future__ import annotations

import io
import json
import os
import re
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .container.writer import atomic_write
from .convert import to_numpy, words_to_torch
from .dtypes import to_storage
from .errors import BadArgumentError, UnsupportedInputError

TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
INDEX_SUFFIX = ".safetensors.index.json"
MAX_INDEX_BYTES = 64 * 2**20
MAX_NESTING = 32  # deepest dict/list nesting of a checkpoint that is walked (the rest is skipped)
# Where training scripts put the model's state dict inside a larger checkpoint, in order of preference.
STATE_KEYS = ("state_dict", "model_state_dict", "model", "module")
# Top-level entries that are training state, not model weights (skipped when the top level is the state dict).
_TRAINING_STATE = re.compile(r"optim|scheduler|scaler", re.IGNORECASE)

Checkpoint = tuple[dict[str, Any], dict[str, str], list[str]]


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """(tensors, metadata, notes) of a checkpoint file.

    tensors maps names to torch tensors (numpy arrays for .npz); metadata maps str to str;
    notes lists what was skipped or moved to metadata, for the user to see.
    """
    p = os.fspath(path)
    name = os.path.basename(p).lower()
    if os.path.isdir(p):
        raise IsADirectoryError(21, "is a directory, not a checkpoint file", p)
    if name.endswith(INDEX_SUFFIX):
        return _read_sharded(p)
    suffix = os.path.splitext(name)[1]
    if suffix == ".safetensors":
        tensors, meta = _read_safetensors(p)
        return tensors, meta, []
    if suffix in TORCH_SUFFIXES:
        return _read_torch(p)
    if suffix == ".npz":
        return _read_npz(p)
    if suffix == ".nnc":
        raise UnsupportedInputError(f"{p} is already a .nnc file (`nncodec decode` converts it back)")
    raise UnsupportedInputError(
        f"{p}: unknown checkpoint type {suffix or '(no extension)'!r}; nncodec reads "
        f"{', '.join(TORCH_SUFFIXES)}, .safetensors, *{INDEX_SUFFIX} and .npz")


# ----------------------------------------------------------------------------------- torch


def _refusal(path: str, err: Exception) -> UnsupportedInputError:
    """One line explaining why torch.load(weights_only=True) refused a file."""
    found = re.search(r"GLOBAL ([\w.]+)", str(err))
    if not found:
        return UnsupportedInputError(
            f"{path}: refused: it uses pickle features that torch.load(weights_only=True) does not allow "
            "(not a plain checkpoint of tensors, or damaged)")
    return UnsupportedInputError(
        f"{path}: refused to unpickle a pickled {found.group(1)}; nncodec reads torch checkpoints only with "
        "torch.load(weights_only=True). If you trust the file, re-save just the weights, e.g. "
        "torch.save(model.state_dict(), 'weights.pt')")


def _read_torch(path: str) -> Checkpoint:
    return split_checkpoint(torch_load(path), path)


def torch_load(path: str, mmap: bool = False) -> Any:
    """torch.load(weights_only=True) of a checkpoint, refusals as UnsupportedInputError. With `mmap`
    the tensors stay in the file's pages (a checkpoint that torch cannot map is read normally)."""
    import pickle

    import torch

    with open(path, "rb"):  # a missing or unreadable file raises the usual OSError first
        pass
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if mmap:
                try:
                    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
                except RuntimeError as e:
                    if "mmap" not in str(e):  # (an old, non-zip checkpoint cannot be mapped: read below)
                        raise
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises RuntimeError, KeyError, EOFError... on non-checkpoints
        if isinstance(e, pickle.UnpicklingError) and "weights only" in str(e).lower():
            raise _refusal(path, e) from None
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        if "TorchScript" in first:
            reason = "it is a TorchScript archive (code, not just weights)"
        elif isinstance(e, (KeyError, EOFError, pickle.UnpicklingError)) or not first:
            reason = "neither a torch.save zip archive nor a pickle, or truncated"
        else:
            reason = first
        raise UnsupportedInputError(f"{path}: not a readable torch checkpoint: {reason}") from None


def _is_tensor(x: Any) -> bool:
    import torch

    return isinstance(x, torch.Tensor)


def _has_tensor(obj: Any, depth: int = 0) -> bool:
    if _is_tensor(obj):
        return True
    if depth > MAX_NESTING:
        return False
    if isinstance(obj, Mapping):
        return any(_has_tensor(v, depth + 1) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(_has_tensor(v, depth + 1) for v in obj)
    return False


def _json_value(x: Any, depth: int = 0) -> Any:
    """x as plain JSON data, or raise TypeError when it is not plain data (a tensor, an object...)
    or nests deeper than MAX_NESTING (a 3,000-deep list would otherwise exhaust the stack)."""
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    if isinstance(x, np.generic):
        return x.item()
    if depth >= MAX_NESTING:
        raise TypeError(f"nested deeper than {MAX_NESTING} levels")
    if isinstance(x, (list, tuple)):
        return [_json_value(v, depth + 1) for v in x]
    if isinstance(x, Mapping) and all(isinstance(k, str) for k in x):
        return {k: _json_value(v, depth + 1) for k, v in x.items()}
    raise TypeError(type(x).__name__)


def _describe(x: Any) -> str:
    if isinstance(x, Mapping):
        return f"a dict of {len(x)} entries"
    if isinstance(x, (list, tuple)):
        return f"a {type(x).__name__} of {len(x)} items"
    return f"a {type(x).__name__}"


def split_checkpoint(obj: Any, path: str = "checkpoint") -> Checkpoint:
    """Find the state dict inside a loaded torch checkpoint and sort everything else out.

    The state dict is the top level, or the first of STATE_KEYS that holds tensors. Nested dicts
    (and lists) of tensors are flattened with dotted names; plain values (numbers, strings, lists of
    them) become metadata (strings as they are, the rest JSON-encoded); anything else is skipped and named in the notes.
    """
    tensors: dict[str, Any] = {}
    meta: dict[str, str] = {}
    notes: list[str] = []
    if _is_tensor(obj):
        stem = os.path.basename(path).split(".")[0] or "tensor"
        notes.append(f"the file holds a single tensor; it is stored as {stem!r}")
        return {stem: obj}, meta, notes
    if not isinstance(obj, Mapping):
        raise UnsupportedInputError(f"{path}: holds {_describe(obj)}, not a dict of tensors (a state dict)")

    state: Mapping = obj
    rest: dict[str, Any] = {}
    for key in STATE_KEYS:
        if isinstance(obj.get(key), Mapping) and _has_tensor(obj[key]):
            state = obj[key]
            rest = {str(k): v for k, v in obj.items() if k != key}
            notes.append(f"using the state dict under {key!r}")
            break
    else:
        for k in list(obj):
            if isinstance(k, str) and _TRAINING_STATE.search(k) and not _is_tensor(obj[k]):
                rest[k] = obj[k]
        if rest:
            state = {k: v for k, v in obj.items() if k not in rest}

    def walk(prefix: str, value: Any, depth: int) -> None:
        if _is_tensor(value):
            if prefix in tensors:
                raise UnsupportedInputError(f"{path}: two tensors flatten to the same name {prefix!r}")
            tensors[prefix] = value
            return
        if isinstance(value, (Mapping, list, tuple)) and _has_tensor(value) and depth < MAX_NESTING:
            items = value.items() if isinstance(value, Mapping) else enumerate(value)
            for k, v in items:
                walk(f"{prefix}.{k}" if prefix else str(k), v, depth + 1)
            return
        to_metadata(prefix, value)

    def to_metadata(key: str, value: Any) -> None:
        try:
            # strings as they are (like the safetensors index's metadata), everything else as JSON
            meta[key] = value if isinstance(value, str) else json.dumps(_json_value(value), allow_nan=True,
                                                                           ensure_ascii=False)
        except (TypeError, ValueError):
            notes.append(f"skipped {key!r} ({_describe(value)}, not tensors or plain values)")

    for k, v in state.items():
        walk(str(k), v, 0)
    for k, v in rest.items():
        if _is_tensor(v) or _has_tensor(v):
            notes.append(f"skipped {k!r} ({_describe(v)} outside the model's state dict, e.g. optimizer state)")
        else:
            to_metadata(k, v)
    if not tensors:
        found = ", ".join(sorted(map(str, obj))[:8]) or "nothing"
        raise UnsupportedInputError(f"{path}: no tensors found (top-level keys: {found})")
    return tensors, meta, notes


# ----------------------------------------------------------------------------------- safetensors


def _read_safetensors(path: str, names: list[str] | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    with open(path, "rb"):
        pass
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            meta = dict(sorted((f.metadata() or {}).items()))  # its order is a hash map's: sort for deterministic output
            keys = list(f.keys())
            if names is not None:
                missing = [n for n in names if n not in keys]
                if missing:
                    raise UnsupportedInputError(f"{path}: the index lists {missing[0]!r}, which this shard lacks")
                keys = names
            return {k: f.get_tensor(k) for k in keys}, meta
    except (SafetensorError, RuntimeError, TypeError, ValueError) as e:  # bad header, unknown dtype
        raise UnsupportedInputError(f"{path}: not a readable safetensors file: {str(e).strip().splitlines()[0]}") from None


def _plain_file_name(shard: object, index_path: str) -> str:
    """Shards must sit beside the index: a bare file name, no directories, no traversal."""
    if (not isinstance(shard, str) or not shard or shard in (".", "..") or "/" in shard or "\\" in shard
            or "\0" in shard or os.path.isabs(shard) or os.path.basename(shard) != shard
            or (len(shard) > 1 and shard[1] == ":")):
        raise UnsupportedInputError(f"{index_path}: shard name {shard!r} is not a plain file name in the index's directory")
    return shard


def _shard_path(directory: str, shard: str, index_path: str) -> str:
    """The shard's path, refused when it resolves (through symbolic links) outside the index's folder:
    the name check alone lets a link beside the index point anywhere."""
    target = os.path.realpath(os.path.join(directory, shard))
    if os.path.dirname(target) != os.path.realpath(directory):
        raise UnsupportedInputError(f"{index_path}: shard {shard!r} resolves to {target}, outside the index's folder")
    return target


@dataclass(frozen=True)
class ShardedIndex:
    """A Hugging Face sharded safetensors index, checked: tensor names in weight_map order, the
    shards (in order of first appearance) with their tensors, and the index's metadata."""

    path: str
    weight_map: dict[str, str]  # tensor name -> shard file name
    shards: dict[str, list[str]]  # shard file name -> its tensors, in weight_map order
    metadata: dict[str, str]

    def shard_path(self, shard: str) -> str:
        return _shard_path(os.path.dirname(os.path.abspath(self.path)), shard, self.path)


def read_index(path: str) -> ShardedIndex:
    with open(path, "rb") as fh:
        raw = fh.read(MAX_INDEX_BYTES + 1)
    if len(raw) > MAX_INDEX_BYTES:
        raise UnsupportedInputError(f"{path}: index file is larger than {MAX_INDEX_BYTES} bytes")
    try:
        index = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise UnsupportedInputError(f"{path}: not valid JSON ({e})") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise UnsupportedInputError(f"{path}: a sharded index needs a non-empty 'weight_map' object")
    by_shard: dict[str, list[str]] = {}
    for name, shard in weight_map.items():
        by_shard.setdefault(_plain_file_name(shard, path), []).append(name)
    meta: dict[str, str] = {}
    extra = index.get("metadata") or {}
    if isinstance(extra, dict):
        for k, v in extra.items():
            meta[str(k)] = v if isinstance(v, str) else json.dumps(v)
    return ShardedIndex(path, dict(weight_map), by_shard, meta)


def _read_sharded(path: str) -> Checkpoint:
    index = read_index(path)
    meta = dict(index.metadata)
    notes = [f"reading {len(index.weight_map)} tensors from {len(index.shards)} shards"]
    loaded: dict[str, Any] = {}
    for shard, names in index.shards.items():
        tensors, shard_meta = _read_safetensors(index.shard_path(shard), names)
        loaded.update(tensors)
        for k, v in shard_meta.items():
            meta.setdefault(k, v)
    return {name: loaded[name] for name in index.weight_map}, meta, notes


# ----------------------------------------------------------------------------------- npz


def _read_npz(path: str) -> Checkpoint:
    with open(path, "rb"):
        pass
    try:
        with np.load(path, allow_pickle=False) as z:
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise UnsupportedInputError(f"{path}: not an .npz archive")
            arrays = {name: z[name] for name in z.files}
    except UnsupportedInputError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as e:
        if "allow_pickle" in str(e):
            raise UnsupportedInputError(f"{path}: holds object arrays (pickled Python objects), which are refused") from None
        raise UnsupportedInputError(f"{path}: not a readable .npz archive: {str(e).strip().splitlines()[0]}") from None
    if not arrays:
        raise UnsupportedInputError(f"{path}: the .npz archive holds no arrays")
    return arrays, {}, []


# ----------------------------------------------------------------------------------- writing


def output_format(path: str | os.PathLike) -> str:
    """'safetensors' or 'pt', from the output file name (BadArgumentError for anything else)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".safetensors":
        return "safetensors"
    if suffix in (".pt", ".pth", ".bin"):
        return "pt"
    raise BadArgumentError(f"{os.fspath(path)}: choose an output ending in .safetensors or .pt")


def _as_torch(name: str, value: Any) -> Any:
    if _is_tensor(value):
        return value
    dt, arr = to_numpy(value, name)
    return words_to_torch(dt, tuple(arr.shape), to_storage(arr, dt).reshape(-1))


def checkpoint_bytes(tensors: Mapping[str, Any], fmt: str, metadata: Mapping[str, str] | None = None) -> bytes:
    """The bytes of a .safetensors or .pt file (a plain state dict) holding `tensors`."""
    import torch

    state = {name: _as_torch(name, v) for name, v in tensors.items()}
    if fmt == "pt":
        buf = io.BytesIO()
        torch.save(state, buf)
        return buf.getvalue()
    if fmt != "safetensors":
        raise BadArgumentError(f"unknown checkpoint format {fmt!r}; use 'safetensors' or 'pt'")
    from safetensors.torch import save

    seen: set[int] = set()
    for name, t in state.items():  # safetensors refuses shared memory: give tied tensors their own copy
        ptr = t.untyped_storage().data_ptr() if t.numel() else None
        if ptr in seen or not t.is_contiguous():
            state[name] = t.contiguous().clone()
        elif ptr is not None:
            seen.add(ptr)
    return save(state, metadata=dict(metadata) if metadata else None)


def write_checkpoint(tensors: Mapping[str, Any], path: str | os.PathLike, metadata: Mapping[str, str] | None = None,
                     overwrite: bool = False, fmt: str | None = None) -> int:
    """Write `tensors` as .safetensors (with `metadata`) or .pt (a plain state dict, no metadata),
    chosen by `fmt` or the file name; atomically, never replacing a file unless `overwrite`.
    Returns the number of bytes written."""
    data = checkpoint_bytes(tensors, fmt or output_format(path), metadata)
    atomic_write(path, data, overwrite=overwrite)
    return len(data)
