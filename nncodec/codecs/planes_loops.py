"""The compiled loops of planes_jit.py (imported only through it: importing this module imports numba and
loads or compiles the loops, ~0.5-2 s once per process; compiled code is cached beside this file).

Streams, as raw._split defines them for float32 (bfloat16: no low bytes, 7 mantissa bits):
exp = bits 23..30, l0 = bits 0..7, l1 = bits 8..15, top = bits 16..22 | the sign bit as 0x80.
Each loop is one pass over the words with the GIL released (nogil): chunks run in parallel threads.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import types

_RO8 = types.Array(types.uint8, 1, "C", readonly=True)  # writable arrays are accepted too
_W8 = types.Array(types.uint8, 1, "C")
_RO16, _W16 = types.Array(types.uint16, 1, "C", readonly=True), types.Array(types.uint16, 1, "C")
_RO32, _W32 = types.Array(types.uint32, 1, "C", readonly=True), types.Array(types.uint32, 1, "C")


@numba.njit([types.void(_RO8, _RO8, _RO8, _RO8, _W32)], nogil=True, cache=True)
def join32(exp, l0, l1, top, out):
    for i in range(out.size):
        t = np.uint32(top[i])
        out[i] = (np.uint32(l0[i]) | (np.uint32(l1[i]) << 8) | ((t & 0x7F) << 16)
                  | (np.uint32(exp[i]) << 23) | ((t & 0x80) << 24))


@numba.njit([types.void(_RO8, _RO8, _W16)], nogil=True, cache=True)
def join16(exp, top, out):
    for i in range(out.size):
        t = np.uint16(top[i])
        out[i] = (t & 0x7F) | (np.uint16(exp[i]) << 7) | ((t & 0x80) << 8)


@numba.njit([types.void(_RO32, _W8, _W8, _W8, _W8)], nogil=True, cache=True)
def split32(w, exp, l0, l1, top):
    for i in range(w.size):
        x = w[i]
        exp[i] = (x >> 23) & 0xFF
        l0[i] = x & 0xFF
        l1[i] = (x >> 8) & 0xFF
        top[i] = ((x >> 16) & 0x7F) | ((x >> 24) & 0x80)


@numba.njit([types.void(_RO16, _W8, _W8)], nogil=True, cache=True)
def split16(w, exp, top):
    for i in range(w.size):
        x = w[i]
        exp[i] = (x >> 7) & 0xFF
        top[i] = (x & 0x7F) | ((x >> 8) & 0x80)


@numba.njit([types.int64(_RO8, _RO8, types.int64, _RO8, _W8)], nogil=True, cache=True)
def unpairs(packed, symbols, k, escapes, out):
    """`pairs` codes -> symbols (pairs.py): code c < k is symbols[c], 15 takes the next escape byte.
    Returns the escapes used, or -1 for a code in k..14, -2 when the escapes run out (the caller then
    lets the numpy path raise its exact error)."""
    n, e = out.size, 0
    for i in range(n):
        b = np.int64(packed[i >> 1])  # (signed: uint8 mixed with int64 would type as float)
        c = (b >> 4) if (i & 1) == 0 else (b & 15)
        if c < k:
            out[i] = symbols[c]
        elif c == 15:
            if e >= escapes.size:
                return -2
            out[i] = escapes[e]
            e += 1
        else:
            return -1
    return e


@numba.njit([types.int64(_RO8, _RO8, _W8, _W8)], nogil=True, cache=True)
def pairs(stream, code, packed, escapes):
    """The `pairs` packing (pairs.py): packed[j] = code[stream[2j]] << 4 | code[stream[2j + 1]] (the unused
    second code of an odd stream is 0); the symbols whose code is 15 go to `escapes` in order. Returns
    their count."""
    n, e = stream.size, 0
    for j in range(packed.size):
        s0 = stream[2 * j]
        c0 = np.int64(code[s0])
        if c0 == 15:
            escapes[e] = s0
            e += 1
        c1 = np.int64(0)
        if 2 * j + 1 < n:
            s1 = stream[2 * j + 1]
            c1 = np.int64(code[s1])
            if c1 == 15:
                escapes[e] = s1
                e += 1
        packed[j] = (c0 << 4) | c1
    return e


@numba.njit([types.void(_RO8, types.int64, types.Array(types.int64, 1, "C"))], nogil=True, cache=True)
def count_bytes(stream, step, counts):
    """counts[v] += the number of values v in stream[::step]."""
    for i in range(0, stream.size, step):
        counts[stream[i]] += 1


KERNELS = {"join32": join32, "join16": join16, "split32": split32, "split16": split16, "unpairs": unpairs,
           "pairs": pairs, "count_bytes": count_bytes}
