"""How much memory decoding a tensor takes at its peak, known from the header before decoding.

The output size alone is not the decoder's peak: masks, int32 levels, zstd's decompressed bytes
and the planes' symbol streams live beside the output. `tensor_peak_bytes` adds up what the decode
path of each codec allocates (an upper bound: every buffer as if alive at once, survivors = numel),
and `check` compares it with `Limits.max_decode_memory_bytes` and with the memory this process can
still get, so a few bytes declaring a huge tensor are refused before anything is allocated rather
than swapping the machine or, inside constriction, aborting the process.

Measured against tracemalloc in tests/test_decode_memory.py (the model must never be below the
real peak).
"""

from __future__ import annotations

import os
import resource
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import parallel
from .errors import LimitExceededError
from .limits import Limits

if TYPE_CHECKING:
    from .codecs.chunks import ChunkTable
    from .tensorfile import TensorEntry

# Fixed working set of the chunked paths: constriction calls of 2**20 symbols (int32), planes
# reassembly and dequantization blocks of 2**20 words with a few 8-byte temporaries each.
WORKING_SET = 64 * 2**20
_ALWAYS_FITS = WORKING_SET + 2**26  # needs this small are not compared with the free memory
_STREAM_WIDTHS = {"float64": (2, 7), "float32": (1, 3), "float16": (1, 2), "bfloat16": (1, 1)}


def _raw_peak(e: TensorEntry, payload: int) -> int:
    n, out = e.numel, e.nbytes
    part = e.parts["raw"]
    if part.codec == "chunks":  # §23: the output, plus one chunk's working memory per worker thread
        chunk = part.params.get("n") if isinstance(part.params, dict) else None
        chunk = min(chunk, n) if type(chunk) is int and chunk > 0 else n
        return payload + out + parallel.cores() * _whole_extra(e, "planes", chunk)
    return payload + out + _whole_extra(e, part.codec, n)


def _whole_extra(e: TensorEntry, codec: str, n: int) -> int:
    """What decoding `n` elements of one unchunked raw payload allocates beside payload and output."""
    if codec == "copy":
        return 0
    if codec == "zstd":
        return n * e.dtype.itemsize  # the decompressed bytes (copied into the output)
    # planes: every stream (n symbols of 1 or 2 bytes) stays alive until the words are joined;
    # a zstd stream also holds its decompressed bytes while being read
    exp_w, planes = _STREAM_WIDTHS.get(e.dtype.name, (0, e.dtype.itemsize))
    return n * (exp_w + planes) + n * max(exp_w, 1)


def chunk_range_peak_bytes(e: TensorEntry, table: ChunkTable, chunks: range, threads: int | None) -> int:
    """The peak of decoding `chunks` of a chunked tensor into one array (tensorfile.decode_elements)."""
    if not chunks:
        return 0
    elements = min(chunks.stop * table.n, table.numel) - chunks.start * table.n
    workers = min(parallel.resolve(threads), len(chunks))
    biggest = max(table.offsets[k + 1] - table.offsets[k] for k in chunks)
    return elements * e.dtype.itemsize + workers * (biggest + _whole_extra(e, "planes", table.n)) + WORKING_SET


def _quant_peak(e: TensorEntry, payload: int, components: bool) -> int:
    n = e.numel
    mask = 2 * n if "mask" in e.parts else 0  # the mask, plus one context's or the zstd path's bytes
    if "pip" in e.parts:  # pip codes (int32), their probabilities (float64 on request) and the derived mask
        mask = 16 * n
    codec = e.parts["levels"].codec
    if codec == "zstd":
        levels = 4 * n + 12 * n  # decompressed (<= 4 bytes each), int32 result, unzigzag temporaries
    elif codec == "ans-rowclass":
        levels = 24 * n + 8 * (e.shape[0] if e.shape else 1)  # grouped + result (int32), int64 index; per-row counts
    else:
        levels = 4 * n
    if components:
        levels += 8 * n  # components() hands out int64 levels
    return payload + mask + levels + n * e.dtype.itemsize


def tensor_peak_bytes(e: TensorEntry, section_length: Callable[[int], int], components: bool = False) -> int:
    """An upper bound on the bytes decoding `e` allocates at once (output included)."""
    if e.numel == 0:
        return 0
    parts = e.parts
    if len(parts) == 1 and e.vae_group is None and "raw" in parts:  # (the common case, without the sum below)
        return _raw_peak(e, section_length(parts["raw"].section)) + WORKING_SET
    payload = sum(section_length(p.section) for p in parts.values())
    if getattr(e, "vae_group", None) is not None:  # float64 decoder output and float32 residual, then the words
        return payload + (8 + 4 + 4 + e.dtype.itemsize) * e.numel + WORKING_SET
    peak = _raw_peak(e, payload) if "raw" in e.parts else _quant_peak(e, payload, components)
    return peak + WORKING_SET


def available_memory_bytes() -> int:
    """What this process can still allocate: MemAvailable, and the address-space limit (RLIMIT_AS)
    minus what is mapped already; physical memory where /proc is missing."""
    avail = None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            avail = 2**63
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        try:
            with open("/proc/self/statm", encoding="ascii") as f:
                mapped = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            mapped = 0
        avail = min(avail, max(0, soft - mapped))
    return avail


def check(what: str, need: int, limits: Limits) -> None:
    """Refuse (LimitExceededError) a decode whose modelled peak is over the cap or the free memory."""
    limits.check(f"memory to decode {what} (bytes)", need, limits.max_decode_memory_bytes)
    if need <= _ALWAYS_FITS:
        return  # reading /proc per tiny tensor would cost more than decoding it
    free = available_memory_bytes()
    if need > free:
        raise LimitExceededError(f"decoding {what} needs about {need} bytes of memory, "
                                 f"{free} are available")

