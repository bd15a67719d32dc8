"""The planes split and join of float32 and bfloat16 words, and the `pairs` packing and unpacking, as compiled
loops, with the numpy code of raw.py and pairs.py as the fallback: all give the same streams, symbols and
words, and refuse the same malformed payloads (a loop that meets a bad code hands over to the numpy path,
which raises its exact error).

Why: numpy joins four byte planes into float32 words with strided byte stores plus six passes of byte
math, ~2.3 ms per 2**20 words, the largest per-byte cost of decoding a big tensor (the 47 MB lazy read:
~30 of ~65 ms of CPU); one fused loop does it in ~0.2 ms and releases the GIL, so chunks join in
parallel. No library on the package index exposes a bare byte interleave (numcodecs' Shuffle is a
scalar loop as slow as numpy's; blosc and blosc2 apply theirs only inside their own compressed
frames). Two providers of the same loops:
- `native`: nncodec/codecs/_planes_c.c, a small C extension built at install time where a C compiler is
  (setup.py, optional): nothing to load, no memory, so it is the default whenever it was built;
- `numba` (optional extra `jit`, planes_loops.py): importing numba and loading the cached loops takes
  ~0.5-2 s and ~135 MB of resident memory per process, most of the streaming decoder's fixed 200 MB
  allowance (issue 13's bound), so it is opt-in, for installs without the C extension.

Modes (NNCODEC_JIT, or set_mode): "native" (the default, unset): the C loops if built, else numpy;
"off" or 0: numpy only; "on" or 1: the C loops if built, else numba loaded on first use; "auto": the C
loops if built, else numpy until this process has split or joined AUTO_WORDS words, then numba; "numba":
numba even where the C loops are built (tests and benchmarks).
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable

import numpy as np

MODES = ("native", "auto", "on", "off", "numba")
MIN_WORDS = 1 << 12  # below this a call is too short for numba's loops to matter (numpy's ~10 us)
NATIVE_MIN_WORDS = 1  # the C loops cost ~1 us a call, less than one numpy operation: every size
AUTO_WORDS = 1 << 28  # numpy words (split + joined) after which `auto` loads numba (~0.6 s of numpy)


def _native_kernels() -> dict[str, Callable] | None:
    try:
        from . import _planes_c
    except ImportError:  # not built (no C compiler at install time): numpy, or numba if asked
        return None
    names = ("join32", "join16", "split32", "split16", "unpairs", "pairs", "count_bytes", "distinct_bytes")
    return {name: getattr(_planes_c, name) for name in names}


NATIVE = _native_kernels()
_lock = threading.Lock()
_state: dict = {"mode": os.environ.get("NNCODEC_JIT", "native").lower(), "kernels": None, "numpy_words": 0}
if _state["mode"] not in MODES:
    _state["mode"] = {"1": "on", "true": "on", "0": "off", "false": "off", "": "native"}.get(_state["mode"], "native")


def set_mode(mode: str) -> None:
    """One of MODES (see the module's docstring)."""
    if mode not in MODES:
        raise ValueError(f"jit mode must be one of {MODES}, got {mode!r}")
    _state["mode"] = mode


def mode() -> str:
    return _state["mode"]


def provider() -> str:
    """Which loops a large call uses in the current mode: "native", "numba" (if it loads) or "numpy"."""
    m = _state["mode"]
    if m == "off":
        return "numpy"
    if m != "numba" and NATIVE is not None:
        return "native"
    return "numpy" if m == "native" or not available() else "numba"


def available() -> bool:
    """Whether numba can be imported (without importing it)."""
    import importlib.util

    return importlib.util.find_spec("numba") is not None


def kernels(words: int) -> dict[str, Callable] | None:
    """The compiled loops (the C ones, or planes_loops.KERNELS) if a call over `words` words or symbols
    should use them, loading numba if the mode says it is time; else None (numpy)."""
    m = _state["mode"]
    if m == "off":
        return None
    if NATIVE is not None and m != "numba":
        return NATIVE if words >= NATIVE_MIN_WORDS else None
    if words < MIN_WORDS or m == "native":
        return None
    k = _state["kernels"]
    if k is not None:
        return k or None
    if m == "auto":
        _state["numpy_words"] += words  # (a racy count is fine: it only decides when to load)
        if _state["numpy_words"] < AUTO_WORDS:
            return None
    if not _lock.acquire(blocking=False):
        return None  # another thread is loading them: numpy meanwhile
    try:
        if _state["kernels"] is None:
            _state["kernels"] = _load()
    finally:
        _lock.release()
    return _state["kernels"] or None


def _load() -> dict[str, Callable] | bool:
    """The compiled loops, or False when numba is not installed or does not load (then numpy, for good: an
    accelerator that fails must not fail a decode). numba's warnings (e.g. a cache directory it cannot
    write, after which it compiles in memory) are not the user's business."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from . import planes_loops
    except Exception:  # ImportError, or a broken numba / llvmlite install
        return False
    return planes_loops.KERNELS


def join_float(streams: list[np.ndarray], out: np.ndarray) -> bool:
    """Words of float32 / bfloat16 from their fast-split streams into contiguous `out` (raw._join_block's
    fast path); False (nothing written) when the loops are not to be used for this call."""
    k = kernels(out.size)
    if k is None or not out.flags.c_contiguous or not all(s.flags.c_contiguous for s in streams):
        return False
    if out.itemsize == 4:
        k["join32"](streams[0], streams[1], streams[2], streams[3], out)
    else:
        k["join16"](streams[0], streams[1], out)
    return True


def split_float(w: np.ndarray) -> list[np.ndarray] | None:
    """raw._split's fast-path streams of contiguous float32 / bfloat16 storage words `w`, or None."""
    k = kernels(w.size)
    if k is None:
        return None
    streams = [np.empty(w.size, np.uint8) for _ in range(w.itemsize)]
    if w.itemsize == 4:
        k["split32"](w, *streams)
    else:
        k["split16"](w, *streams)
    return streams
