"""Lossless coding of a tensor's exact bits (`raw` component).

Candidates, smallest kept:
  copy   – the little-endian bytes as they are;
  zstd   – one zstd frame of those bytes;
  planes – the bits split into streams that entropy-code well on their own: for floats the
           exponent field as one symbol stream plus the sign+mantissa bits as byte planes (what
           ZipNN and DFloat11 exploit: trained weights' exponents carry ~2.5-3 bits of entropy);
           for integers and bool the byte planes. Each stream is coded with copy, zstd or ANS.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import threading
from collections.abc import Callable

import numpy as np

from ..dtypes import DType
from ..errors import CorruptFileError, UnsupportedVersionError
from . import ans, chunks, pairs, planes_jit, zstd
from .base import DecodeContext, Encoded, EncodeOptions, Parts, expect_params, smallest
from .raw_streams import encode_streams, zstd_level

__all__ = ["decode", "decode_whole", "encode", "encode_whole", "zstd_level"]  # (zstd_level: for levels, mask, pip)

_U1, _U2_LE, _U2 = np.dtype("u1"), np.dtype("<u2"), np.dtype("=u2")
_B1, _B7, _B7F, _B80 = np.uint8(1), np.uint8(7), np.uint8(0x7F), np.uint8(0x80)
def _sign_exponent_byte_aligned(dt: DType) -> bool:
    """float32 and bfloat16: an 8-bit exponent whose top 7 bits fill the top byte after the sign, so
    every stream is a byte-wise function of the word's bytes (the fast paths below)."""
    return dt.kind == "f" and dt.exponent_bits == 8 and dt.mantissa_bits % 8 == 7


def _split(words: np.ndarray, dt: DType) -> tuple[str, list[np.ndarray]]:
    """The streams of the planes transform: (split name, [uint8 or uint16 symbol arrays])."""
    if _sign_exponent_byte_aligned(dt):
        # same streams as the general path below, by shifts of the whole (native) words and truncating casts
        # to uint8 (contiguous, vectorised: 2.4x faster than gathering strided bytes)
        w = np.ascontiguousarray(words, dtype=dt.storage)
        compiled = planes_jit.split_float(w)  # the same streams by one compiled loop, when loaded
        if compiled is not None:
            return "float", compiled
        u, m = w.dtype.type, dt.mantissa_bits
        exp = (w >> u(m)).astype(np.uint8)  # sign and exponent: the cast drops the sign
        low = [(w >> u(8 * k)).astype(np.uint8) for k in range(dt.itemsize - 2)]
        top = (w >> u(m - 7)).astype(np.uint8)  # exponent bit 0 and the mantissa's top 7 bits
        top &= _B7F
        sign = (w >> u(dt.bits - 8)).astype(np.uint8)
        sign &= _B80
        top |= sign
        return "float", [exp] + low + [top]
    if dt.kind == "f":
        e, m = dt.exponent_bits, dt.mantissa_bits
        w = words.astype(np.uint64)
        exp = (w >> np.uint64(m)) & np.uint64((1 << e) - 1)
        rest = ((w >> np.uint64(dt.bits - 1)) << np.uint64(m)) | (w & np.uint64((1 << m) - 1))
        streams = [exp.astype(np.uint8 if e <= 8 else np.uint16)]
        for k in range(math.ceil((1 + m) / 8)):
            streams.append(((rest >> np.uint64(8 * k)) & np.uint64(0xFF)).astype(np.uint8))
        return "float", streams
    as_bytes = words.view(np.uint8).reshape(-1, dt.itemsize)
    return "bytes", [np.ascontiguousarray(as_bytes[:, k]) for k in range(dt.itemsize)]


_WIDTHS: dict[str, tuple[str, tuple[int, ...]]] = {}  # dtype name -> (split, symbol width per stream)


def _stream_widths(dt: DType) -> tuple[str, tuple[int, ...]]:
    got = _WIDTHS.get(dt.name)
    if got is None:
        if dt.kind == "f":
            got = "float", (1 if dt.exponent_bits <= 8 else 2,) + (1,) * math.ceil((1 + dt.mantissa_bits) / 8)
        else:
            got = "bytes", (1,) * dt.itemsize
        _WIDTHS[dt.name] = got
    return got


_JOIN_BLOCK = 1 << 20  # words reassembled per step: temporaries stay a few MiB whatever the tensor size


def _join(split: str, streams: list[np.ndarray], dt: DType, out: np.ndarray | None = None) -> np.ndarray:
    """Words from their streams, block by block into one output array (peak = streams + output)."""
    n = streams[0].size
    out = np.empty(n, dtype=dt.storage) if out is None else out
    if split == "float" and _sign_exponent_byte_aligned(dt) and planes_jit.join_float(streams, out):
        return out  # one compiled loop over the whole range (planes_jit.py), when loaded
    if n <= _JOIN_BLOCK:  # (most tensors: no slicing)
        _join_block(split, streams, dt, out)
        return out
    for start in range(0, n, _JOIN_BLOCK):
        stop = min(n, start + _JOIN_BLOCK)
        _join_block(split, [s[start:stop] for s in streams], dt, out[start:stop])
    return out


_local = threading.local()


def _scratch(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Two uint8 work arrays of `n` elements (n <= _JOIN_BLOCK), one pair per thread, reused across calls."""
    bufs = getattr(_local, "join", None)
    if bufs is None or bufs[0].size < n:
        size = max(n, min(_JOIN_BLOCK, 1 << 16))
        bufs = _local.join = (np.empty(size, np.uint8), np.empty(size, np.uint8))
    return bufs[0][:n], bufs[1][:n]


_STREAM_SCRATCH = 1 << 20  # symbols: longer decoded streams get fresh arrays (bounds what a thread keeps)


def _stream_scratch(what: str, n: int) -> np.ndarray | None:
    """A reused uint8 array of `n` elements for decoded stream `what` (one per stream of a planes payload and
    per thread): the stream only lives until _join has read it, and a fresh array costs a page fault per
    4 KiB (resemblyzer bf16: about a fifth of its decode). None above _STREAM_SCRATCH symbols."""
    if n > _STREAM_SCRATCH:
        return None
    bufs = getattr(_local, "streams", None)
    if bufs is None:
        bufs = _local.streams = {}
    buf = bufs.get(what)
    if buf is None or buf.size < n:
        buf = bufs[what] = np.empty(max(n, 1 << 16), np.uint8)
    return buf[:n]


def _join_block(split: str, streams: list[np.ndarray], dt: DType, out: np.ndarray) -> None:
    """Words from their streams, written into the contiguous array `out`."""
    if split == "bytes" or _sign_exponent_byte_aligned(dt):
        columns = out.view(np.uint8).reshape(-1, dt.itemsize)
        if split == "bytes":
            for k, plane in enumerate(streams):
                columns[:, k] = plane
            return
        # inverse of the fast split: every exponent and sign+mantissa value is in range by construction
        exp, top = streams[0], streams[-1]
        for k, plane in enumerate(streams[1:-1]):
            columns[:, k] = plane
        a, b = _scratch(exp.size)  # reused: fresh temporaries page-fault on first touch (~8x slower)
        np.bitwise_and(top, _B80, out=a)
        np.right_shift(exp, _B1, out=b)
        np.bitwise_or(a, b, out=a)
        columns[:, -1] = a
        np.left_shift(exp, _B7, out=a)
        np.bitwise_and(top, _B7F, out=b)
        np.bitwise_or(a, b, out=a)
        columns[:, -2] = a
        return
    e, m = dt.exponent_bits, dt.mantissa_bits
    u = np.dtype(f"u{dt.itemsize}")
    rest = np.zeros(streams[0].size, dtype=u)
    for k, plane in enumerate(streams[1:]):
        rest |= plane.astype(u) << u.type(8 * k)
    if (rest >> u.type(1 + m)).any():
        raise CorruptFileError("raw planes: sign+mantissa stream has bits beyond the mantissa")
    exp = streams[0].astype(u)
    if (exp >> u.type(e)).any():
        raise CorruptFileError("raw planes: exponent stream has values beyond the exponent width")
    sign = (rest >> u.type(m)) << u.type(dt.bits - 1)
    rest &= u.type((1 << m) - 1)
    rest |= sign
    rest |= exp << u.type(m)
    out[...] = rest.view(dt.storage)


def _decode_stream(method: str, payload: memoryview, count: int, width: int, ctx: DecodeContext, what: str) -> np.ndarray:
    """One stream's `count` symbols; a copy stream is a read-only view of the payload (_join only reads)."""
    if method == "copy":
        if len(payload) != count * width:
            raise CorruptFileError(f"{what}: {len(payload)} bytes for {count} values of {width} bytes")
        data = payload
    elif method == "zstd":
        data = zstd.decompress(payload, count * width, what)
    elif method == pairs.METHOD:
        if width != 1:
            raise CorruptFileError(f"{what}: pairs codes 1-byte symbols only")
        return pairs.decode(payload, count, what, functools.partial(_stream_scratch, what))
    elif method == "ans":  # a table reaching outside 0 .. 256**width - 1 is refused before decoding
        return ans.decode_with_table(payload, count, what, ctx.limits.max_alphabet, ctx.ans_final_state,
                                     _U1 if width == 1 else _U2)
    else:
        raise UnsupportedVersionError(f"{what}: unknown stream method {method!r} (written by a newer nncodec?)")
    if width == 1:
        return np.frombuffer(data, dtype=_U1)
    return np.frombuffer(data, dtype=_U2_LE).astype(_U2, copy=False)


def encode(words: np.ndarray, dt: DType, options: EncodeOptions, row: int = 1, parts: bool = False) -> Encoded:
    """The lossless encoding of `words` (flat storage words of dtype `dt`; rows of `row` elements):
    cut into chunks coded in parallel when larger than `options.chunk_bytes` (§23), else whole.
    `parts`: a chunked payload may stay in pieces (base.Parts: for a writer that takes them, Sections.add)."""
    if words.size * dt.itemsize > options.chunk_bytes:
        # no `pairs` in the chunks of a large tensor: its decode costs ~1 ms more per 1M-symbol chunk than
        # the zstd frame it replaces (rapidocr_x4 decode 0.82x, the 47 MB lazy read ~10 ms more CPU) for
        # ~0.07 % of the tensor; small tensors keep it (LeNet-300: what puts the default below ZipNN)
        enc = chunks.encode(words, dt, options, row, functools.partial(encode_whole, try_pairs=False, joined=False))
        return enc if parts else dataclasses.replace(enc, payload=enc.payload.joined())
    return encode_whole(words, dt, options)


def encode_whole(words: np.ndarray, dt: DType, options: EncodeOptions, try_pairs: bool = True,
                 joined: bool = True) -> Encoded:
    """The smallest lossless encoding of `words` as one copy, zstd or planes payload. balanced and speed
    skip the whole-tensor zstd candidate for floats, and for other dtypes over 64 KiB: on the real-weight
    checkpoints it never beat planes, and a pass of zstd over the whole tensor cost more than the planes.
    The copy candidate is a view of the words, turned into bytes only if it is chosen. `joined=False`: a
    planes payload is given as its streams' payloads (Parts, for a chunk of a large tensor)."""
    words = np.ascontiguousarray(words, dtype=dt.storage)
    raw = memoryview(words).cast("B")

    def planes() -> Encoded | None:
        if words.size == 0:
            return None
        split, streams = _split(words, dt)
        chosen = encode_streams(streams, options, try_pairs)
        payload = b"".join(e.payload for e in chosen) if joined else Parts(e.payload for e in chosen)
        return Encoded("planes", payload,
                       {"split": split, "streams": [[e.codec, len(e.payload)] for e in chosen]},
                       slow=any(e.slow for e in chosen))

    whole_zstd = options.prefer == "size" or (dt.kind not in ("f", "f8") and len(raw) <= 2**16)
    best = smallest([
        lambda: Encoded("copy", raw),
        (lambda: Encoded("zstd", zstd.compress(raw, zstd_level(len(raw), options)))) if whole_zstd else (lambda: None),
        planes,
    ], options)
    return Encoded("copy", raw.tobytes()) if best.payload is raw else best


def decode(codec: str, params: dict, payload: memoryview, dt: DType, count: int, ctx: DecodeContext,
           out: np.ndarray | None = None) -> np.ndarray:
    """Flat storage words of `count` values of dtype `dt` (written into `out` when given)."""
    if codec == chunks.CODEC:
        table = chunks.parse(params, count, len(payload), ctx.limits)
        return chunks.decode(table, payload, dt, ctx, decode_whole, out)
    return decode_whole(codec, params, payload, dt, count, ctx, out)


def decode_whole(codec: str, params: dict, payload: memoryview, dt: DType, count: int, ctx: DecodeContext,
                 out: np.ndarray | None = None) -> np.ndarray:
    """`decode` of one unchunked payload (copy, zstd or planes)."""
    what = "raw/" + codec
    nbytes = count * dt.itemsize
    if codec == "planes":
        words = _decode_planes(params, payload, dt, count, ctx, out)
    elif codec == "copy":
        expect_params(params, {}, what)
        if len(payload) != nbytes:
            raise CorruptFileError(f"{what}: payload is {len(payload)} bytes, {nbytes} expected")
        words = _into(np.frombuffer(payload, dtype=dt.storage), out)
    elif codec == "zstd":
        expect_params(params, {}, what)
        words = _into(np.frombuffer(zstd.decompress(payload, nbytes, what), dtype=dt.storage), out)
    else:
        raise UnsupportedVersionError(f"unknown raw codec {codec!r} (written by a newer nncodec?)")
    if dt.kind == "b" and words.size and words.max() > 1:
        raise CorruptFileError(f"{what}: bool values other than 0 and 1")
    return words


_PLANES_KEYS = frozenset(("split", "streams"))


def _decode_planes(params: dict, payload: memoryview, dt: DType, count: int, ctx: DecodeContext,
                   out: np.ndarray | None) -> np.ndarray:
    """The words of a planes payload (§9.1); the happy path builds no message strings (files hold
    thousands of small tensors, and this runs once per tensor)."""
    what = "raw/planes"
    if type(params) is not dict or params.keys() != _PLANES_KEYS:
        expect_params(params, {"split": str, "streams": list}, what)
    split, widths = _stream_widths(dt)
    if params["split"] != split:
        raise CorruptFileError(f"{what}: split {params['split']!r} does not apply to {dt.name}")
    entries = params["streams"]
    if type(entries) is not list or len(entries) != len(widths):
        expect_params(params, {"split": str, "streams": list}, what)
        raise CorruptFileError(f"{what}: {len(entries)} streams where {dt.name} has {len(widths)}")
    join = _native_join(dt, count, out)
    streams, pos, end, strided = [], 0, len(payload), False
    for k, entry in enumerate(entries):
        if type(entry) is not list or len(entry) != 2 or type(entry[0]) is not str or type(entry[1]) is not int or entry[1] < 0:
            raise CorruptFileError(f"{what}: stream {k} must be [method, length]")
        method, length = entry
        if length > end - pos:
            raise CorruptFileError(f"{what}: stream {k} runs past the end of the payload")
        name = _STREAM_WHAT[k] if k < len(_STREAM_WHAT) else f"{what} stream {k}"
        if join is None:
            streams.append(_decode_stream(method, payload[pos : pos + length], count, widths[k], ctx, name))
        elif method == "copy" and length == count:  # (1-byte symbols: the C join reads them in place)
            streams.append(payload[pos : pos + length])
        elif method == "zstd":  # (its bytes, as _decode_stream's, without an array view)
            streams.append(zstd.decompress(payload[pos : pos + length], count, name))
        else:  # (pairs: a contiguous array; ans: perhaps a broadcast one, checked below)
            streams.append(_decode_stream(method, payload[pos : pos + length], count, widths[k], ctx, name))
            strided = strided or not streams[-1].flags.c_contiguous
        pos += length
    if pos != end:
        raise CorruptFileError(f"{what}: {end - pos} bytes after the last stream")
    if join is not None:
        if not strided:
            out = np.empty(count, dtype=dt.storage) if out is None else out
            join(*streams, out)
            return out
        streams = [np.frombuffer(x, dtype=_U1) if type(x) is not np.ndarray else x for x in streams]
    return _join(split, streams, dt, out)


_STREAM_WHAT = tuple(f"raw/planes stream {k}" for k in range(8))  # (error texts and scratch keys, made once)
_FAST_JOIN: dict[str, bool] = {}  # dtype name -> _sign_exponent_byte_aligned


def _native_join(dt: DType, count: int, out: np.ndarray | None) -> Callable | None:
    """The C join of float32 / bfloat16 streams when the C loops are in use (it takes any buffer: copy streams
    are passed as slices of the payload, no array made), else None: on a file of many small tensors the
    general path's array views and checks cost as much as the join (rapidocr: 355 tensors under 4 kB)."""
    fast = _FAST_JOIN.get(dt.name)
    if fast is None:
        fast = _FAST_JOIN[dt.name] = _sign_exponent_byte_aligned(dt)
    if not fast or (out is not None and not out.flags.c_contiguous):
        return None
    k = planes_jit.kernels(max(count, 1))
    if k is None or k is not planes_jit.NATIVE:
        return None
    return k["join32"] if dt.itemsize == 4 else k["join16"]


def _into(words: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    """A writable array of `words`: `out` filled with them, or a copy."""
    if out is None:
        return words.copy()
    out[...] = words
    return out
