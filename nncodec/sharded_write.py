"""Encoding a checkpoint into a sharded .nnc checkpoint: one .nnc per input shard plus the index.

Each shard is an ordinary streamed .nnc file that depends on nothing but its own input shard, so
shards can be encoded by separate processes or machines (`part=(i, n)`: this process takes input
shards i, i+n, i+2n, ... counted from 1) and the result is byte-identical to one run doing all of
them. The index is computed from the input's names alone; every part writes the same bytes (an
index already there with other bytes is replaced only with `overwrite`).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from .api import compressed_items
from .codecs.base import EncodeOptions
from .container.atomic import atomic_write
from .errors import BadArgumentError
from .sharded import index_bytes, is_index, shard_names
from .streaming import LazyCheckpoint
from .tensorwriter import encode_to_path


def parse_part(text: str) -> tuple[int, int]:
    """`I/N` (1 ≤ I ≤ N) as a pair of ints, BadArgumentError otherwise."""
    i, sep, n = text.partition("/")
    if not sep or not i.strip().isdigit() or not n.strip().isdigit() or not 1 <= int(i) <= int(n):
        raise BadArgumentError(f"--shard takes I/N with 1 <= I <= N (e.g. 2/4), got {text!r}")
    return int(i), int(n)


def plan_shards(ckpt: LazyCheckpoint, index_path: str | os.PathLike) -> tuple[dict[str, str], dict[str, str]]:
    """(input shard -> output .nnc file name, tensor name -> output file name)."""
    files = dict(zip(ckpt.shards, shard_names(index_path, len(ckpt.shards)), strict=True))
    shard_of = {name: shard for shard, members in ckpt.shards.items() for name in members}
    return files, {name: files[shard_of[name]] for name in ckpt.names}


def encode_sharded(ckpt: LazyCheckpoint, index_path: str | os.PathLike, *, metadata: dict[str, str] | None = None,
                   options: EncodeOptions | None = None, part: tuple[int, int] | None = None, overwrite: bool = False,
                   progress: Callable[[str], None] | None = None) -> dict[str, int]:
    """Write this part's shards and the index; returns {file name: size} of the shards written."""
    path = os.fspath(index_path)
    if not is_index(path):
        raise BadArgumentError(f"{path}: a sharded output is named NAME.nnc.index.json")
    folder = os.path.dirname(os.path.abspath(path))
    files, weight_map = plan_shards(ckpt, path)
    index = index_bytes(weight_map, metadata)
    if os.path.exists(path) and not overwrite:
        with open(path, "rb") as fh:
            if fh.read(len(index) + 1) != index:
                raise FileExistsError(17, "exists with other contents (use --force to overwrite it)", path)
    written: dict[str, int] = {}
    try:
        for number, (shard, out) in enumerate(files.items(), start=1):
            if part is not None and (number - 1) % part[1] != part[0] - 1:
                continue
            items = compressed_items(ckpt.items(ckpt.shards[shard]), dedupe=ckpt.dedupe)
            written[out] = encode_to_path(items, os.path.join(folder, out), metadata, options or EncodeOptions(),
                                          progress=progress, overwrite=overwrite)
        _write_index(path, index, overwrite)
    except BaseException:
        if part is None:  # a whole run leaves all or nothing; a part keeps its finished shards
            for out in written:
                os.unlink(os.path.join(folder, out))
        raise
    return written


def _write_index(path: str, index: bytes, overwrite: bool) -> None:
    """The index, unless the same bytes are already there (another part wrote them, maybe just now)."""
    try:
        atomic_write(path, index, overwrite=overwrite)
    except FileExistsError:
        with open(path, "rb") as fh:
            if fh.read(len(index) + 1) != index:
                raise
