"""What every codec returns and takes: a named method, small JSON parameters, a payload.

A codec is a coder × a probability model; each component kind tries several and keeps the one
with the fewest exact bytes (`smallest`). Parameters go into the header, tables into the payload.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ..errors import BadArgumentError, CorruptFileError
from ..limits import DEFAULT_LIMITS, Limits
from .ans import FINAL_STATE, LEGACY_FINAL_STATE

PREFER_CHOICES = ("size", "balanced", "speed")


@dataclass(frozen=True)
class Encoded:
    codec: str
    payload: bytes
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
