"""The lock-step coding loop of the `cm` model (cm.py, spec/FORMAT.md §21.7), one code path for both
directions: the side (sides.py) codes or decodes each step's bits; the loop never knows which.

Per stream: the last 8 bytes, the current and previous word hashes, the match pointer and length.
A position's byte is read back (by the match model) only once it is coded (`done`), so the encoder,
which knows every byte, reads exactly what the decoder has.
"""

from __future__ import annotations

import numpy as np

from .cm import M32, P0, P1, P2, P3, P4, SQUASH, STRETCH, CMModel, context_hashes, is_letter
from .schedule import stream_bounds

MATCH_KEY = np.uint64((11 * int(P0)) % 2**64)  # the match hash's tag 11 times P0, mod 2^64
APM_RATE = 7
W_MAX = 1 << 30  # mixer weights are clamped to [-W_MAX, W_MAX] after each update


def _buckets(model: CMModel, H: np.ndarray, g: np.ndarray | None) -> np.ndarray:
    """[A, C] first slots of the 16-slot buckets: u32((H + g P2) P3) >> (36 - table_bits), per table."""
    key = H if g is None else H + g.astype(np.uint64)[:, None] * P2
    return ((((key * P3) & M32) >> model.shift).astype(np.int64) << 4) + model.offsets


def code_cm(model: CMModel, side, n: int, streams: int, progress=None) -> None:
    """All n bytes as `streams` lock-step streams (stream_bounds(0, n, streams)), 8 bits per byte."""
    cfg = model.cfg
    bounds = stream_bounds(0, n, streams)
    starts = np.array([s for s, _ in bounds], dtype=np.int64)
    lens = np.array([e - s for s, e in bounds], dtype=np.int64)
    hist = np.zeros(streams, dtype=np.uint64)
    word = np.zeros(streams, dtype=np.uint64)
    pword = np.zeros(streams, dtype=np.uint64)
    ptr = np.full(streams, -1, dtype=np.int64)
    mlen = np.zeros(streams, dtype=np.int64)
    done = np.zeros(n + 1, dtype=bool)  # done[n] stays False: a pointer past the end is never followed
    m = cfg["match"]
    mmask = np.uint64((1 << (8 * m)) - 1 if m < 8 else (1 << 64) - 1)
    mshift = np.uint64(64 - cfg["match_bits"])
    lr = cfg["lr"]
    sel = cfg["mixer"] == 1 and m > 0  # weight sets chosen by c0 and the match state
    sym = side.symbols
    nc = model.offsets.shape[1]
    xbuf = np.full((streams, model.inputs), 256, dtype=np.int64)  # the last column stays the bias
    for t in range(int(lens.max(initial=0))):
        a = int(np.count_nonzero(lens > t))  # the active streams are a prefix (lengths never increase)
        pos = starts[:a] + t
        H = context_hashes(model, hist[:a], word[:a], pword[:a])
        if m:
            valid = ptr[:a] >= 0
            expect = np.where(valid, sym[np.where(valid, ptr[:a], 0)], 0) | 256
            lenc = 2 * np.minimum(mlen[:a], 31)
        prev = (hist[:a] & np.uint64(255)).astype(np.int64) << 8
        c0 = np.ones(a, dtype=np.int64)
        for b in range(8):
            mc = np.where(valid & ((expect >> (8 - b)) == c0), lenc + ((expect >> (7 - b)) & 1), 0) if m else None
            if b == 0 or b == 4:
                base = _buckets(model, H, None if b == 0 else c0)
            slot = base + (c0 if b < 4 else (c0 & ((1 << (b - 4)) - 1)) | (1 << (b - 4)))[:, None]
            x = xbuf[:a]
            x[:, :nc] = STRETCH[(model.t[slot] >> 12) & 0xFFF]
            if m:
                x[:, nc] = STRETCH[(model.mt_counters[mc] >> 12) & 0xFFF]
            row = c0 if not sel else c0 + 256 * ((mc > 0).astype(np.int64) + (mc >= 32))  # weight set
            dot = np.minimum(np.maximum((x * model.w[row]).sum(axis=1) >> 16, -2047), 2047)
            pm = SQUASH[dot + 2047]
            p = pm
            if cfg["apm"]:
                z = STRETCH[pm] + 2048
                j, wt = (prev | c0) * 33 + (z >> 7), z & 127
                pa = (model.apm[j] * (128 - wt) + model.apm[j + 1] * wt) >> 11
                p = (pm + 3 * pa) >> 2
            p = np.minimum(np.maximum(p, 1), 4095)
            probs = np.empty((a, 2), dtype=np.float64)
            probs[:, 1] = p / 4096.0
            probs[:, 0] = (4096 - p) / 4096.0
            y = side.bits(pos, 7 - b, probs)
            model.update_counters(model.t, slot.ravel(), np.repeat(y, nc))
            if m:
                model.update_counters(model.mt_counters, mc, y)
            err = ((y << 12) - pm) * lr
            np.add.at(model.w, row, (x * err[:, None]) >> 16)
            model.w[row] = np.minimum(np.maximum(model.w[row], -W_MAX), W_MAX)
            if cfg["apm"]:
                cell = j + (wt >> 6)
                delta = ((y << 16) - model.apm[cell]) >> APM_RATE
                np.add.at(model.apm, cell, delta)
                model.apm[cell] = np.clip(model.apm[cell], 0, 65535)
            c0 = 2 * c0 + y
        byte = c0 - 256
        done[pos] = True
        ub = byte.astype(np.uint64)
        letter = is_letter(byte)
        w0 = word[:a]
        pword[:a] = np.where(~letter & (w0 != 0), w0, pword[:a])
        word[:a] = np.where(letter, ((w0 + (ub | np.uint64(32))) * P4) & M32, np.uint64(0))
        hist[:a] = (hist[:a] << np.uint64(8)) | ub
        if m:
            _match_step(model, hist[:a], ptr[:a], mlen[:a], pos, byte, valid, expect & 255, done, t + 1 >= m,
                        mmask, mshift, n)
        if progress is not None:
            progress(a)


def _match_step(model: CMModel, hist, ptr, mlen, pos, byte, valid, expect, done, eligible: bool,
                mmask, mshift, n: int) -> None:
    """After a byte: follow a match that predicted it, else look the last `match` bytes up; then
    record this position (a slot written by several streams keeps the highest stream index)."""
    nxt = np.minimum(ptr + 1, n)
    ok = valid & (expect == byte) & done[nxt]
    mlen[:] = np.where(ok, mlen + 1, 0)
    ptr[:] = np.where(ok, nxt, -1)
    if not eligible:
        return
    h = (((hist & mmask) + MATCH_KEY) * P1 >> mshift).astype(np.int64)
    cand = model.mt[h]
    found = (mlen == 0) & (cand >= 0) & done[np.clip(cand, 0, n)]
    ptr[:] = np.where(found, cand, ptr)
    mlen[:] = np.where(found, 1, mlen)
    u, last = np.unique(h[::-1], return_index=True)
    model.mt[u] = (pos + 1)[::-1][last]
