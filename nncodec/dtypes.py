"""The tensor element types a .nnc file can hold, and how they map to numpy and torch.

Arrays are handled internally in a numpy *storage* dtype of the same width (bfloat16 is stored as
uint16), so every codec works on exact bits and lossless means bit-exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import UnsupportedInputError, UnsupportedVersionError


@dataclass(frozen=True)
class DType:
    name: str
    storage: np.dtype
    kind: str  # "f" float, "f8" 8-bit float (lossless only), "i" signed int, "u" unsigned int, "b" bool
    exponent_bits: int = 0
    mantissa_bits: int = 0
    minor: int = 0  # the format 2.x minor version that added this dtype (spec §12)

    @property
    def itemsize(self) -> int:
        return self.storage.itemsize

    @property
    def bits(self) -> int:
        return 8 * self.storage.itemsize

    @property
    def words_only(self) -> bool:
        """No numpy dtype holds its values (bfloat16, float8): arrays carry its storage words."""
        return self.name not in _NUMPY_NAMES


_TABLE = [
    DType("float64", np.dtype("<u8"), "f", 11, 52),
    DType("float32", np.dtype("<u4"), "f", 8, 23),
    DType("float16", np.dtype("<u2"), "f", 5, 10),
    DType("bfloat16", np.dtype("<u2"), "f", 8, 7),
    DType("int8", np.dtype("i1"), "i"),
    DType("int16", np.dtype("<i2"), "i"),
    DType("int32", np.dtype("<i4"), "i"),
    DType("int64", np.dtype("<i8"), "i"),
    DType("uint8", np.dtype("u1"), "u"),
    DType("uint16", np.dtype("<u2"), "u"),
    DType("uint32", np.dtype("<u4"), "u"),
    DType("uint64", np.dtype("<u8"), "u"),
    DType("bool", np.dtype("u1"), "b"),
    # format 2.1: kind "f8", not "f": the lossy compressors (which quantize kind "f") leave them alone,
    # and their planes split is the byte itself (one stream), whose entropy coding beats any split
    DType("float8_e4m3fn", np.dtype("u1"), "f8", 4, 3, minor=1),
    DType("float8_e5m2", np.dtype("u1"), "f8", 5, 2, minor=1),
]
DTYPES: dict[str, DType] = {d.name: d for d in _TABLE}

_NUMPY_NAMES = {
    "float64": "float64", "float32": "float32", "float16": "float16",
    "int8": "int8", "int16": "int16", "int32": "int32", "int64": "int64",
    "uint8": "uint8", "uint16": "uint16", "uint32": "uint32", "uint64": "uint64", "bool": "bool",
}


def dtype_by_name(name: object) -> DType:
    """The DType called `name`; a FormatError for names a file may not use."""
    if not isinstance(name, str) or name not in DTYPES:
        raise UnsupportedVersionError(f"unknown dtype {name!r}; this nncodec knows: {', '.join(DTYPES)}")
    return DTYPES[name]


def numpy_value_dtype(dt: DType) -> np.dtype:
    """The numpy dtype that holds values of `dt` (bfloat16 and float8 have none: their storage words)."""
    return np.dtype(_NUMPY_NAMES[dt.name]) if dt.name in _NUMPY_NAMES else dt.storage


def dtype_of_numpy(arr: np.ndarray) -> DType:
    """The DType for a numpy array's element type, refusing object, complex and other kinds."""
    name = arr.dtype.name
    if name not in _NUMPY_NAMES:
        raise UnsupportedInputError(f"numpy dtype {arr.dtype} is not supported; supported: {', '.join(DTYPES)}")
    return DTYPES[name]


def to_storage(arr: np.ndarray, dt: DType) -> np.ndarray:
    """Reinterpret a value array as its little-endian storage words (a copy only if needed)."""
    a = np.ascontiguousarray(arr)
    if a.dtype.byteorder == ">":
        a = a.byteswap().view(a.dtype.newbyteorder("<"))
    return a.view(dt.storage)


def from_storage(words: np.ndarray, dt: DType) -> np.ndarray:
    """Reinterpret storage words as values (bfloat16 and float8 stay storage words: torch views them)."""
    return words.view(numpy_value_dtype(dt))
