"""An independent decoder of the `cm` model, written from spec/FORMAT.md §21.7 alone: plain Python
integers, one stream and one bit at a time, dicts for the tables (no numpy, nothing from
nncodec.mdl.cm). It must decode the golden vector and fresh encoder output to the data, which
holds the spec text and the vectorised reference to each other."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from nncodec import mdl
from nncodec.container.reader import Container

VECTOR = Path(__file__).resolve().parent.parent / "spec" / "vectors" / "dataset" / "bytes-cm-prequential.nnc"
Q = [1, 2, 3, 6, 10, 16, 27, 45, 73, 120, 194, 310, 488, 747, 1101, 1546, 2047, 2549, 2994, 3348, 3607, 3785, 3901,
     3975, 4022, 4050, 4068, 4079, 4085, 4089, 4092, 4093, 4094]
P0, P1, P2, P3 = 0x9E3779B97F4A7C15, 0xD6E8FEB86659FD93, 0x2545F491, 0x9E3779B1
U64, U32 = (1 << 64) - 1, (1 << 32) - 1


def squash(d: int) -> int:
    d = max(-2047, min(2047, d))
    w, i = d % 128, (d >> 7) + 16
    return (Q[i] * (128 - w) + Q[i + 1] * w + 64) >> 7


STRETCH = [next((d for d in range(-2047, 2048) if squash(d) >= p), 2047) for p in range(4096)]


class Stream:
    def __init__(self, start: int, length: int) -> None:
        self.start, self.length = start, length
        self.h = self.word = self.pword = self.len = 0
        self.ptr = -1


def decode_cm(spec: dict, n: int, streams: int, words: np.ndarray) -> bytes:
    import constriction

    orders, W, M, BM, B, L, R, A, X = (spec[k] for k in ("orders", "words", "match", "match_bits", "table_bits",
                                                            "limit", "lr", "apm", "mixer"))
    C = len(orders) + W
    N = C + (1 if M else 0) + 1
    counters: dict[int, tuple[int, int]] = {}  # absent = (32768, 0)
    match_counters: dict[int, tuple[int, int]] = {}
    weights = [[16384] * N for _ in range(768 if X else 256)]
    match_table: dict[int, int] = {}
    apm: dict[int, int] = {}

    def apm_cell(c: int) -> int:
        return apm.get(c, 16 * squash((c % 33 - 16) * 128))

    dec = constriction.stream.queue.RangeDecoder(words)
    family = constriction.stream.model.Categorical(perfect=False)
    length = max(1, -(-n // streams))
    ss = [Stream(min(n, j * length), min(n, (j + 1) * length) - min(n, j * length)) for j in range(streams)]
    out = bytearray(n)
    done = [False] * (n + 1)
    for t in range(max(s.length for s in ss) if n else 0):
        act = [s for s in ss if s.length > t]
        hashes = []
        for s in act:
            hs = []
            for o in orders:
                hs.append((((s.h & ((1 << (8 * o)) - 1)) + o * P0) * P1 & U64) >> 32)
            if W >= 1:
                hs.append(((s.word + 9 * P0) * P1 & U64) >> 32)
            if W == 2:
                hs.append((((s.word ^ ((s.pword << 32) & U64)) + 10 * P0) * P1 & U64) >> 32)
            hashes.append(hs)
        c0 = [1] * len(act)
        for shift in range(7, -1, -1):
            reads = []  # per stream: (counter indices, mc, inputs, p_m, apm cell, u)
            for si, s in enumerate(act):
                c = c0[si]
                if shift >= 4:
                    g, j = 0, c
                else:
                    g, j = c >> (3 - shift), (c & ((1 << (3 - shift)) - 1)) | (1 << (3 - shift))
                idx = [i * (1 << B) + 16 * (((((hashes[si][i] + g * P2) & U64) * P3 & U64) & U32) >> (36 - B)) + j
                       for i in range(C)]
                x = [STRETCH[counters.get(k, (32768, 0))[0] >> 4] for k in idx]
                mc = None
                if M:
                    e = out[s.ptr] if s.ptr != -1 else 0
                    mc = 2 * min(s.len, 31) + ((e >> shift) & 1) if s.ptr != -1 and (e | 256) >> (shift + 1) == c else 0
                    x.append(STRETCH[match_counters.get(mc, (32768, 0))[0] >> 4])
                x.append(256)
                row = c + 256 * ((0 if mc == 0 else 1 if mc < 32 else 2) if X and M else 0)
                dot = max(-2047, min(2047, sum(a * b for a, b in zip(x, weights[row], strict=True)) >> 16))
                pm = squash(dot)
                p, cell, u = pm, None, 0
                if A:
                    z = STRETCH[pm] + 2048
                    u = z & 127
                    cell = ((s.h & 255) * 256 + c) * 33 + (z >> 7)
                    pa = (apm_cell(cell) * (128 - u) + apm_cell(cell + 1) * u) >> 11
                    p = (pm + 3 * pa) >> 2
                p = max(1, min(4095, p))
                probs = np.array([[(4096 - p) / 4096.0, p / 4096.0]], dtype=np.float64)
                y = int(dec.decode(family, probs)[0])
                out[s.start + t] |= y << shift
                reads.append((idx, mc, x, pm, cell, u, row, y))
            _update(reads, counters, match_counters, weights, apm, apm_cell, L, R)
            c0 = [2 * c + r[-1] for c, r in zip(c0, reads, strict=True)]
        writes = {}
        for s in act:  # every position of this step is done before any stream's match update
            done[s.start + t] = True
        for si, s in enumerate(act):
            v = c0[si] - 256
            if 97 <= (v | 32) <= 122:
                s.word = ((s.word + (v | 32)) * 0x01000193) & U32
            else:
                s.pword = s.word if s.word else s.pword
                s.word = 0
            s.h = ((s.h << 8) & U64) | v
            if not M:
                continue
            e = out[s.ptr] if s.ptr != -1 else -1
            if s.ptr != -1 and e == v and done[s.ptr + 1]:
                s.ptr, s.len = s.ptr + 1, s.len + 1
            else:
                s.ptr, s.len = -1, 0
            if t + 1 >= M:
                gm = ((((s.h & ((1 << (8 * M)) - 1)) + 11 * P0) * P1) & U64) >> (64 - BM)
                q = match_table.get(gm, -1)
                if s.len == 0 and q >= 0 and done[q]:
                    s.ptr, s.len = q, 1
                writes[gm] = s.start + t + 1  # later (higher) streams overwrite: the highest index wins
        match_table.update(writes)
    return bytes(out)


def _update(reads, counters, match_counters, weights, apm, apm_cell, L: int, R: int) -> None:
    """The merged updates of one shift, all computed from the values the streams read."""
    for table, hits in ((counters, [(k, r[-1]) for r in reads for k in r[0]]),
                        (match_counters, [(r[1], r[-1]) for r in reads if r[1] is not None])):
        groups: dict[int, list[int]] = {}
        for k, y in hits:
            groups.setdefault(k, []).append(y)
        for k, ys in groups.items():
            p, n = table.get(k, (32768, 0))
            kk, ones = len(ys), sum(ys)
            table[k] = (p + (2 * (ones * 65536 - kk * p)) // (2 * n + 2 * kk + 1), min(n + kk, L))
    deltas: dict[tuple[int, int], int] = {}
    apm_deltas: dict[int, int] = {}
    for _, _, x, pm, cell, u, c, y in reads:
        err = ((y << 12) - pm) * R
        for k, xk in enumerate(x):
            deltas[(c, k)] = deltas.get((c, k), 0) + ((xk * err) >> 16)
        if cell is not None:
            ca = cell + (u >> 6)
            apm_deltas[ca] = apm_deltas.get(ca, 0) + (((y << 16) - apm_cell(ca)) >> 7)
    for (c, k), d in deltas.items():
        weights[c][k] = max(-(1 << 30), min(1 << 30, weights[c][k] + d))
    for ca, d in apm_deltas.items():
        apm[ca] = max(0, min(65535, apm_cell(ca) + d))


def _header(data: bytes) -> dict:
    with Container(data) as c:
        return c.header["dataset"], bytes(c.read_section(c.header["dataset"]["s"]))


def _check(data: bytes, expected: bytes) -> None:
    member, payload = _header(data)
    words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
    out = decode_cm(member["model"], member["n"], member["streams"], words)
    assert out == expected
    assert hashlib.sha256(out).hexdigest() == member["sha256"]


def test_independent_decoder_reads_the_golden_vector() -> None:
    manifest = json.loads((VECTOR.parent / "manifest.json").read_text(encoding="utf-8"))
    entry = next(e for e in manifest["vectors"] if e["file"] == VECTOR.name)
    data = VECTOR.read_bytes()
    member, payload = _header(data)
    out = decode_cm(member["model"], member["n"], member["streams"], np.frombuffer(payload, dtype="<u4").astype(np.uint32))
    assert hashlib.sha256(out).hexdigest() == entry["data_sha256"] == member["sha256"]


@pytest.mark.parametrize(("streams", "change"), [(1, {}), (4, {"apm": 0, "words": 1}), (5, {"match": 2, "orders": [1, 3]}),
                                                 (2, {"match": 0, "words": 0, "orders": [0, 8]}),
                                                 (3, {"mixer": 0})])
def test_independent_decoder_reads_fresh_encoder_output(streams: int, change: dict) -> None:
    spec = {"arch": "cm", "orders": [0, 1, 2, 4], "words": 2, "match": 3, "match_bits": 6, "table_bits": 6,
            "limit": 20, "lr": 40, "apm": 1, "mixer": 1, **change}  # tiny tables: collisions and shared slots are exercised
    text = b"And God said, Let there be light: and there was light. And God saw the light, that it was good. " * 3
    data = mdl.encode(text, mdl.EncodeSettings(kind="bytes", prequential=True, spec=spec, streams=streams))[0]
    _check(data, text)
