"""JSON for headers: canonical when written, strict when read.

Reading refuses duplicate keys (two tensors of one name must not be possible), NaN and Infinity,
nesting deeper than the limit (checked before parsing, so no recursion blow-up), and non-UTF-8.
"""

from __future__ import annotations

import json
import re

import numpy as np

from ..errors import FormatError, LimitExceededError

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


def dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii")


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise FormatError(f"header JSON has the key {key!r} twice")
        out[key] = value
    return out


def _no_constants(name: str) -> object:
    raise FormatError(f"header JSON contains {name}, which is not valid JSON")


def nesting_depth(text: bytes) -> int:
    """Deepest bracket nesting outside string literals."""
    skeleton = np.frombuffer(_STRING.sub(b'""', text), dtype=np.uint8)
    if skeleton.size == 0:
        return 0
    step = np.isin(skeleton, (ord("["), ord("{"))).astype(np.int64) - np.isin(skeleton, (ord("]"), ord("}")))
    return int(np.cumsum(step).max(initial=0))


def loads(text: bytes, max_depth: int, what: str = "header") -> object:
    depth = nesting_depth(text)
    if depth > max_depth:
        raise LimitExceededError(f"{what} JSON nests {depth} levels deep, over the limit of {max_depth}")
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"{what} is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        obj = json.loads(decoded, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except FormatError:
        raise
    except (ValueError, RecursionError) as exc:
        raise FormatError(f"{what} is not valid JSON ({exc})") from None
    if _SURROGATE_ESCAPE.search(text):
        _check_unicode(obj, what)
    return obj


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


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
