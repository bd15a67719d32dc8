"""CRC-32 (ISO-HDLC, zlib's, spec §1): python-isal's when installed (the optional extra `fast`), else zlib's.

Both compute the same value; isal's runs at ~10.7 GB/s per core here against zlib's ~3 GB/s, which is a
fifth of the time of decoding a chunked float32 tensor (every chunk's CRC is checked before it is decoded).
"""

from __future__ import annotations

import zlib

try:
    from isal.isal_zlib import crc32 as _fast_crc32
except ImportError:  # the optional extra is not installed
    _fast_crc32 = None

crc32 = _fast_crc32 if _fast_crc32 is not None else zlib.crc32
