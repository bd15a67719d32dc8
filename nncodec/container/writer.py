"""Writing the .nnc container: sections tiled after the header, a CRC for each, atomic files."""

from __future__ import annotations

import os
import tempfile
import zlib
from collections.abc import Iterable

from ..codecs import zstd as zstd_codec
from ..errors import BadArgumentError
from ..limits import DEFAULT_LIMITS, Limits
from . import index, polyglot, strict_json
from .format import HEADER_INDEXED, HEADER_JSON, HEADER_ZSTD, MAJOR, MAX_ALIGN, MINOR, PREAMBLE_SIZE, Preamble, align_up


def assemble(body: dict, sections: Iterable[bytes], *, align: int = 1, kinds: dict[int, str] | None = None,
             min_file_bytes: int = 0, limits: Limits = DEFAULT_LIMITS, minor: int = MINOR) -> bytes:
    """The complete file: `body` is the header object without the container keys; `min_file_bytes`
    is what a reader requires for the body's entries (tensors) by limits.Limits.entry_bytes; `minor`
    is the format minor version the body needs (tensorwriter.format_minor).

    The header is stored as JSON or as a zstd frame of it, whichever is smaller, unless the frame
    would expand more than a reader allows or declare more entries than the file's bytes back
    (limits.py); the same input always gives the same bytes. A file that would also be a valid ZIP
    or PDF (user bytes can contain their signatures) gets an optional padding section or header
    key that breaks the other format, so readers never have to refuse what this writer made.
    """
    if isinstance(align, bool) or not isinstance(align, int) or not 1 <= align <= MAX_ALIGN or align & (align - 1):
        raise BadArgumentError(f"align must be a power of two in [1, {MAX_ALIGN}], got {align!r}")
    payloads = [bytes(s) for s in sections]
    kinds = dict(kinds or {})
    body = dict(body)
    header_encoding = None
    for _ in range(4):
        out = _layout(body, payloads, kinds, align, header_encoding, min_file_bytes, limits, minor)
        other = polyglot.other_format(out[: polyglot.PDF_HEAD], out[-polyglot.ZIP_TAIL :], len(out))
        if other is None:
            return out
        if other == "ZIP":  # move every record out of the window ZIP readers search: zero padding
            first = min(polyglot.zip_eocd_positions(out[-polyglot.ZIP_TAIL :], max(0, len(out) - polyglot.ZIP_TAIL)))
            kinds[len(payloads)] = "x-pad"
            payloads.append(b"\0" * (polyglot.ZIP_TAIL - (len(out) - first) + 1))
        elif header_encoding is None:
            header_encoding = HEADER_ZSTD  # the signature may be in the header's text
        else:  # push the sections past the first 1,024 bytes
            body["x-pad"] = " " * polyglot.PDF_HEAD
            header_encoding = HEADER_JSON
    raise BadArgumentError("could not lay out the file without it also being a valid ZIP or PDF")


def _layout(body: dict, payloads: list[bytes], kinds: dict[int, str], align: int, header_encoding: int | None,
            min_file_bytes: int = 0, limits: Limits = DEFAULT_LIMITS, minor: int = MINOR) -> bytes:
    table = [[len(p), zlib.crc32(p)] + ([kinds[i]] if i in kinds else []) for i, p in enumerate(payloads)]
    if header_encoding is None and index.wanted(body):
        header_encoding = HEADER_INDEXED  # many tensors: open without parsing every entry (§4.5)
    if header_encoding == HEADER_INDEXED:
        return _file(index.pack({**body, **({"align": align} if align != 1 else {})}, table), payloads, align,
                     HEADER_INDEXED, minor)
    header = dict(body)
    header["sections"] = table
    if align != 1:
        header["align"] = align
    text = strict_json.dumps(header)
    packed = zstd_codec.compress(text, 19)
    if header_encoding is None:
        fits = len(text) <= len(packed) * limits.max_header_expansion
        header_encoding = HEADER_ZSTD if len(packed) < len(text) and fits else HEADER_JSON
    out = _file(packed if header_encoding == HEADER_ZSTD else text, payloads, align, header_encoding, minor)
    if header_encoding == HEADER_ZSTD and max(min_file_bytes, limits.entry_bytes(len(payloads))) > len(out):
        out = _file(text, payloads, align, HEADER_JSON, minor)  # JSON spends enough bytes per entry
    return out


def _file(stored: bytes, payloads: list[bytes], align: int, header_encoding: int, minor: int = MINOR) -> bytes:
    if header_encoding == HEADER_INDEXED:
        minor = max(minor, 1)  # the indexed header is a format 2.1 addition (§4.5)
    out = bytearray()
    out += b"\0" * PREAMBLE_SIZE
    out += stored
    for p in payloads:
        out += b"\0" * (align_up(len(out), align) - len(out))
        out += p
    preamble = Preamble(MAJOR, minor, header_encoding, len(stored), len(out), zlib.crc32(stored))
    out[:PREAMBLE_SIZE] = preamble.pack()
    return bytes(out)


def atomic_write(path: str | os.PathLike, data: bytes, *, overwrite: bool = False) -> None:
    """Write `data` to a temporary file beside `path`, then move it into place in one step.

    Without `overwrite` an existing file is never replaced (FileExistsError), even in a race.
    A failure at any point leaves no partial file behind.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".nncodec-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):  # mkstemp makes 0600 files; give the usual 0666 minus umask
                os.fchmod(f.fileno(), 0o666 & ~_umask())
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            _move_no_clobber(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def _move_no_clobber(tmp: str, path: str) -> None:
    try:
        os.link(tmp, path)  # fails if path exists: no check-then-write race
    except FileExistsError:
        raise
    except OSError:  # no hard links on this filesystem
        if os.path.exists(path):
            raise FileExistsError(path) from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)
