"""Integer quantization levels of the surviving weights (`levels` component).

Candidates, smallest kept: ANS under a categorical model whose counts are stored (exact or
coarsened: a coarse table is cheaper for small tensors), or zstd over the zigzagged levels at the
narrowest integer width that holds them.
"""

from __future__ import annotations

import numpy as np

from ..errors import CorruptFileError, UnsupportedVersionError
from ..limits import DEFAULT_LIMITS
from . import ans, levels_ctx, zstd
from .base import DecodeContext, Encoded, EncodeOptions, expect_params, smallest
from .raw import zstd_level

_WIDTHS = {1: np.dtype("u1"), 2: np.dtype("<u2"), 4: np.dtype("<u4")}


def _zigzag(levels: np.ndarray) -> np.ndarray:
    return ((levels << 1) ^ (levels >> 63)).astype(np.uint64)


def _unzigzag(z: np.ndarray) -> np.ndarray:
    """Levels as int32 (decoded levels are always within int32; half the memory of int64)."""
    z = z.astype(np.uint32)
    return ((z >> np.uint32(1)) ^ (np.uint32(0) - (z & np.uint32(1)))).view(np.int32)


def encode(levels: np.ndarray, options: EncodeOptions, rows: np.ndarray | None = None) -> Encoded:
    """`rows` (survivors per row, from `levels_ctx.row_counts`) enables the row-class candidate."""
    levels = np.asarray(levels, dtype=np.int64)
    candidates = []
    # the stored table has one count per value in [min, max]: keep it within what default readers accept
    if levels.size and int(levels.max()) - int(levels.min()) < DEFAULT_LIMITS.max_alphabet:
        candidates.append(lambda: Encoded("ans", ans.encode_with_table(levels, coarsen=(15, 255, 4095)), slow=True))

    def zstd_candidate() -> Encoded:
        z = _zigzag(levels)
        width = next(w for w in (1, 2, 4) if levels.size == 0 or int(z.max()) < 256**w)
        raw = z.astype(_WIDTHS[width]).tobytes()
        return Encoded("zstd", zstd.compress(raw, zstd_level(len(raw), options)), {"width": width})

    candidates.append(zstd_candidate)
    if options.contexts and rows is not None and levels.size and int(levels.max()) - int(levels.min()) < DEFAULT_LIMITS.max_alphabet:
        candidates.append(lambda: _rowclass_candidate(levels, rows))
    return smallest(candidates, options)


def _rowclass_candidate(levels: np.ndarray, rows: np.ndarray) -> Encoded | None:
    payload = levels_ctx.encode(levels, rows)
    return None if payload is None else Encoded("ans-rowclass", payload, slow=True)


def decode(codec: str, params: dict, payload: memoryview, count: int, ctx: DecodeContext,
           rows: np.ndarray | None = None) -> np.ndarray:
    what = f"levels/{codec}"
    if codec == "ans":
        expect_params(params, {}, what)
        return ans.decode_with_table(payload, count, what, ctx.limits.max_alphabet, ctx.ans_final_state)
    if codec == "ans-rowclass":
        expect_params(params, {}, what)
        return levels_ctx.decode(payload, count, rows, ctx, what)
    if codec == "zstd":
        expect_params(params, {"width": int}, what)
        width = params["width"]
        if width not in _WIDTHS:
            raise CorruptFileError(f"{what}: width {width} is not 1, 2 or 4")
        data = zstd.decompress(payload, count * width, what)
        return _unzigzag(np.frombuffer(data, dtype=_WIDTHS[width]))  # int32 range: width <= 4
    raise UnsupportedVersionError(f"unknown levels codec {codec!r} (written by a newer nncodec?)")
