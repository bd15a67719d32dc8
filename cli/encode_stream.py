"""Lossless `nncodec encode`, streamed: the checkpoint is read one tensor at a time and each tensor's
sections are written before the next is read, to one .nnc file, to stdout, or to one .nnc per
input shard plus an index (`-o NAME.nnc.index.json`, `--shard I/N`)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nncodec.api import Compressor, compressed_items, unique_nbytes
from nncodec.codecs.base import EncodeOptions
from nncodec.container.atomic import track, untrack
from nncodec.sharded import is_index
from nncodec.sharded_write import encode_sharded
from nncodec.streaming import open_checkpoint
from nncodec.tensorwriter import encode_to_path

from .common import Progress, display_name, note, plural, stdin_checkpoint


@contextmanager
def checkpoint_file(source: Path) -> Iterator[Path]:
    """The checkpoint's path; stdin ('-') as a temporary file named by its format."""
    if str(source) == "-":
        with stdin_checkpoint() as path:
            yield path
    else:
        yield source


def encode_streaming(path: Path, out: Path, bar: Progress, *, prefer: str, metadata: dict[str, str], force: bool,
                     part: tuple[int, int] | None, quiet: bool, to_stdout: bool, threads: int = 0,
                     compressor: Compressor | None = None) -> tuple[dict[str, int], int, int]:
    """Encode losslessly (a per-tensor `compressor` may still be applied, one tensor at a time);
    returns ({file: bytes written}, number of tensors, uncompressed bytes)."""
    bar.phase(f"reading {display_name(path)}")
    ckpt = open_checkpoint(path)
    for message in ckpt.notes if not quiet else ():
        note(message)
    meta = {**ckpt.metadata, **metadata}
    raw = unique_nbytes(ckpt._tensors) if ckpt._tensors is not None else ckpt.total_bytes()
    bar.phase(f"coding {plural(len(ckpt.names), 'tensor')} losslessly", total=raw)

    def step(name: str) -> None:
        bar.update(ckpt.nbytes.get(name, 0))

    options = EncodeOptions(prefer=prefer, threads=threads)
    if is_index(out):
        written = encode_sharded(ckpt, out, metadata=meta, options=options, part=part, overwrite=force, progress=step)
        return written, len(ckpt.names), raw
    items = compressed_items(ckpt.items(), compressor, dedupe=ckpt.dedupe)
    if not to_stdout:
        return {str(out): encode_to_path(items, out, meta, options, progress=step, overwrite=force)}, len(ckpt.names), raw
    with tempfile.TemporaryDirectory(prefix="nncodec-stdout-") as folder:  # stream to a file, then copy it out
        track(folder)  # removed on cancellation too (cli/cancel.py)
        tmp = os.path.join(folder, "out.nnc")
        size = encode_to_path(items, tmp, meta, options, progress=step)
        bar.phase("writing stdout")
        with open(tmp, "rb") as fh:
            shutil.copyfileobj(fh, sys.stdout.buffer, 1 << 20)
        sys.stdout.flush()
        untrack(folder)
    return {"-": size}, len(ckpt.names), raw
