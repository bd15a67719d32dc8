"""The indexed header (header encoding 2, spec/FORMAT.md §4.5): the section table and the tensor
names as fixed-width binary arrays, each tensor entry as its own small JSON text.

Why: a reader of a JSON header parses every entry on every open (json.loads alone runs at ~40 MB/s
here: 6 ms for the header of a 1,141-tensor file, 0.8 ms for just its section table). With this
layout opening a file costs a few numpy views and one small JSON parse, whatever the tensor count,
and an entry is parsed and validated when its tensor is first used. The header object it denotes
is exactly the JSON header's, so every rule of §4-§6 applies to it unchanged.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..errors import CorruptFileError, FormatError
from ..limits import Limits
from . import strict_json

FIXED = struct.Struct("<5Q")  # section count n, tensor count m, JSON, names and entries lengths
MIN_TENSORS = 128  # the writer indexes files with at least this many tensors (an encoder choice)
KINDS_KEY = "kinds"  # JSON member: [[section index, kind], ...] for sections that are not "data"
_DATA = "data"
_SEARCHES = 8  # lookups (and misaligned hits) served by substring search before building a dict


def wanted(body: dict) -> bool:
    """Whether the writer indexes this header: many tensors (an encoder choice, not a rule)."""
    tensors = body.get("tensors")
    return isinstance(tensors, dict) and len(tensors) >= MIN_TENSORS


def pack(body: dict, table: list[list]) -> bytes:
    """The indexed header of `body` (the header object with `tensors`, without `sections`) and the
    section table `table` ([length, crc] or [length, crc, kind] per section)."""
    tensors = body.get("tensors", {})
    rest = {k: v for k, v in body.items() if k != "tensors"}
    kinds = [[i, e[2]] for i, e in enumerate(table) if len(e) == 3]
    if kinds:
        rest[KINDS_KEY] = kinds
    names = [n.encode("utf-8") for n in tensors]
    entries = [strict_json.dumps(e) for e in tensors.values()]
    text = strict_json.dumps(rest)
    lengths = np.array([e[0] for e in table], dtype="<u8")
    crcs = np.array([e[1] for e in table], dtype="<u4")
    name_ends = np.cumsum([len(n) for n in names], dtype=np.uint64).astype("<u8")
    entry_ends = np.cumsum([len(e) for e in entries], dtype=np.uint64).astype("<u8")
    blob_names, blob_entries = b"".join(names), b"".join(entries)
    fixed = FIXED.pack(len(table), len(names), len(text), len(blob_names), len(blob_entries))
    return b"".join([fixed, lengths.tobytes(), crcs.tobytes(), name_ends.tobytes(), entry_ends.tobytes(),
                     text, blob_names, blob_entries])


def _ends(buf: memoryview, at: int, count: int, total: int, what: str) -> np.ndarray:
    ends = np.frombuffer(buf, dtype="<u8", count=count, offset=at)
    last = int(ends[-1]) if count else 0
    if last != total or (count > 1 and bool((ends[1:] < ends[:-1]).any())):
        raise FormatError(f"indexed header: the {what} offsets are not increasing up to {total}")
    return ends


@dataclass
class Index:
    """The parsed fixed part of an indexed header; entries stay unparsed bytes until asked for."""

    top: dict  # the JSON object: the header without tensors and sections
    lengths: np.ndarray  # u64[n] section lengths
    crcs: np.ndarray  # u32[n]
    kinds: dict[int, str]  # sections whose kind is not "data"
    name_ends: np.ndarray  # u64[m]
    entry_ends: np.ndarray  # u64[m]
    names: memoryview
    entries: memoryview
    depth: int  # JSON depth allowed inside one entry (the header's limit minus the two levels above it)
    _blob: bytes | None = None  # the names as bytes, made on the first lookup
    _lookup: dict[bytes, int] | None = None  # name -> position, made once lookups become many
    _finds: int = 0

    def __len__(self) -> int:
        return len(self.name_ends)

    def _span(self, ends: np.ndarray, i: int) -> tuple[int, int]:
        return (int(ends[i - 1]) if i else 0), int(ends[i])

    def name_bytes(self, i: int) -> bytes:
        a, b = self._span(self.name_ends, i)
        return bytes(self.names[a:b])

    def name(self, i: int) -> str:
        """Name `i` (UTF-8 [FormatError])."""
        raw = self.name_bytes(i)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError(f"tensor name {raw!r} is not UTF-8") from None

    def entry(self, i: int) -> object:
        """The parsed JSON entry of tensor `i` (strict JSON, its own depth limit)."""
        a, b = self._span(self.entry_ends, i)
        return strict_json.loads(bytes(self.entries[a:b]), self.depth, f"tensor entry {i}")

    def each_entry(self) -> Iterator[object]:
        """`entry(i)` for every i in order, without the per-entry offset lookups (validate_all)."""
        return strict_json.loads_each(bytes(self.entries), self.entry_ends.tolist(), self.depth, "tensor entry")

    def find(self, name: str) -> int | None:
        """The position of tensor `name`, or None; a name stored twice is refused [FormatError].

        The first few lookups are C-speed substring searches of the names with a record-boundary
        check (no per-open work in proportion to the tensor count); after a few lookups, or a few
        misaligned hits (names inside other names), one dictionary of every name serves the rest,
        so neither many lookups nor crafted names make lookups quadratic."""
        try:
            key = name.encode("utf-8")
        except UnicodeEncodeError:
            return None
        self._finds += 1
        if self._lookup is None and (not key or self._finds > _SEARCHES):
            self._build_lookup()
        if self._lookup is not None:
            return self._lookup.get(key)
        if self._blob is None:
            self._blob = bytes(self.names)
        blob, ends = self._blob, self.name_ends
        found, pos, misses = None, blob.find(key), 0
        while pos >= 0:
            i = int(np.searchsorted(ends, pos, side="right"))  # the record holding byte `pos`
            if i < len(ends) and self._span(ends, i) == (pos, pos + len(key)):
                if found is not None:
                    raise FormatError(f"header has the tensor name {name!r} twice")
                found = i
            else:
                misses += 1
                if misses > _SEARCHES:
                    self._build_lookup()
                    return self._lookup.get(key)
            pos = blob.find(key, pos + 1)
        return found

    def _build_lookup(self) -> None:
        blob, ends = bytes(self.names), self.name_ends.tolist()
        keys = [blob[a:b] for a, b in zip([0] + ends[:-1] if ends else [], ends, strict=True)]
        lookup = {k: i for i, k in enumerate(keys)}
        if len(lookup) != len(keys):
            dup = next(k for i, k in enumerate(keys) if lookup[k] != i)
            raise FormatError(f"header has the tensor name {dup.decode('utf-8', 'replace')!r} twice")
        self._lookup = lookup

    def header_object(self) -> dict:
        """The whole header object this index denotes (§4.5): the JSON object plus `tensors` and
        `sections`. Every entry is parsed: for tools and tests, not for reading tensors."""
        table = [[int(n), int(c)] + ([self.kinds[i]] if i in self.kinds else [])
                 for i, (n, c) in enumerate(zip(self.lengths.tolist(), self.crcs.tolist(), strict=True))]
        tensors = {name: self.entry(i) for i, name in enumerate(self.all_names())}
        return {**self.top, "tensors": tensors, "sections": table}

    def all_names(self) -> list[str]:
        """Every name, in file order: UTF-8 and distinct [FormatError]."""
        out = []
        blob = bytes(self.names)
        start = 0
        for end in self.name_ends.tolist():
            try:
                out.append(blob[start:end].decode("utf-8"))
            except UnicodeDecodeError:
                raise FormatError(f"tensor name {blob[start:end]!r} is not UTF-8") from None
            start = end
        if len(set(out)) != len(out):
            seen: set[str] = set()
            dup = next(n for n in out if n in seen or seen.add(n))
            raise FormatError(f"header has the tensor name {dup!r} twice")
        return out


def parse(stored: memoryview, file_size: int, limits: Limits) -> Index:
    """The index of an indexed header, its counts checked against the limits and the file size before
    anything sized by them is touched; the byte ranges must add up to the header exactly."""
    if len(stored) < FIXED.size:
        raise CorruptFileError(f"indexed header of {len(stored)} bytes is shorter than its {FIXED.size}-byte counts")
    n, m, j, nn, ne = FIXED.unpack_from(stored, 0)
    limits.check("number of sections", n, limits.max_sections)
    limits.check_entries("sections", n, file_size)
    limits.check("number of tensors", m, limits.max_tensors)
    limits.check_entries("tensors", 0, file_size, m)  # each at least an alias; the full rule: validate_all
    size = FIXED.size + 12 * n + 16 * m + j + nn + ne  # Python ints: no overflow
    if size != len(stored):
        raise CorruptFileError(f"indexed header: its parts add up to {size} bytes, the header has {len(stored)}")
    at = FIXED.size
    lengths = np.frombuffer(stored, dtype="<u8", count=n, offset=at)
    crcs = np.frombuffer(stored, dtype="<u4", count=n, offset=at + 8 * n)
    at += 12 * n
    name_ends = _ends(stored, at, m, nn, "name")
    entry_ends = _ends(stored, at + 8 * m, m, ne, "entry")
    at += 16 * m
    top = strict_json.loads(bytes(stored[at:at + j]), limits.max_json_depth)
    if not isinstance(top, dict):
        raise FormatError("header must be a JSON object")
    for key in ("tensors", "sections"):
        if key in top:
            raise FormatError(f"an indexed header holds {key!r} in its index, not in its JSON object")
    kinds = _kinds(top.pop(KINDS_KEY, []), n)
    names = stored[at + j:at + j + nn]
    entries = stored[at + j + nn:at + j + nn + ne]
    return Index(top, lengths, crcs, kinds, name_ends, entry_ends, names, entries, max(limits.max_json_depth - 2, 0))


def _kinds(raw: object, n: int) -> dict[int, str]:
    if not isinstance(raw, list):
        raise FormatError("kinds must be a list of [section index, kind]")
    kinds: dict[int, str] = {}
    last = -1
    for item in raw:
        if (not isinstance(item, list) or len(item) != 2 or type(item[0]) is not int
                or not last < item[0] < n or not isinstance(item[1], str) or item[1] == _DATA):
            raise FormatError("kinds must list [section index, kind] pairs, indices increasing, kinds other than 'data'")
        last = item[0]
        kinds[last] = item[1]
    return kinds
