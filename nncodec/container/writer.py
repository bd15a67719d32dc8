"""Writing the .nnc container: sections tiled after the header, a CRC for each, atomic files."""

from __future__ import annotations

import os
import tempfile
import zlib
from collections.abc import Iterable

from ..codecs import zstd as zstd_codec
from . import strict_json
from .format import HEADER_JSON, HEADER_ZSTD, MAJOR, MAX_ALIGN, MINOR, PREAMBLE_SIZE, Preamble, align_up


def assemble(body: dict, sections: Iterable[bytes], *, align: int = 1, kinds: dict[int, str] | None = None) -> bytes:
    """The complete file: `body` is the header object without the container keys.

    The header is stored as JSON or as a zstd frame of it, whichever is smaller; the same input
    always gives the same bytes.
    """
    if not 1 <= align <= MAX_ALIGN or align & (align - 1):
        raise ValueError(f"align must be a power of two in [1, {MAX_ALIGN}]")
    payloads = [bytes(s) for s in sections]
    kinds = kinds or {}
    table = [[len(p), zlib.crc32(p)] + ([kinds[i]] if i in kinds else []) for i, p in enumerate(payloads)]
    header = dict(body)
    header["sections"] = table
    if align != 1:
        header["align"] = align
    text = strict_json.dumps(header)
    packed = zstd_codec.compress(text, 19)
    encoding, stored = (HEADER_ZSTD, packed) if len(packed) < len(text) else (HEADER_JSON, text)
    out = bytearray()
    out += b"\0" * PREAMBLE_SIZE
    out += stored
    for p in payloads:
        out += b"\0" * (align_up(len(out), align) - len(out))
        out += p
    preamble = Preamble(MAJOR, MINOR, encoding, len(stored), len(out), zlib.crc32(stored))
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
