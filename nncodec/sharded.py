"""Sharded .nnc checkpoints: one .nnc file per shard plus an index `NAME.nnc.index.json`
(spec/FORMAT.md §22) that maps every tensor to its shard, as Hugging Face's safetensors index does.

The index is untrusted input like any file: its size, JSON, members, names and shard file names are
checked before anything else is read (a shard must be a plain file name in the index's folder, also
after resolving symbolic links), and each shard must hold exactly the tensors the index gives it.
`ShardedFile` offers NncFile's reading verbs over all shards, opening each shard when first needed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .container import strict_json
from .errors import ClosedFileError, FormatError, LimitExceededError, UnsupportedVersionError
from .limits import DEFAULT_LIMITS, Limits

NNC_INDEX_SUFFIX = ".nnc.index.json"
INDEX_FORMAT = "nnc-index"
INDEX_VERSION = 1
MAX_INDEX_BYTES = 64 * 2**20
_KEYS = ("format", "version", "metadata", "weight_map")


def is_index(path: object) -> bool:
    """Whether `path` names a sharded .nnc index (by its name, as safetensors' indexes are known)."""
    return isinstance(path, (str, os.PathLike)) and os.fspath(path).lower().endswith(NNC_INDEX_SUFFIX)


def shard_names(index_path: str | os.PathLike, count: int) -> list[str]:
    """The shard file names for an index: `NAME-00001-of-00005.nnc` ... beside `NAME.nnc.index.json`."""
    base = os.path.basename(os.fspath(index_path))
    stem = base[: -len(NNC_INDEX_SUFFIX)] if is_index(base) else base
    width = max(5, len(str(count)))
    return [f"{stem}-{i:0{width}d}-of-{count:0{width}d}.nnc" for i in range(1, count + 1)]


def index_bytes(weight_map: dict[str, str], metadata: dict[str, str] | None = None) -> bytes:
    """The index file's bytes (deterministic: members in spec order, tensors in file order)."""
    doc: dict[str, Any] = {"format": INDEX_FORMAT, "version": INDEX_VERSION}
    if metadata:
        doc["metadata"] = dict(metadata)
    doc["weight_map"] = dict(weight_map)
    return (json.dumps(doc, indent=2, ensure_ascii=True, allow_nan=False) + "\n").encode("ascii")


@dataclass(frozen=True)
class NncIndex:
    path: str
    weight_map: dict[str, str]  # tensor name -> shard file name, in tensor order
    shards: dict[str, list[str]]  # shard file name -> its tensors, in order of first appearance
    metadata: dict[str, str]

    def shard_path(self, shard: str) -> str:
        """The shard's path, refused when it resolves (through symbolic links) outside the index's folder."""
        folder = os.path.realpath(os.path.dirname(os.path.abspath(self.path)))
        target = os.path.realpath(os.path.join(folder, shard))
        if os.path.dirname(target) != folder:
            raise FormatError(f"{self.path}: shard {shard!r} resolves to {target}, outside the index's folder")
        return target


def _shard_file_name(shard: object, path: str) -> str:
    if (not isinstance(shard, str) or shard in ("", ".", "..") or "/" in shard or "\\" in shard or "\0" in shard
            or os.path.isabs(shard) or os.path.basename(shard) != shard or (len(shard) > 1 and shard[1] == ":")
            or not shard.lower().endswith(".nnc")):
        raise FormatError(f"{path}: shard {shard!r} is not a plain .nnc file name in the index's folder")
    return shard


def read_index(path: str | os.PathLike, limits: Limits = DEFAULT_LIMITS) -> NncIndex:
    """The checked contents of a `.nnc.index.json` (§22); FormatError / LimitExceededError /
    UnsupportedVersionError for anything else."""
    p = os.fspath(path)
    if os.path.isdir(p):
        raise FormatError(f"{p} is a directory, not a .nnc index")
    with open(p, "rb") as fh:
        raw = fh.read(MAX_INDEX_BYTES + 1)
    if len(raw) > MAX_INDEX_BYTES:
        raise LimitExceededError(f"{p}: index file is larger than {MAX_INDEX_BYTES} bytes")
    doc = strict_json.loads(raw, limits.max_json_depth, "index")
    if not isinstance(doc, dict):
        raise FormatError(f"{p}: the index must be a JSON object")
    for key in doc:
        if key not in _KEYS and not key.startswith("x-"):
            raise UnsupportedVersionError(f"{p}: the index has the unknown critical member {key!r}")
    if doc.get("format") != INDEX_FORMAT:
        raise FormatError(f"{p}: not a .nnc index (\"format\" must be {INDEX_FORMAT!r})")
    version = doc.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise FormatError(f"{p}: \"version\" must be an integer")
    if version != INDEX_VERSION:
        raise UnsupportedVersionError(f"{p}: index version {version} needs a newer nncodec (this one reads {INDEX_VERSION})")
    meta = doc.get("metadata", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise FormatError(f"{p}: \"metadata\" must map strings to strings")
    weight_map = doc.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise FormatError(f"{p}: \"weight_map\" must be a non-empty object mapping tensor names to shard files")
    limits.check("number of tensors in the index", len(weight_map), limits.max_tensors)
    shards: dict[str, list[str]] = {}
    for name, shard in weight_map.items():
        shards.setdefault(_shard_file_name(shard, p), []).append(name)
    return NncIndex(p, dict(weight_map), shards, dict(meta))


class ShardedFile:
    """The tensors of a sharded .nnc checkpoint, read lazily like `nncodec.open` of one file."""

    def __init__(self, path: str | os.PathLike, *, framework: str = "pt", device: str = "cpu",
                 limits: Limits = DEFAULT_LIMITS, threads: int | None = None) -> None:
        self.index = read_index(path, limits)
        self._options = {"framework": framework, "device": device, "limits": limits, "threads": threads}
        self._open: dict[str, Any] = {}
        self._closed = False

    def shard(self, shard: str) -> Any:
        """The open NncFile of one shard (opened on first use and checked against the index)."""
        if self._closed:
            raise ClosedFileError("this sharded file is closed: use it inside its `with nncodec.open(...)` block")
        f = self._open.get(shard)
        if f is None:
            from .api import NncFile

            f = NncFile(self.index.shard_path(shard), **self._options)
            listed, held = self.index.shards[shard], f.keys()
            if set(listed) != set(held):
                extra = sorted(set(held) - set(listed))[:1] or sorted(set(listed) - set(held))[:1]
                f.close()
                raise FormatError(f"{self.index.path}: shard {shard} holds different tensors than the index lists "
                                  f"({extra[0]!r} is in only one of them)")
            self._open[shard] = f
        return f

    def keys(self) -> list[str]:
        return list(self.index.weight_map)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __contains__(self, name: object) -> bool:
        return name in self.index.weight_map

    def __len__(self) -> int:
        return len(self.index.weight_map)

    def metadata(self) -> dict[str, str]:
        return dict(self.index.metadata)

    def _shard_of(self, name: str) -> Any:
        if name not in self.index.weight_map:
            raise KeyError(f"no tensor named {name!r} in this checkpoint")
        return self.shard(self.index.weight_map[name])

    def get_tensor(self, name: str) -> Any:
        return self._shard_of(name).get_tensor(name)

    def get_slice(self, name: str) -> Any:
        """Part of tensor `name` (see NncFile.get_slice), from the shard that holds it."""
        return self._shard_of(name).get_slice(name)

    def components(self, name: str) -> Any:
        return self._shard_of(name).components(name)

    def check_memory(self, names: list[str] | None = None) -> None:
        """Each shard's tensors fit in memory (all kept: see NncFile.check_memory), summed over shards."""
        from . import decode_memory

        wanted = self.keys() if names is None else list(names)
        kept, extra = 0, 0
        for shard in self.index.shards:
            tf = self.shard(shard)._open_file()
            mine = [n for n in wanted if self.index.weight_map.get(n) == shard]
            for name in dict.fromkeys(tf.aliases.get(n, n) for n in mine):
                e = tf.resolve(name)
                out = e.nbytes
                kept += out
                extra = max(extra, tf.peak_bytes(name) - out)
        decode_memory.check(f"{len(wanted)} tensors", kept + extra, self._options["limits"])

    def _load_all(self) -> dict[str, Any]:
        self.check_memory()
        return {name: self.get_tensor(name) for name in self}

    def info(self) -> dict:
        """The byte report of every shard, and their total (every byte of every file accounted for)."""
        files = [{"file": shard, **self.shard(shard).info()} for shard in self.index.shards]
        index_size = os.path.getsize(self.index.path)
        return {"index": self.index.path, "index_bytes": index_size, "files": files,
                "file_bytes": sum(f["file_bytes"] for f in files)}

    def verify(self) -> None:
        for shard in self.index.shards:
            self.shard(shard).verify()

    def error_summary(self) -> dict | None:
        """The first shard's lossy error summary (each shard measures its own tensors), None if lossless."""
        for shard in self.index.shards:
            summary = self.shard(shard).error_summary()
            if summary:
                return summary
        return None

    def close(self) -> None:
        self._closed = True
        for f in self._open.values():
            f.close()
        self._open.clear()

    def __enter__(self) -> ShardedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
