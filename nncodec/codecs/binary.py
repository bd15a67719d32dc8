"""Bounds-checked reading of the small binary tables inside section payloads.

Every read is checked against the payload length, so a hostile count can never make us read past
the end or allocate more than the payload could describe.
"""

from __future__ import annotations

import numpy as np

from ..errors import CorruptFileError

_MAX_VARINT_BYTES = 10


def write_uvarint(value: int) -> bytes:
    """LEB128: 7 bits per byte, least significant group first, high bit set on all but the last."""
    if value < 0 or value >= 2**64:
        raise ValueError(f"uvarint out of range: {value}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def zigzag(value: int) -> int:
    """Map signed to unsigned: 0,-1,1,-2,... -> 0,1,2,3,..."""
    return (value << 1) if value >= 0 else ((-value << 1) - 1)


def unzigzag(value: int) -> int:
    return (value >> 1) if not value & 1 else -((value + 1) >> 1)


def encode_uvarints(values: np.ndarray) -> bytes:
    """LEB128 of a whole array of non-negative integers (< 2**63), vectorised."""
    v = np.asarray(values, dtype=np.uint64)
    if v.size == 0:
        return b""
    nbytes = np.ones(v.size, dtype=np.int64)
    for k in range(1, _MAX_VARINT_BYTES):
        nbytes += v >= np.uint64(1) << np.uint64(7 * k)
    out = np.zeros(int(nbytes.sum()), dtype=np.uint8)
    starts = np.concatenate(([0], np.cumsum(nbytes)[:-1]))
    for k in range(int(nbytes.max())):
        has = nbytes > k
        group = ((v[has] >> np.uint64(7 * k)) & np.uint64(0x7F)).astype(np.uint8)
        more = (nbytes[has] > k + 1).astype(np.uint8) << 7
        out[starts[has] + k] = group | more
    return out.tobytes()


class Reader:
    """A cursor over a payload that raises CorruptFileError instead of reading out of bounds."""

    def __init__(self, data: bytes | memoryview, what: str = "payload") -> None:
        self.data = memoryview(data).cast("B") if not isinstance(data, memoryview) else data.cast("B")
        self.pos = 0
        self.what = what

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> memoryview:
        if n < 0 or n > self.remaining:
            raise CorruptFileError(f"{self.what}: needs {n} more bytes, {self.remaining} left")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def uvarint(self) -> int:
        result = 0
        for i in range(_MAX_VARINT_BYTES):
            if self.pos >= len(self.data):
                raise CorruptFileError(f"{self.what}: truncated integer")
            byte = self.data[self.pos]
            self.pos += 1
            result |= (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                if result >= 2**64:
                    raise CorruptFileError(f"{self.what}: integer over 64 bits")
                if i > 0 and byte == 0:
                    raise CorruptFileError(f"{self.what}: integer is not minimally encoded")
                return result
        raise CorruptFileError(f"{self.what}: integer longer than {_MAX_VARINT_BYTES} bytes")

    def svarint(self) -> int:
        return unzigzag(self.uvarint())

    def uvarints(self, count: int) -> np.ndarray:
        """`count` uvarints; the count is checked against the bytes left before allocating."""
        if count > self.remaining:
            raise CorruptFileError(f"{self.what}: {count} integers cannot fit in {self.remaining} bytes")
        return np.array([self.uvarint() for _ in range(count)], dtype=np.uint64)

    def words_le(self, nbytes: int) -> np.ndarray:
        """`nbytes` of little-endian uint32 words, as a native-endian array."""
        if nbytes % 4:
            raise CorruptFileError(f"{self.what}: {nbytes} bytes is not a whole number of 32-bit words")
        return np.frombuffer(self.take(nbytes), dtype="<u4").astype(np.uint32)

    def end(self) -> None:
        if self.remaining:
            raise CorruptFileError(f"{self.what}: {self.remaining} unexpected trailing bytes")
