"""Files that are also another format (ZIP, PDF) are refused on read and never written.

A polyglot file can smuggle content past tools that identify files by their first or last bytes
(safetensors was fixed for this). ZIP readers find the end-of-central-directory record in the last
65,557 bytes; PDF readers accept `%PDF-` anywhere in the first 1,024 bytes.
"""

from __future__ import annotations

import struct

ZIP_EOCD = b"PK\x05\x06"
ZIP_TAIL = 22 + 0xFFFF
PDF_MAGIC = b"%PDF-"
PDF_HEAD = 1024


def zip_eocd_at_end(tail: bytes) -> bool:
    """True if `tail` (the file's last bytes) ends in a ZIP end-of-central-directory record."""
    start = tail.rfind(ZIP_EOCD)
    while start >= 0:
        if start + 22 <= len(tail):
            (comment_length,) = struct.unpack_from("<H", tail, start + 20)
            if start + 22 + comment_length == len(tail):
                return True
        start = tail.rfind(ZIP_EOCD, 0, start)
    return False


def other_format(head: bytes, tail: bytes) -> str | None:
    """The other format this file also is, if any: `head`/`tail` are its first/last bytes."""
    if PDF_MAGIC in head[:PDF_HEAD]:
        return "PDF"
    if zip_eocd_at_end(tail[-ZIP_TAIL:]):
        return "ZIP"
    return None
