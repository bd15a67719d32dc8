"""Reading IDX files (the MNIST / Fashion-MNIST format), gzipped or not.

Used by the benchmarks and the demo-checkpoint script; the package never downloads anything.
Every size in a file is checked against the bytes actually present before an array is built.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np

from .errors import BadArgumentError, LimitExceededError, UnsupportedInputError

# IDX element type codes -> big-endian numpy dtypes.
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
DEFAULT_MAX_BYTES = 2**31  # a decompressed IDX file larger than this is refused (gzip-bomb guard)

SPLIT_PREFIX = {"train": "train", "test": "t10k"}


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


def read_idx(path: str | os.PathLike, max_bytes: int = DEFAULT_MAX_BYTES) -> np.ndarray:
    """The array in an IDX file (``.gz`` or plain; detected from the bytes, not the name)."""
    p = os.fspath(path)
    raw = Path(p).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = _decompress(raw, p, max_bytes)
    return parse_idx(raw, p)


def _find(directory: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f"{directory / stem}[.gz] not found (expected the standard MNIST file names)")


def load_fashion_mnist(data_dir: str | os.PathLike, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 28, 28], labels uint8 [N]) of a Fashion-MNIST (or MNIST) split in `data_dir`,
    stored under the standard file names (``train-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz``...)."""
    if split not in SPLIT_PREFIX:
        raise BadArgumentError(f"split must be 'train' or 'test', not {split!r}")
    d = Path(data_dir)
    prefix = SPLIT_PREFIX[split]
    images = read_idx(_find(d, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_find(d, f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise UnsupportedInputError(f"{d}: {split} images {images.shape} and labels {labels.shape} do not match")
    return images, labels


# The evaluation protocol's fixed split (benchmarks/PROTOCOL.md): the LAST 5,000 images of the training
# file are validation, the first 55,000 train; the test file is scored once, at the end, and never
# used for a choice.
VALIDATION_SIZE = 5000


def train_validation_split(images: np.ndarray, labels: np.ndarray, validation: int = VALIDATION_SIZE
                           ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """((train images, labels), (validation images, labels)): the last `validation` samples are held out."""
    if len(images) != len(labels):
        raise BadArgumentError(f"{len(images)} images but {len(labels)} labels")
    if not 0 < validation < len(images):
        raise BadArgumentError(f"{len(images)} training images are too few to hold out {validation} for validation")
    cut = len(images) - validation
    return (images[:cut], labels[:cut]), (images[cut:], labels[cut:])


def load_protocol_splits(data_dir: str | os.PathLike, validation: int = VALIDATION_SIZE
                         ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train", "validation", "test"} -> (uint8 images, labels) of an IDX directory under the fixed split."""
    train, val = train_validation_split(*load_fashion_mnist(data_dir, "train"), validation)
    return {"train": train, "validation": val, "test": load_fashion_mnist(data_dir, "test")}
