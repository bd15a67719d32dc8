"""Header dictionary 1 (spec/FORMAT.md §4.6, format 2.3): a fixed text that a zstd-framed JSON header
may be compressed against (header encoding 5: bit 2 of `header_encoding` set). A header of a few hundred
bytes compresses poorly on its own, because zstd has nothing to refer back to; this dictionary holds the
member names and recurring values of §21's `dataset` member (every model arch, the training settings,
`env`), so a dataset file's header stores little more than its own numbers and hashes. Every field is
still in the header: the dictionary only gives zstd earlier text to match against.

The bytes are normative: they are `spec/header-dict-1.txt` (sha256 below), used as a zstd raw-content
dictionary. Frames are written with their content size, without a checksum (the preamble's header CRC
covers the stored bytes) and without a dictionary id.
"""

from __future__ import annotations

import hashlib

from ..errors import CorruptFileError

DICT_1 = (
    '{"arch":"lstm","alphabet":256,"emb":16,"hidden":128}{"arch":"cm","orders":[],"words":,"match":,"'
    'match_bits":,"table_bits":,"limit":,"lr":,"apm":,"mixer":}{"arch":"gauss","inputs":,"step":"","o'
    'ffset":}{"arch":"uniform","classes":}{"arch":"mlp","inputs":784,"hidden":[],"classes":10}{"arch"'
    ':"cnn","shape":[28,28],"channels":[],"kernel":5,"hidden":[],"classes":10}{"tensors":{},"dataset"'
    ':{"s":0,"kind":"bytes","code":"two-part","n":,"alphabet":256,"sha256":"","model":{"arch":"mix","'
    'members":[{"arch":"patchpca","shape":[28,28],"kernel":5,"filters":16,"pool":4,"classes":10,"hidd'
    'en":[64]},{"arch":"patchpca","shape":[28,28],"kernel":5,"filters":16,"pool":4,"classes":10,"hidd'
    'en":[]}],"temps":["1"],"share":"1"},"seed":0,"env":{"torch":"+cpu","constriction":"0.5.0","numpy'
    '":"","platform":"Linux-x86_64","threads":"1"},"streams":,"side":{"sha256":"","shape":[,28,28]},"'
    'train":{"lr":"0.0","batch":"","seqlen":"128","epochs":"","min_steps":"50","weight_decay":"0.0","'
    'clip":"1.0","average":"0."},"blocks":[]},"sections":[[,,"dataset"]]}'
).encode("ascii")
DICT_1_SHA256 = "36651faacd4b2cfdfa387d25e12dedf6cbf4a6610ad14fbcd63c21acc3be2d78"
LEVEL = 19
_cache: dict = {}


def _dict():
    import zstandard

    d = _cache.get("d")
    if d is None:
        assert hashlib.sha256(DICT_1).hexdigest() == DICT_1_SHA256
        d = _cache["d"] = zstandard.ZstdCompressionDict(DICT_1, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    return d


def compress(text: bytes) -> bytes:
    import zstandard

    cctx = zstandard.ZstdCompressor(level=LEVEL, dict_data=_dict(), write_content_size=True, write_checksum=False,
                                    write_dict_id=False)
    return cctx.compress(bytes(text))


def decompress(stored: bytes, declared: int) -> bytes:
    """Exactly `declared` bytes (already checked against the limits by the caller) from one zstd frame
    compressed against DICT_1; anything else is CorruptFileError."""
    import zstandard

    from ..codecs.zstd import _FRAME_MAGIC

    if stored[:4] != _FRAME_MAGIC:
        raise CorruptFileError("compressed header: not a zstd frame (bad magic number)")
    try:
        out = zstandard.ZstdDecompressor(dict_data=_dict()).decompress(stored, max_output_size=declared,
                                                                       allow_extra_data=False)
    except zstandard.ZstdError as exc:
        raise CorruptFileError(f"compressed header does not decode with header dictionary 1 ({exc})") from None
    if len(out) != declared:
        raise CorruptFileError(f"compressed header gave {len(out)} bytes, declared {declared}")
    return out


def recompress(data: bytes, limits=None) -> bytes:
    """`data`, a file whose header is JSON (plain or zstd, §4.1) and whose sections follow it without
    padding, with its header compressed against dictionary 1 (encoding 5, minor at least 3) when that
    is smaller and the result is still a file the reader takes (expansion and entry limits, no
    polyglot); otherwise `data` unchanged. The header text and the sections are kept byte for byte."""
    import zlib

    from ..limits import DEFAULT_LIMITS
    from . import polyglot
    from .format import HEADER_DICT, HEADER_ZSTD, MAJOR, MINOR_HEADER_DICT, PREAMBLE_SIZE, Preamble
    from .reader import Container

    limits = limits or DEFAULT_LIMITS
    with Container(data, limits=limits) as c:
        pre, count = c.preamble, len(c.sections)
        if pre.header_encoding not in (0, HEADER_ZSTD) or c.header.get("align", 1) != 1:
            return data
        stored = bytes(data[PREAMBLE_SIZE:PREAMBLE_SIZE + pre.header_length])
        text = c._header_text(stored) if pre.header_encoding & HEADER_ZSTD else stored
    new = compress(text)
    rest = bytes(data[PREAMBLE_SIZE + pre.header_length:])
    size = PREAMBLE_SIZE + len(new) + len(rest)
    if (len(new) >= pre.header_length or len(text) > len(new) * limits.max_header_expansion
            or limits.entry_bytes(count) > size):
        return data
    head = Preamble(MAJOR, max(pre.minor, MINOR_HEADER_DICT), HEADER_DICT | HEADER_ZSTD, len(new), size, zlib.crc32(new)).pack()
    out = head + new + rest
    if polyglot.other_format(out[:polyglot.PDF_HEAD], out[-polyglot.ZIP_TAIL:], size) is not None:
        return data
    return out
