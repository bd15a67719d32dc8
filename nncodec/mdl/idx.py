"""Reading IDX files (the MNIST / Fashion-MNIST array format), gzipped or not.

The `labels` data kind of a coded dataset (spec §21) is an IDX label file and takes an IDX input file
as side information; the Fashion-MNIST preset of the CLI (nncodec_cli.presets) reads its files here too.
Every size in a file is checked against the bytes actually present before an array is built.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np

from ..errors import LimitExceededError, UnsupportedInputError

# IDX element type codes -> big-endian numpy dtypes.
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
DEFAULT_MAX_BYTES = 2**31  # a decompressed IDX file larger than this is refused (gzip-bomb guard)


def _decompress(raw: bytes, path: str, max_bytes: int) -> bytes:
    """gunzip with an output cap, so a tiny .gz cannot expand into gigabytes unnoticed."""
    d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(raw, max_bytes + 1)
    except zlib.error as e:
        raise UnsupportedInputError(f"{path}: damaged gzip data ({e})") from None
    if len(out) > max_bytes:
        raise LimitExceededError(f"{path}: decompresses to more than {max_bytes} bytes")
    if not d.eof:
        raise UnsupportedInputError(f"{path}: gzip data is truncated")
    return out


def parse_idx(raw: bytes, path: str = "<bytes>") -> np.ndarray:
    """The array held by the (decompressed) bytes of an IDX file, in native byte order."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise UnsupportedInputError(f"{path}: not an IDX file (bad magic)")
    if raw[2] not in IDX_TYPES:
        raise UnsupportedInputError(f"{path}: unknown IDX element type {raw[2]:#04x}")
    ndim = raw[3]
    start = 4 + 4 * ndim
    if len(raw) < start:
        raise UnsupportedInputError(f"{path}: truncated IDX header ({ndim} dimensions declared)")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(IDX_TYPES[raw[2]])
    count = 1
    for n in shape:
        count *= n  # Python ints: no overflow
    if count * dtype.itemsize != len(raw) - start:
        raise UnsupportedInputError(f"{path}: {len(raw) - start} data bytes where shape {shape} needs "
                                    f"{count * dtype.itemsize}")
    arr = np.frombuffer(raw, dtype=dtype, offset=start, count=count).reshape(shape)
    return arr.astype(dtype.newbyteorder("="))


def read_idx_bytes(path: str | os.PathLike, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The bytes of an IDX file, unzipped when gzipped (detected from the bytes, not the name)."""
    p = os.fspath(path)
    raw = Path(p).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = _decompress(raw, p, max_bytes)
    return raw


def read_idx(path: str | os.PathLike, max_bytes: int = DEFAULT_MAX_BYTES) -> np.ndarray:
    """The array in an IDX file (``.gz`` or plain; detected from the bytes, not the name)."""
    return parse_idx(read_idx_bytes(path, max_bytes), os.fspath(path))
