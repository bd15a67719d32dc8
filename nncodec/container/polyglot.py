"""Files that are also another format (ZIP, PDF) are refused on read and never written.

A polyglot file can smuggle content past tools that identify files by their first or last bytes
(safetensors was fixed for this). ZIP readers search the last 65,557 bytes (22-byte record + 65,535
bytes of comment) for the end-of-central-directory record, and they accept bytes after it (Info-ZIP
`unzip` warns and extracts; Python's zipfile too), so a record anywhere in that window counts, not
only one that ends at the end of the file. PDF readers accept `%PDF-` anywhere in the first 1,024
bytes.
"""

from __future__ import annotations

import struct

ZIP_EOCD = b"PK\x05\x06"
EOCD = struct.Struct("<4sHHHHIIH")  # signature, disk, cd disk, entries here, entries, cd size, cd offset, comment
ZIP_TAIL = EOCD.size + 0xFFFF
PDF_MAGIC = b"%PDF-"
PDF_HEAD = 1024
_ZIP64 = 0xFFFFFFFF


def zip_eocd_positions(tail: bytes, tail_start: int) -> list[int]:
    """File offsets of every parseable ZIP end-of-central-directory record in `tail` (the file's
    last bytes, from offset `tail_start` to the end): the signature, a whole record, a comment that
    fits before the end of the file, and a central directory whose size fits before the record
    (its stored offset is not required to match: readers allow data prepended to an archive), or
    ZIP64 markers, which send the reader elsewhere. Deliberately loose: whatever a reader might
    accept counts."""
    found = []
    start = tail.rfind(ZIP_EOCD)
    while start >= 0:
        if start + EOCD.size <= len(tail):
            _, _, _, _, _, cd_size, cd_offset, comment = EOCD.unpack_from(tail, start)
            fits_comment = start + EOCD.size + comment <= len(tail)
            fits_directory = cd_size <= tail_start + start or _ZIP64 in (cd_size, cd_offset)
            if fits_comment and fits_directory:
                found.append(tail_start + start)
        start = tail.rfind(ZIP_EOCD, 0, start)
    return found


def other_format(head: bytes, tail: bytes, file_size: int) -> str | None:
    """The other format this file also is, if any: `head`/`tail` are its first/last bytes."""
    if PDF_MAGIC in head[:PDF_HEAD]:
        return "PDF"
    tail = tail[-ZIP_TAIL:]
    if zip_eocd_positions(tail, file_size - len(tail)):
        return "ZIP"
    return None
