"""zstandard frames, written with content size and checksum, read with every size checked first.

python-zstandard's `max_output_size` does not bound a frame that declares its content size, so the
declared size is read from the frame header and compared with what the container expects before
any decompression happens; trailing data after the frame is refused.
"""

from __future__ import annotations

import threading

import zstandard

from ..errors import CorruptFileError

LEVEL = 19
_FRAME_MAGIC = b"\x28\xb5\x2f\xfd"  # 0xFD2FB528 little-endian


def compress(data: bytes | memoryview, level: int = LEVEL) -> bytes:
    cctx = zstandard.ZstdCompressor(level=level, write_content_size=True, write_checksum=True, threads=0)
    return cctx.compress(bytes(data))


# Optimal parsing with a short search: on low-entropy symbol streams (float exponents) this gets
# the size of level 19 (Huffman-coded literals, few matches) at ~10x its speed.
_LITERAL_HEAVY = zstandard.ZstdCompressionParameters(
    strategy=zstandard.STRATEGY_BTOPT, min_match=5, search_log=1, window_log=18, hash_log=16,
    chain_log=16, target_length=16, write_content_size=True, write_checksum=True, threads=0)


def compress_literal_heavy(data: bytes | memoryview) -> bytes:
    return zstandard.ZstdCompressor(compression_params=_LITERAL_HEAVY).compress(bytes(data))


# Huffman-coded literals with almost no matches, in blocks of 2**window_log bytes (64 KiB by default): on
# the symbol streams of float weights (exponents: 2.5-3.5 bits of entropy) matches cost more than the
# literals they replace, and a Huffman table per block adapts to local statistics. Measured on real weights
# (rapidocr, resemblyzer, LeNet-300-100; fp32 and bf16): 1-4 % smaller than level 1 or 3 on the exponent
# stream and the fastest of the levels and strategies tried (encode and decode). 64 KiB beats 128 KiB
# blocks where statistics change along the tensor (resemblyzer's exponents +6.4 kB, rapidocr_x4's +32 kB
# with 128 KiB) and loses only a little where they do not (LeNet-300 -141 B). `pairs` packs two symbols per
# byte, so it uses 32 KiB blocks: the same 64 Ki symbols per Huffman table. No content checksum: these
# frames live in sections or chunks whose CRC-32 is checked before a frame is decoded (§5, §23), so it
# would cost 4 bytes per frame for nothing.
def _huffman_literals(window_log: int) -> zstandard.ZstdCompressionParameters:
    return zstandard.ZstdCompressionParameters(
        strategy=zstandard.STRATEGY_FAST, min_match=7, search_log=1, window_log=window_log, hash_log=6,
        write_content_size=True, write_checksum=False, threads=0)


_local = threading.local()  # one compression / decompression context per thread (creating one costs more
# than coding a small stream; a context must not be shared by two threads at once)


def compress_fast(data: bytes | memoryview, window_log: int = 16) -> bytes:
    contexts = getattr(_local, "fast", None)
    if contexts is None:
        contexts = _local.fast = {}
    cctx = contexts.get(window_log)
    if cctx is None:
        cctx = contexts[window_log] = zstandard.ZstdCompressor(compression_params=_huffman_literals(window_log))
    return cctx.compress(data)


def _decompressor() -> zstandard.ZstdDecompressor:
    dctx = getattr(_local, "dctx", None)
    if dctx is None:
        dctx = _local.dctx = zstandard.ZstdDecompressor(max_window_size=1 << 27)
    return dctx


def decompress(frame: bytes | memoryview, expected_size: int, what: str) -> bytes:
    """Exactly `expected_size` bytes from one zstd frame, or CorruptFileError."""
    if bytes(frame[:4]) != _FRAME_MAGIC:  # a skippable frame (or anything else) is not a zstd data frame
        raise CorruptFileError(f"{what}: not a zstd frame (bad magic number)")
    try:
        params = zstandard.get_frame_parameters(frame)
    except zstandard.ZstdError as exc:
        raise CorruptFileError(f"{what}: not a zstd frame ({exc})") from None
    if params.content_size != expected_size:
        declared = "no size" if params.content_size == zstandard.CONTENTSIZE_UNKNOWN else params.content_size
        raise CorruptFileError(f"{what}: zstd frame declares {declared} bytes, expected {expected_size}")
    if params.window_size > max(expected_size, 1 << 10) and params.window_size > (1 << 27):
        raise CorruptFileError(f"{what}: zstd window of {params.window_size} bytes is larger than needed")
    try:
        out = _decompressor().decompress(frame, max_output_size=expected_size, allow_extra_data=False)
    except zstandard.ZstdError as exc:
        raise CorruptFileError(f"{what}: zstd frame does not decode ({exc})") from None
    if len(out) != expected_size:
        raise CorruptFileError(f"{what}: zstd frame gave {len(out)} bytes, expected {expected_size}")
    return out
