"""The planes split and join of float32 and bfloat16 words, and the `pairs` unpacking, as compiled loops
(optional extra `jit`: numba), with the numpy code of raw.py and pairs.py as the fallback: both give the
same streams, symbols and words, and refuse the same malformed payloads (a loop that meets a bad code
hands over to the numpy path, which raises its exact error).

Why: numpy joins four byte planes into float32 words with strided byte stores plus six passes of byte
math, ~2.3 ms per 2**20 words, the largest per-byte cost of decoding a big tensor (the 47 MB lazy read:
~42 of ~90 ms of CPU); one fused loop does it in ~0.2 ms and releases the GIL, so chunks join in
parallel. No library on the package index exposes a bare byte interleave (numcodecs' Shuffle is a
scalar loop as slow as numpy's; blosc and blosc2 apply theirs only inside their own compressed
frames), so the loops below are compiled by numba, which leaves no C build to the installer.

The cost is paid once per process: importing numba and loading the cached loops takes ~0.5-2 s
(more when scipy is installed: numba imports it) and ~130 MB of resident memory, which would take most
of the streaming decoder's fixed 200 MB allowance (issue 13's bound). So the loops are opt-in:
NNCODEC_JIT=1 (or set_mode("on")) loads them on first use; NNCODEC_JIT=auto rents before it buys: numpy
until this process has split or joined AUTO_WORDS words (~0.5 s of numpy work), then the loops; unset
or 0: numpy only.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable

import numpy as np

MODES = ("auto", "on", "off")
MIN_WORDS = 1 << 12  # below this a call is too short for the loops to matter (numpy's ~10 us)
AUTO_WORDS = 1 << 28  # numpy words (split + joined) after which `auto` loads the loops (~0.6 s of numpy)

_lock = threading.Lock()
_state: dict = {"mode": os.environ.get("NNCODEC_JIT", "off").lower(), "kernels": None, "numpy_words": 0}
if _state["mode"] not in MODES:
    _state["mode"] = {"1": "on", "true": "on", "0": "off", "false": "off"}.get(_state["mode"], "off")


def set_mode(mode: str) -> None:
    """"off" (the default: numpy only), "on" (load numba on the first large split or join) or "auto"."""
    if mode not in MODES:
        raise ValueError(f"jit mode must be one of {MODES}, got {mode!r}")
    _state["mode"] = mode


def mode() -> str:
    return _state["mode"]


def available() -> bool:
    """Whether numba can be imported (without importing it)."""
    import importlib.util

    return importlib.util.find_spec("numba") is not None


def kernels(words: int) -> dict[str, Callable] | None:
    """The compiled loops (planes_loops.KERNELS) if a call over `words` words or symbols should use them,
    loading them if the mode says it is time; else None (numpy)."""
    if words < MIN_WORDS or _state["mode"] == "off":
        return None
    k = _state["kernels"]
    if k is not None:
        return k or None
    if _state["mode"] == "auto":
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
