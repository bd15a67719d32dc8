"""JSON for headers: canonical when written, strict when read.

Reading refuses duplicate keys (two tensors of one name must not be possible), NaN and Infinity,
nesting deeper than the limit (checked before parsing, so no recursion blow-up), and non-UTF-8.
The depth check is one linear, vectorised pass over fixed-size chunks: time and memory grow with
the text length only, whatever the text holds (a backtracking regex over string literals cost
~118 bytes of stack per character).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator

import numpy as np

from ..errors import FormatError, LimitExceededError

_CHUNK = 1 << 18  # bytes scanned per vectorised step: bounds the scan's memory
_QUOTE, _BACKSLASH = ord('"'), ord("\\")
_OPEN, _CLOSE = np.array([ord("["), ord("{")], np.uint8), np.array([ord("]"), ord("}")], np.uint8)


def dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii")


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    out = dict(pairs)  # (in C; a key given twice leaves fewer items than pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise FormatError(f"header JSON has the key {key!r} twice")
            seen.add(key)
    return out


def _no_constants(name: str) -> object:
    raise FormatError(f"header JSON contains {name}, which is not valid JSON")


_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")
_STEPS = bytes(1 if c in b"[{" else 255 if c in b"]}" else 0 for c in range(256))  # +1 / -1 (int8) / 0


def nesting_depth(text: bytes) -> int:
    """Deepest bracket nesting outside string literals, in one linear pass.

    A quote is escaped when an odd run of backslashes precedes it; brackets count only outside
    strings. (Backslashes outside strings are not JSON; the parser refuses them afterwards.)
    A text of at most _CHUNK bytes without a backslash (every header nncodec writes for a small file)
    takes a shorter path, same result: its strings are exactly the spans between consecutive quotes (the
    odd pieces of a split at the quotes; an unterminated last string is an odd piece too), and the depth
    is the highest running sum of the brackets outside them (~37 -> ~15 us on a 1 kB header, which every
    open parses).
    """
    if len(text) <= _CHUNK and b"\\" not in text:
        brackets = b"".join(text.split(b'"')[0::2]).translate(None, _NOT_BRACKETS)
        if not brackets:
            return 0
        return max(0, int(np.frombuffer(brackets.translate(_STEPS), dtype=np.int8).cumsum(dtype=np.int64).max()))
    return _nesting_depth_chunked(text)


def _nesting_depth_chunked(text: bytes) -> int:
    """nesting_depth of any text, in vectorised steps of _CHUNK bytes (memory bounded by the chunk)."""
    view = memoryview(text)
    in_string, run, depth, deepest = False, 0, 0, 0  # run: backslashes just before the chunk
    for start in range(0, len(view), _CHUNK):
        a = np.frombuffer(view[start:start + _CHUNK], dtype=np.uint8)
        quote = a == _QUOTE
        backslash = a == _BACKSLASH
        if run or backslash.any():
            idx = np.arange(a.size, dtype=np.int64)
            last_other = np.maximum.accumulate(np.where(backslash, -1, idx))  # last non-backslash <= i
            before = np.empty(a.size, dtype=np.int64)  # backslashes immediately before position i
            before[0] = run
            before[1:] = idx[:-1] - last_other[:-1]
            before[1:] += np.where(last_other[:-1] < 0, run, 0)
            quote &= (before & 1) == 0
            run = int(a.size - 1 - last_other[-1]) + (run if last_other[-1] < 0 else 0)
        toggles = np.cumsum(quote, dtype=np.int32)
        outside = (toggles & 1) == in_string
        step = ((a == _OPEN[0]) | (a == _OPEN[1])).view(np.int8) - ((a == _CLOSE[0]) | (a == _CLOSE[1])).view(np.int8)
        step = step * outside  # brackets count outside strings only
        levels = np.cumsum(step, dtype=np.int64) + depth
        deepest = max(deepest, int(levels.max(initial=depth)))
        depth = int(levels[-1])
        in_string = bool((int(toggles[-1]) + in_string) & 1)
    return deepest


_local = threading.local()


def _decoder() -> json.JSONDecoder:
    """The strict decoder, one per thread (json.loads with hooks builds a new one per call: ~3 us, paid
    per tensor entry)."""
    dec = getattr(_local, "decoder", None)
    if dec is None:
        dec = _local.decoder = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    return dec


def loads(text: bytes, max_depth: int, what: str = "header") -> object:
    # the brackets in the text bound its depth: small texts (one tensor entry) skip the scan
    depth = 0 if text.count(b"[") + text.count(b"{") <= max_depth else nesting_depth(text)
    if depth > max_depth:
        raise LimitExceededError(f"{what} JSON nests {depth} levels deep, over the limit of {max_depth}")
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"{what} is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        if decoded.startswith("\ufeff"):  # (as json.loads refuses it)
            raise ValueError("unexpected UTF-8 BOM")
        obj = _decoder().decode(decoded)
    except FormatError:
        raise
    except (ValueError, RecursionError) as exc:
        raise FormatError(f"{what} is not valid JSON ({exc})") from None
    if _SURROGATE_ESCAPE.search(text):
        _check_unicode(obj, what)
    return obj


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def loads_each(blob: bytes, ends: list[int], max_depth: int, what: str = "tensor entry") -> Iterator[object]:
    """`loads(blob[start:end], max_depth, f"{what} {i}")` for each consecutive record of `blob` ending at
    `ends[i]`, in order (the tensor entries of an indexed header, §4.5), with the per-text work done once for
    the whole blob where it can be: the UTF-8 check (an ASCII blob), the surrogate-escape search and each
    record's bracket count (its depth bound, one numpy pass), then one C scan per record starting at its first
    byte, with the same strict hooks. A record is taken from the scan only if the scan ends exactly at its
    end (the scanner looks no further back than the record's start, and a value read past the record's end
    is not this record); any other record (leading or trailing whitespace, more brackets than the limit,
    anything malformed) goes through `loads` itself, so every error is the one `loads` raises. Why: ~2 us
    less per entry on a file of many tensors (rapidocr, 470 entries)."""
    if not ends:
        return
    if not blob.isascii() or _SURROGATE_ESCAPE.search(blob):  # (byte offsets = str offsets only for ASCII)
        start = 0
        for i, end in enumerate(ends):
            yield loads(blob[start:end], max_depth, f"{what} {i}")
            start = end
        return
    a = np.frombuffer(blob, dtype=np.uint8)
    opens = np.zeros(a.size + 1, dtype=np.int64)  # opens[j]: brackets opened in blob[:j]
    np.cumsum((a == _OPEN[0]) | (a == _OPEN[1]), out=opens[1:])
    counts = np.diff(opens[np.asarray(ends, dtype=np.int64)], prepend=0).tolist()
    text = blob.decode("ascii")
    scan = _decoder().scan_once
    start = 0
    for i, end in enumerate(ends):
        obj = _UNSCANNED
        if counts[i] <= max_depth and end > start:
            try:
                obj, stop = scan(text, start)
            except (StopIteration, ValueError, RecursionError, FormatError):
                obj = _UNSCANNED
            else:
                if stop != end:
                    obj = _UNSCANNED
        yield loads(blob[start:end], max_depth, f"{what} {i}") if obj is _UNSCANNED else obj
        start = end


_UNSCANNED = object()


def _check_unicode(obj: object, what: str) -> None:
    """Refuse strings holding an unpaired surrogate (only a \\uD800-\\uDFFF escape can make one):
    they are not Unicode text and would fail later, when a name or value is encoded."""
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise FormatError(f"{what} JSON has a string with an unpaired surrogate escape") from None
