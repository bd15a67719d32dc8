"""Writing the .nnc container: sections tiled after the header, a CRC for each, atomic files.

Sections are collected in a `Sections` store as they are coded, in memory or spooled to an unnamed
temporary file (streaming: nothing is kept in memory); one layout routine (`lay_out`) decides the
header and the padding for both, so a file streamed to disk has exactly the bytes `assemble` returns.
"""

from __future__ import annotations

import bisect
import errno
import os
import tempfile
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO

from ..codecs import zstd as zstd_codec
from ..codecs.base import Parts, payload_crc32
from ..errors import BadArgumentError
from ..limits import DEFAULT_LIMITS, Limits
from . import index, polyglot, strict_json
from .atomic import AtomicFile, atomic_write  # noqa: F401 - re-exported: atomic_write's long-standing home
from .format import HEADER_INDEXED, HEADER_JSON, HEADER_ZSTD, MAJOR, MAX_ALIGN, MINOR, PREAMBLE_SIZE, Preamble, align_up

COPY_BLOCK = 1 << 24  # bytes per copy step from the spool (bounds the fallback's buffer)


SPOOL_AHEAD_BYTES = 64 * 2**20  # section bytes handed to the spool writer thread and not yet written, at most


def _pwrite_pieces(fd: int, pieces: list, offset: int) -> None:
    for piece in pieces:
        view = memoryview(piece).cast("B") if not isinstance(piece, bytes) else memoryview(piece)
        while view:
            done = os.pwrite(fd, view, offset)
            view, offset = view[done:], offset + done


class Sections:
    """Section payloads in coding order with their lengths, CRCs and kinds. With a `spool` file
    the bytes go there as they come (streaming); otherwise they are kept in memory.

    Spool writes are done by a writer thread of their own (os.pwrite at each section's reserved offset),
    so the thread that adds sections goes on reading input and handing out coding work meanwhile (the
    spool write was the largest single cost of that thread); at most SPOOL_AHEAD_BYTES wait to be
    written, and a failed write is raised by the next `add`, `read`, `copy_to` or `drain`."""

    def __init__(self, spool: BinaryIO | None = None) -> None:
        self.lengths: list[int] = []
        self.crcs: list[int] = []
        self.kinds: dict[int, str] = {}
        self._memory: list[bytes | memoryview] = []
        self._spool = spool
        self._starts: list[int] = []
        self._end = 0
        self._writer: ThreadPoolExecutor | None = None
        self._pending: deque[tuple[int, Future]] = deque()  # (bytes, write) in submission order
        self._pending_bytes = 0

    def __len__(self) -> int:
        return len(self.lengths)

    def add(self, payload: bytes | bytearray | memoryview | Parts, kind: str | None = None) -> int:
        """Append a section; returns its index. Parts (a chunked tensor's payload) are written and checksummed
        piece by piece to a spool, and joined into one buffer only when kept in memory."""
        index = len(self.lengths)
        self.lengths.append(len(payload))
        self.crcs.append(payload_crc32(payload))  # (isal when installed: same value, 3.5x faster)
        if kind is not None:
            self.kinds[index] = kind
        if self._spool is None:  # a read-only view is kept as it is (a joined chunked payload: no copy)
            if isinstance(payload, Parts):
                payload = payload.joined()
            keep = isinstance(payload, bytes) or (isinstance(payload, memoryview) and payload.readonly
                                                   and payload.itemsize == 1 and payload.c_contiguous)
            self._memory.append(payload if keep else bytes(payload))
        else:
            self._starts.append(self._end)
            self._end += len(payload)
            self._spool_write(payload, self._starts[-1])
        return index

    def _spool_write(self, payload: bytes | bytearray | memoryview | Parts, offset: int) -> None:
        size = len(payload)
        pieces = payload.pieces if isinstance(payload, Parts) else [payload]
        if not hasattr(os, "pwrite"):  # (not on Windows: written here, in order)
            for piece in pieces:
                self._spool.write(piece)
            return
        while self._pending and self._pending_bytes + size > SPOOL_AHEAD_BYTES:
            done, write = self._pending.popleft()
            self._pending_bytes -= done
            write.result()
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nncodec-spool")
        self._pending.append((size, self._writer.submit(_pwrite_pieces, self._spool.fileno(), pieces, offset)))
        self._pending_bytes += size

    def drain(self) -> None:
        """Wait until every section added is in the spool (raising a write's error)."""
        while self._pending:
            done, write = self._pending.popleft()
            self._pending_bytes -= done
            write.result()
        if self._spool is not None:
            self._spool.flush()  # (what the no-pwrite fallback wrote through the buffer)

    def close(self) -> None:
        """Stop the spool writer (writes not started are dropped: after an error or a cancellation)."""
        for _, write in self._pending:
            write.cancel()
        self._pending.clear()
        self._pending_bytes = 0
        if self._writer is not None:
            self._writer.shutdown(wait=True, cancel_futures=True)
            self._writer = None

    def read(self, index: int, start: int, stop: int) -> bytes | memoryview:
        """Bytes [start, stop) of section `index` (a view for a section kept as a view)."""
        if self._spool is None:
            return self._memory[index][start:stop]
        self.drain()
        return os.pread(self._spool.fileno(), stop - start, self._starts[index] + start)

    def copy_to(self, index: int, out: BinaryIO, offset: int) -> None:
        """Write section `index` into `out` at file offset `offset` (in the kernel where it can)."""
        length = self.lengths[index]
        if self._spool is None:
            out.seek(offset)
            out.write(self._memory[index])
            return
        self.drain()
        out.flush()
        src, dst, done = self._spool.fileno(), out.fileno(), 0
        while done < length:
            n = min(COPY_BLOCK, length - done)
            try:
                n = os.copy_file_range(src, dst, n, self._starts[index] + done, offset + done)
            except (AttributeError, OSError):  # no copy_file_range here (or across these files)
                data = os.pread(src, n, self._starts[index] + done)
                n = os.pwrite(dst, data, offset + done)
            if n <= 0:
                raise OSError(f"could not copy section {index} into the output file")
            done += n


@dataclass(frozen=True)
class Plan:
    """Where every byte of the file goes: preamble, stored header, section offsets."""

    stored: bytes
    encoding: int
    offsets: list[int]
    file_length: int
    minor: int = MINOR

    def preamble(self) -> bytes:
        return Preamble(MAJOR, self.minor, self.encoding, len(self.stored), self.file_length, zlib.crc32(self.stored)).pack()

    def read(self, sections: Sections, start: int, stop: int) -> bytes:
        """The file's bytes [start, stop): preamble, header, zero padding and section bytes."""
        start, stop = max(0, start), min(stop, self.file_length)
        head = self.preamble() + self.stored
        out = [head[start:stop]]  # the parts, joined once at the end (one copy of the file, not three)
        pos = max(start, len(head))
        i = max(0, bisect.bisect_right(self.offsets, pos) - 1)
        while pos < stop and i < len(self.offsets):
            begin, end = self.offsets[i], self.offsets[i] + sections.lengths[i]
            if pos < begin:  # zero padding before section i
                gap = min(begin, stop) - pos
                out.append(b"\0" * gap)
                pos += gap
                continue
            if pos < end:
                take = min(end, stop)
                out.append(sections.read(i, pos - begin, take - begin))
                pos = take
            i += 1
        return b"".join(out)

    def write(self, sections: Sections, out: BinaryIO) -> None:
        """The whole file into `out` (at its start): header first, then each section in place."""
        out.seek(0)
        out.write(self.preamble() + self.stored)
        out.truncate(self.file_length)  # the gaps between sections read as the zeros they must be
        for i, offset in enumerate(self.offsets):
            if sections.lengths[i]:
                sections.copy_to(i, out, offset)
        out.flush()


def assemble(body: dict, sections: Iterable[bytes], *, align: int = 1, kinds: dict[int, str] | None = None,
             min_file_bytes: int = 0, limits: Limits = DEFAULT_LIMITS, minor: int = MINOR) -> bytes:
    """The complete file in memory: `body` is the header object without the container keys;
    `min_file_bytes` is what a reader requires for the body's entries (tensors) by
    limits.Limits.entry_bytes; `minor` is the format minor version the body needs
    (tensorwriter.format_minor). See `lay_out` for the choices made."""
    store = Sections()
    for i, s in enumerate(sections):
        store.add(s, (kinds or {}).get(i))
    plan = lay_out(body, store, align=align, min_file_bytes=min_file_bytes, limits=limits, minor=minor)
    return plan.read(store, 0, plan.file_length)


def lay_out(body: dict, store: Sections, *, align: int = 1, min_file_bytes: int = 0,
            limits: Limits = DEFAULT_LIMITS, minor: int = MINOR) -> Plan:
    """The layout of the file holding `body` and the sections of `store`.

    A header of many tensors is indexed (§4.5), so readers open it without parsing every entry,
    other headers are JSON; either is stored as is or as a zstd frame, whichever is smaller, unless the frame
    would expand more than a reader allows or declare more entries than the file's bytes back
    (limits.py); the same input always gives the same bytes. A file that would also be a valid ZIP
    or PDF (user bytes can contain their signatures) gets an optional padding section (appended to
    `store`) or header key that breaks the other format, so readers never refuse what this writer made.
    """
    if isinstance(align, bool) or not isinstance(align, int) or not 1 <= align <= MAX_ALIGN or align & (align - 1):
        raise BadArgumentError(f"align must be a power of two in [1, {MAX_ALIGN}], got {align!r}")
    body = dict(body)
    header_encoding = None
    for _ in range(4):
        plan = _plan(body, store, align, header_encoding, min_file_bytes, limits, minor)
        size = plan.file_length
        head = plan.read(store, 0, polyglot.PDF_HEAD)
        tail_start = max(0, size - polyglot.ZIP_TAIL)
        other = polyglot.other_format(head, plan.read(store, tail_start, size), size)
        if other is None:
            return plan
        if other == "ZIP":  # move every record out of the window ZIP readers search: zero padding
            first = min(polyglot.zip_eocd_positions(plan.read(store, tail_start, size), tail_start))
            store.add(b"\0" * (polyglot.ZIP_TAIL - (size - first) + 1), "x-pad")
        elif header_encoding is None:
            header_encoding = HEADER_ZSTD  # the signature may be in the header's text
        else:  # push the sections past the first 1,024 bytes
            body["x-pad"] = " " * polyglot.PDF_HEAD
            header_encoding = HEADER_JSON
    raise BadArgumentError("could not lay out the file without it also being a valid ZIP or PDF")


def _plan(body: dict, store: Sections, align: int, header_encoding: int | None, min_file_bytes: int,
          limits: Limits, minor: int = MINOR) -> Plan:
    table = [[n, c] + ([store.kinds[i]] if i in store.kinds else []) for i, (n, c) in enumerate(zip(store.lengths, store.crcs, strict=True))]
    indexed = index.wanted(body) if header_encoding is None else bool(header_encoding & HEADER_INDEXED)
    if indexed:  # many tensors: readers open it without parsing every entry (§4.5, a format 2.1 addition)
        text = index.pack({**body, **({"align": align} if align != 1 else {})}, table)
        minor = max(minor, 1)
    else:
        header = dict(body)
        header["sections"] = table
        if align != 1:
            header["align"] = align
        text = strict_json.dumps(header)
    plain = HEADER_INDEXED if indexed else HEADER_JSON
    packed = zstd_codec.compress(text, header_level(len(text)))
    if header_encoding is None:
        fits = len(text) <= len(packed) * limits.max_header_expansion
        header_encoding = plain | HEADER_ZSTD if len(packed) < len(text) and fits else plain
    plan = _tile(text, packed, store.lengths, align, header_encoding, minor)
    if header_encoding & HEADER_ZSTD and max(min_file_bytes, limits.entry_bytes(len(store))) > plan.file_length:
        plan = _tile(text, packed, store.lengths, align, plain, minor)  # uncompressed spends enough bytes per entry
    return plan


HEADER_LEVEL_SMALL, HEADER_LEVEL_LARGE, HEADER_SMALL_BYTES = 19, 9, 512


def header_level(text_bytes: int) -> int:
    """zstd level of a header text: 19 (smallest) up to 512 bytes (<= ~0.3 ms), 9 above. Level 19 costs
    ~0.5-1 us per byte for a few bytes less: rapidocr's 86.8 kB indexed header took 82 ms at 19 (8,516 B), a
    quarter of the whole lossless encode, and 1.3 ms at 9 (9,904 B, +0.01 % of that file); resemblyzer's
    3.0 kB header 2.0 ms at 19 (525 B) against 0.09 ms at 9 (534 B), ~8 % of its encode; LeNet-300-100's
    1.1 kB 0.5 ms (319 B) against 0.05 ms (331 B)."""
    return HEADER_LEVEL_SMALL if text_bytes <= HEADER_SMALL_BYTES else HEADER_LEVEL_LARGE


def _tile(text: bytes, packed: bytes, lengths: list[int], align: int, header_encoding: int, minor: int) -> Plan:
    stored = packed if header_encoding & HEADER_ZSTD else text
    offsets, pos = [], PREAMBLE_SIZE + len(stored)
    for n in lengths:
        pos = align_up(pos, align)
        offsets.append(pos)
        pos += n
    return Plan(stored, header_encoding, offsets, pos, minor)


def _layout(body: dict, payloads: list[bytes], kinds: dict[int, str], align: int, header_encoding: int | None,
            min_file_bytes: int = 0, limits: Limits = DEFAULT_LIMITS, minor: int = MINOR) -> bytes:
    """One layout without the polyglot repair (tests use it to craft files readers must refuse)."""
    store = Sections()
    for i, p in enumerate(payloads):
        store.add(p, kinds.get(i))
    plan = _plan(body, store, align, header_encoding, min_file_bytes, limits, minor)
    return plan.read(store, 0, plan.file_length)


class StreamingFile:
    """A .nnc file written as its sections are coded: `sections` spools them to an unnamed temporary
    file beside `path` (gone with the process, whatever ends it); `finish(body)` lays the file out
    into a temporary file and moves it into place. Memory holds the header entries only.
    Use as a context manager: leaving it without `finish` leaves nothing behind."""

    def __init__(self, path: str | os.PathLike, *, overwrite: bool = False) -> None:
        self.path = os.fspath(path)
        if not overwrite and os.path.lexists(self.path):  # before the coding, not after it (commit re-checks)
            raise FileExistsError(errno.EEXIST, "file exists", self.path)
        self._spool = tempfile.TemporaryFile(prefix=".nncodec-", suffix=".spool",  # noqa: SIM115 - closed in close()
                                             dir=os.path.dirname(os.path.abspath(self.path)))
        self.sections = Sections(self._spool)
        self._out = AtomicFile(self.path, overwrite=overwrite)
        self.size = 0

    def finish(self, body: dict, *, align: int = 1, min_file_bytes: int = 0, check: Callable[[str], None] | None = None,
               minor: int = MINOR) -> int:
        """Write the file; `check(path)` may refuse the laid-out temporary file before it is moved
        into place (the writer's re-open with default limits). Returns the file size."""
        self.sections.drain()
        plan = lay_out(body, self.sections, align=align, min_file_bytes=min_file_bytes, minor=minor)
        with self._out as f:
            plan.write(self.sections, f)
            if check is not None:
                check(self._out.tmp)
            self._out.commit()
        self.size = plan.file_length
        return self.size

    def close(self) -> None:
        self.sections.close()
        self._spool.close()
        self._out.discard()

    def __enter__(self) -> StreamingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
