"""One exception hierarchy for everything nncodec refuses.

Callers catch ``NNCodecError``; the CLI prints its message on one line. Nothing else may escape
the decoder: third-party failures (constriction panics, zstd errors) are converted at the call site.
"""

from __future__ import annotations


class NNCodecError(Exception):
    """Base class of every error nncodec raises on purpose."""


class FormatError(NNCodecError):
    """The bytes are not a well-formed .nnc file (wrong magic, bad layout, invalid header)."""


class CorruptFileError(FormatError):
    """A checksum failed or a payload does not decode: the file was damaged or truncated."""


class UnsupportedVersionError(FormatError):
    """The file needs a newer reader (unknown major version or unknown critical feature)."""


class LimitExceededError(NNCodecError):
    """A count, size or depth in the input exceeds the configured resource limits."""


class BadArgumentError(NNCodecError, ValueError):
    """The caller passed an invalid argument or option."""


class UnsupportedInputError(NNCodecError):
    """The input (checkpoint, dtype, object) cannot be represented or read safely."""


class ClosedFileError(NNCodecError, ValueError):
    """An NncFile was used after it was closed (after its `with` block)."""
