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
        return json.loads(decoded, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except FormatError:
        raise
    except (ValueError, RecursionError) as exc:
        raise FormatError(f"{what} is not valid JSON ({exc})") from None
