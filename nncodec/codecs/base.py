"""What every codec returns and takes: a named method, small JSON parameters, a payload.

A codec is a coder × a probability model; each component kind tries several and keeps the one
with the fewest exact bytes (`smallest`). Parameters go into the header, tables into the payload.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from ..checksum import crc32
from ..errors import BadArgumentError, CorruptFileError
from ..limits import DEFAULT_LIMITS, Limits
from .ans import FINAL_STATE, LEGACY_FINAL_STATE

PREFER_CHOICES = ("size", "balanced", "speed")


class Parts:
    """A payload given as consecutive pieces (bytes or byte views), never joined unless a consumer needs one
    buffer: a streaming writer writes and checksums the pieces one by one, so a large tensor's coded streams
    are not copied twice more into fresh memory (the planes join of each chunk, then the chunks' join: on
    the 1 GB checkpoint ~1.7 GB of copies, each page of fresh memory a page fault). The bytes are those of
    the joined payload."""

    __slots__ = ("pieces", "nbytes")

    def __init__(self, pieces: Iterable[bytes | memoryview]) -> None:
        self.pieces: list[bytes | memoryview] = []
        for p in pieces:
            self.pieces.extend(p.pieces if isinstance(p, Parts) else [p])
        self.nbytes = sum(len(p) for p in self.pieces)

    def __len__(self) -> int:
        return self.nbytes

    def crc32(self, value: int = 0) -> int:
        for p in self.pieces:
            value = crc32(p, value)
        return value

    def joined(self) -> memoryview:
        """The pieces back to back, as a read-only view of one numpy buffer: a large numpy allocation is backed
        by huge pages (numpy asks for them), where b"".join's fresh bytes object takes a page fault per 4 KiB
        (a 54 MB join: ~40 ms against ~10 ms, at load ~6). Writers take any buffer (Sections.add)."""
        out = np.empty(self.nbytes, dtype=np.uint8)
        pos = 0
        for p in self.pieces:
            out[pos : pos + len(p)] = np.frombuffer(p, dtype=np.uint8)
            pos += len(p)
        out.flags.writeable = False
        return memoryview(out)


def payload_crc32(payload: bytes | memoryview | Parts) -> int:
    """CRC-32 of a payload, whether one buffer or Parts."""
    return payload.crc32() if isinstance(payload, Parts) else crc32(payload)


@dataclass(frozen=True)
class Encoded:
    codec: str
    payload: bytes | memoryview | Parts
    params: dict = field(default_factory=dict)
    slow: bool = False  # decodes with ANS (tens of M symbols/s) rather than zstd/copy (GB/s)


@dataclass(frozen=True)
class EncodeOptions:
    """How hard to try and what to favour when candidates are close.

    prefer="size" keeps the smallest candidate. "speed" keeps the smallest among the fast-decoding
    ones (copy, zstd: GB/s) and never uses ANS (tens of M symbols/s). "balanced" (the default)
    takes an ANS candidate only when it is at least 1/64 smaller than the best fast one, so a
    sliver of size never costs a several-fold slower decode.
    """

    prefer: str = "balanced"
    zstd_level: int = 19
    contexts: bool = True  # try the context-model candidates (mask "ans-classes", levels "ans-rowclass")
    threads: int | None = None  # worker threads for chunks (None or 0: every core); never changes the bytes
    chunk_bytes: int = 4 * 2**20  # raw tensors larger than this are cut into chunks (spec §22; chunks.py)

    def __post_init__(self) -> None:
        if self.prefer not in PREFER_CHOICES:
            raise BadArgumentError(f"prefer must be one of {', '.join(PREFER_CHOICES)}, not {self.prefer!r}")
        check_threads(self.threads)
        if isinstance(self.chunk_bytes, bool) or not isinstance(self.chunk_bytes, int) or self.chunk_bytes < 1:
            raise BadArgumentError(f"chunk_bytes must be a positive integer, not {self.chunk_bytes!r}")

    @property
    def allow_slow(self) -> bool:
        return self.prefer != "speed"


def check_threads(threads: object) -> None:
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 0):
        raise BadArgumentError(f"threads must be a non-negative integer (0 or None: every core), not {threads!r}")


DEFAULT_OPTIONS = EncodeOptions()
BALANCED_MARGIN = 1 / 64


@dataclass(frozen=True)
class DecodeContext:
    limits: Limits = DEFAULT_LIMITS
    legacy_ans: bool = False  # a format 1 file: its ANS streams end empty, not in FINAL_STATE (spec §12)
    threads: int | None = None  # worker threads for the chunks of a tensor (None or 0: every core)

    @property
    def ans_final_state(self) -> int:
        return LEGACY_FINAL_STATE if self.legacy_ans else FINAL_STATE


def smallest(candidates: Iterable[Callable[[], Encoded | None]], options: EncodeOptions) -> Encoded:
    """Run each candidate encoder and keep the fewest bytes (ties: the earlier, i.e. simpler, one)."""
    fast: Encoded | None = None
    slow: Encoded | None = None
    for make in candidates:
        enc = make()
        if enc is None or (enc.slow and not options.allow_slow):
            continue
        if enc.slow:
            slow = enc if slow is None or len(enc.payload) < len(slow.payload) else slow
        else:
            fast = enc if fast is None or len(enc.payload) < len(fast.payload) else fast
    if fast is None or slow is None:
        best = fast or slow
        if best is None:
            raise BadArgumentError("no codec could encode this component")
        return best
    margin = BALANCED_MARGIN * len(fast.payload) if options.prefer == "balanced" else 0
    return slow if len(slow.payload) < len(fast.payload) - margin else fast


def expect_params(params: object, allowed: dict[str, type], what: str) -> dict:
    """Header parameters must be exactly the expected keys with the expected JSON types."""
    if not isinstance(params, dict):
        raise CorruptFileError(f"{what}: parameters must be an object")
    unknown = set(params) - set(allowed)
    if unknown:
        raise CorruptFileError(f"{what}: unknown parameters {sorted(unknown)}")
    for key, typ in allowed.items():
        if key not in params:
            raise CorruptFileError(f"{what}: missing parameter {key!r}")
        value = params[key]
        if typ is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise CorruptFileError(f"{what}: parameter {key!r} must be an integer")
        if typ is not int and not isinstance(value, typ):
            raise CorruptFileError(f"{what}: parameter {key!r} must be {typ.__name__}")
    return params
