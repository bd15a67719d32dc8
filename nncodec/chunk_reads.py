"""Reading chunked tensors (spec §23) chunk by chunk: only the chunks that hold the requested elements
are read, each checked against its own CRC and decoded on a worker thread straight into the output.
A whole tensor is read the same way: the chunk CRCs cover the section, and checking them on the
workers spreads that work over the cores too.
"""

from __future__ import annotations

import os
import threading
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from . import codecs, decode_memory, parallel
from .errors import CorruptFileError, LimitExceededError

if TYPE_CHECKING:
    from .tensorfile import TensorEntry, TensorFile


def decode_elements(tf: TensorFile, e: TensorEntry, start: int, stop: int, threads: int | None = None,
                    checked: bool = False) -> np.ndarray:
    """Flat storage words [start, stop) of entry `e` of `tf` (any entry; only chunked ones are read in
    part). `checked`: the caller has already checked the decode memory of the whole tensor."""
    if not 0 <= start <= stop <= e.numel:
        raise IndexError(f"elements [{start}, {stop}) are outside tensor {e.name!r} of {e.numel} elements")
    table = tf.chunk_table(e)
    if table is None:
        return tf.decode_entry(e, threads)[2][start:stop]
    ks = table.covering(start, stop)
    first = ks.start * table.n if ks else start
    span = (min(ks.stop * table.n, e.numel) - first) if ks else 0
    if not checked:
        need = decode_memory.chunk_range_peak_bytes(e, table, ks, threads if threads is not None else tf.ctx.threads)
        decode_memory.check(f"elements {start}..{stop} of tensor {e.name!r}", need, tf.limits)
    section = tf.container.sections[e.parts["raw"].section]
    ctx = tf.ctx if threads is None else replace(tf.ctx, threads=threads)
    out = np.empty(span, dtype=e.dtype.storage)

    def one(k: int) -> None:
        a, b = table.elements(k)
        data = read_chunk(tf, section.offset + table.offsets[k], table.offsets[k + 1] - table.offsets[k])
        codecs.chunks.decode_chunk(table, k, data, e.dtype, ctx, codecs.raw.decode_whole, out=out[a - first : b - first])

    try:
        parallel.map_ordered(one, ks, ctx.threads, shared=True)
    except CorruptFileError as exc:
        raise CorruptFileError(f"tensor {e.name!r} (raw, section {section.index}): {exc}") from None
    except MemoryError:
        raise LimitExceededError(f"out of memory while decoding tensor {e.name!r}") from None
    return out[start - first : stop - first]


_scratch = threading.local()  # per worker thread: one chunk's words, reused from chunk to chunk and tensor to tensor
_SCRATCH_KEEP = 1 << 26  # bytes of chunk payload a worker keeps between reads (larger ones get a fresh array)


def _chunk_buffer(dtype: np.dtype, n: int) -> np.ndarray:
    buf = getattr(_scratch, "words", None)
    if buf is None or buf.dtype != dtype or buf.size < n:
        buf = _scratch.words = np.empty(n, dtype=dtype)
    return buf[:n]


def read_chunk(tf: TensorFile, offset: int, length: int) -> bytes | memoryview:
    """A chunk's bytes, read into this worker's reused buffer (Container.read_range_into: cheaper than touching
    the mapping); valid until this thread reads the next chunk."""
    if length > _SCRATCH_KEEP:
        return tf.container.read_range_into(offset, length, np.empty(length, np.uint8))
    buf = getattr(_scratch, "payload", None)
    if buf is None or buf.size < length:
        buf = _scratch.payload = np.empty(max(length, 1 << 20), np.uint8)
    return tf.container.read_range_into(offset, length, buf)


def write_chunks(tf: TensorFile, e: TensorEntry, fd: int, offset: int, threads: int | None = None) -> int:
    """Decode every chunk of chunked entry `e` (spec §23) and write its little-endian words at file offset
    `offset` + the chunk's byte position, with os.pwrite on `fd`: each worker decodes a chunk into a buffer
    of its own, reused, and writes it itself, so the writes run beside the decoding on every core and no
    array of the whole tensor is made (streaming decode to .safetensors). Returns the bytes written."""
    table = tf.chunk_table(e)
    if table is None:
        raise ValueError(f"tensor {e.name!r} is not chunked")
    workers = threads if threads is not None else tf.ctx.threads
    if table.count:  # each worker holds one chunk's words and payload at a time (the largest payload counted)
        k = max(range(table.count), key=lambda i: table.offsets[i + 1] - table.offsets[i])
        need = decode_memory.chunk_range_peak_bytes(e, table, range(k, k + 1), 1)
        decode_memory.check(f"tensor {e.name!r}", need * min(parallel.resolve(workers), table.count), tf.limits)
    section = tf.container.sections[e.parts["raw"].section]
    ctx = tf.ctx if threads is None else replace(tf.ctx, threads=threads)
    size = e.dtype.itemsize

    def one(k: int) -> None:
        a, b = table.elements(k)
        data = read_chunk(tf, section.offset + table.offsets[k], table.offsets[k + 1] - table.offsets[k])
        words = codecs.chunks.decode_chunk(table, k, data, e.dtype, ctx, codecs.raw.decode_whole,
                                           out=_chunk_buffer(e.dtype.storage, b - a))
        view, pos = memoryview(np.ascontiguousarray(words)).cast("B"), offset + a * size
        while view:
            done = os.pwrite(fd, view, pos)
            view, pos = view[done:], pos + done

    try:
        parallel.map_ordered(one, range(table.count), ctx.threads, shared=True)
    except CorruptFileError as exc:
        raise CorruptFileError(f"tensor {e.name!r} (raw, section {section.index}): {exc}") from None
    except MemoryError:
        raise LimitExceededError(f"out of memory while decoding tensor {e.name!r}") from None
    return e.numel * size
