"""Bitwise context mixing (`cm`, spec/FORMAT.md §21.7): a prequential byte model trained online.

Why this model: a character LSTM cannot be trained enough on a 2-core CPU to beat xz on 1 MB of
text; a context-mixing model (PAQ/lpaq family) learns from every bit as soon as it is coded, at a
cost of a few numpy operations per bit. It is the prequential code of Blier & Ollivier with a tiny
network trained online: each byte is 8 binary decisions (most significant bit first); for each
context (orders 0-8, the current word, optionally the last two words) a hashed table of adaptive
bit counters gives a probability; a match model predicts the bit that followed the last occurrence
of the current context; one logistic mixer (weights chosen by the partial byte, optionally also
by the match state) combines their
stretched probabilities and learns by online gradient descent; an optional APM refines the result.

Everything is integer arithmetic (numpy int64/uint64, wrap-around multiplication), so encoder and
decoder compute bit-identical probabilities on any platform; the only float step is the division
p / 4096 handed to constriction (exact in float64).

Speed comes from lock-step streams: the data is cut into `streams` consecutive pieces (§21.3) that
are coded side by side, one bit of every stream per step, each step a handful of vectorised numpy
operations. The model (tables, mixer, APM) is shared by all streams; only the context (the previous
bytes, the word, the match pointer) is per stream. Within a step every stream reads the state left
by the previous step; then the updates are merged by a rule that does not depend on the order of
the streams (§21.7: counters hit k times in a step take one merged update; mixer and APM deltas are
summed; a match-table slot written by several streams keeps the highest stream index).
"""

from __future__ import annotations

import numpy as np

from ..errors import FormatError, LimitExceededError
from ..limits import DEFAULT_LIMITS, Limits

M32 = np.uint64(0xFFFFFFFF)
P0, P1 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xD6E8FEB86659FD93)  # context hash (64-bit)
P2, P3 = np.uint64(0x2545F491), np.uint64(0x9E3779B1)  # slot hash (32-bit)
P4 = np.uint64(0x01000193)  # word hash (FNV prime)
SQUASH_POINTS = (1, 2, 3, 6, 10, 16, 27, 45, 73, 120, 194, 310, 488, 747, 1101, 1546, 2047, 2549, 2994,
                 3348, 3607, 3785, 3901, 3975, 4022, 4050, 4068, 4079, 4085, 4089, 4092, 4093, 4094)
MAX_ORDER = 8
MAX_TABLE_BITS = 24
MAX_MATCH_BITS = 24
WORD_TAG, WORD2_TAG = 9, 10
MATCH_CTX = 64  # match counter contexts: 0 = no match, else 2 * min(len, 31) + expected bit
APM_CELLS = 33
COUNTER0 = 32768 << 8  # p = 1/2, n = 0


def squash(d: int) -> int:
    """12-bit probability of a stretched value d (interpolated between the 33 points, FORMAT.md §21.7)."""
    d = max(-2047, min(2047, d))
    w, i = d & 127, (d >> 7) + 16
    return (SQUASH_POINTS[i] * (128 - w) + SQUASH_POINTS[i + 1] * w + 64) >> 7


SQUASH = np.array([squash(d) for d in range(-2047, 2048)], dtype=np.int64)  # index d + 2047


def _stretch_table() -> np.ndarray:
    """stretch(p) for p in 0..4095: the smallest d with squash(d) >= p (2047 if none)."""
    out = np.full(4096, 2047, dtype=np.int64)
    pi = 0
    for d in range(-2047, 2048):
        v = squash(d)
        out[pi:v + 1] = d
        pi = max(pi, v + 1)
    return out


STRETCH = _stretch_table()
# The default, chosen on the King James New Testament (1 MB; never on the benchmark's Old Testament
# text): each member changed alone from a first guess, then the winners combined (RESULTS.md, issue 12).
DEFAULT_CM_SPEC = {"arch": "cm", "orders": [1, 2, 3, 4, 5, 6, 8], "words": 2, "match": 8, "match_bits": 20,
                   "table_bits": 24, "limit": 255, "lr": 12, "apm": 1, "mixer": 1}


def default_cm_spec(n: int) -> dict:
    """DEFAULT_CM_SPEC with tables sized to the data: 2^(bits(n) + 4) slots per table, 2^12 … 2^24
    (a 1 MB text gets the 2^24 it was tuned with; a small file does not allocate 1.2 GiB)."""
    return {**DEFAULT_CM_SPEC, "table_bits": max(12, min(MAX_TABLE_BITS, int(n).bit_length() + 4))}


SPEC_KEYS = {"arch", "orders", "words", "match", "match_bits", "table_bits", "limit", "lr", "apm", "mixer"}


def check_cm_spec(spec: dict, limits: Limits = DEFAULT_LIMITS) -> dict:
    """Validate a cm spec and return its integers; the table sizes are checked against the limits
    before anything is allocated."""
    if set(spec) != SPEC_KEYS:
        raise FormatError(f"cm spec needs exactly {sorted(SPEC_KEYS)}, got {sorted(spec)}")

    def num(key: str, lo: int, hi: int) -> int:
        v = spec[key]
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise FormatError(f"cm {key} must be an integer in [{lo}, {hi}], got {v!r}")
        return v

    orders = spec["orders"]
    if (not isinstance(orders, list) or not 1 <= len(orders) <= MAX_ORDER + 1
            or any(isinstance(o, bool) or not isinstance(o, int) or not 0 <= o <= MAX_ORDER for o in orders)
            or sorted(set(orders)) != orders):
        raise FormatError(f"cm orders must be a strictly increasing list of integers in [0, {MAX_ORDER}], got {orders!r}")
    out = {"orders": orders, "words": num("words", 0, 2), "match": num("match", 0, MAX_ORDER),
           "match_bits": num("match_bits", 1, MAX_MATCH_BITS), "table_bits": num("table_bits", 4, MAX_TABLE_BITS),
           "limit": num("limit", 1, 255), "lr": num("lr", 1, 1024), "apm": num("apm", 0, 1),
           "mixer": num("mixer", 0, 1)}
    if out["match"] == 1:
        raise FormatError("cm match must be 0 (off) or a minimum length in [2, 8]")
    limits.check("bytes of the cm model's tables (max_dataset_cm_bytes)", cm_bytes(out), limits.max_dataset_cm_bytes)
    return out


CM_BASE_BYTES = 2**26  # the tables any cm file may ask for, whatever its length (the APM alone is 17 MB)
CM_BYTES_PER_SYMBOL = 2**12  # beyond that, in proportion to the data: default_cm_spec takes at most 8·11·32 per byte


def check_cm_for_data(spec: dict, n: int, limits: Limits = DEFAULT_LIMITS) -> None:
    """A cm model's tables may take max(CM_BASE_BYTES, CM_BYTES_PER_SYMBOL · n) bytes (FORMAT §21.7): why:
    without it a file of a few hundred bytes that declares a short text could make the decoder allocate and
    fill max_dataset_cm_bytes (2 GiB) of tables; with it the memory follows the declared data, as the
    decoding buffer does (§21.6). Checked in both directions, before anything is allocated."""
    need = cm_bytes(check_cm_spec(spec, limits))
    allowed = max(CM_BASE_BYTES, CM_BYTES_PER_SYMBOL * n)
    if need > allowed:
        raise LimitExceededError(f"the cm model's tables take {need:,} bytes, more than the {allowed:,} its {n:,} "
                                 "bytes of data allow (max(2^26, 4096 per byte), FORMAT §21.7)")


def is_cm(spec: object) -> bool:
    return isinstance(spec, dict) and spec.get("arch") == "cm"


def contexts(cfg: dict) -> int:
    return len(cfg["orders"]) + cfg["words"]


def cm_bytes(cfg: dict) -> int:
    """Memory of the model's tables: 8 bytes per counter slot, per match slot and per APM cell."""
    match = (8 << cfg["match_bits"]) if cfg["match"] else 0
    apm = 8 * 65536 * APM_CELLS if cfg["apm"] else 0
    return 8 * (contexts(cfg) << cfg["table_bits"]) + match + apm


class CMModel:
    """The shared state of a cm model (tables, mixer, APM); per-stream state lives in `code_cm`.

    A counter is one int64: bits 8-23 the probability p of a 1 (16 bits), bits 0-7 its count n;
    bits 24-43 and 44-63 are scratch (hits and ones of the current step, zero between steps), so a
    step's merged update is one np.add.at and one write. A context's counters for the bits of one
    nibble share a bucket of 16 slots (two adjacent cache lines): 2 hashed look-ups per byte."""

    kind = "cm"

    def __init__(self, spec: dict, limits: Limits = DEFAULT_LIMITS) -> None:
        cfg = check_cm_spec(spec, limits)
        self.cfg = cfg
        self.tags = np.array([*cfg["orders"], WORD_TAG, WORD2_TAG][:contexts(cfg)], dtype=np.uint64)
        self.masks = np.array([(1 << (8 * o)) - 1 if o < 8 else (1 << 64) - 1 for o in cfg["orders"]]
                              + [0] * cfg["words"], dtype=np.uint64)
        c, bits = contexts(cfg), cfg["table_bits"]
        self.shift = np.uint64(36 - bits)  # 2^(bits - 4) buckets of 16 slots per context
        self.offsets = (np.arange(c, dtype=np.int64) << bits)[None, :]
        self.t = np.full(c << bits, COUNTER0, dtype=np.int64)
        self.mt_counters = np.full(MATCH_CTX, COUNTER0, dtype=np.int64)
        self.inputs = c + (1 if cfg["match"] else 0) + 1  # + bias
        self.w = np.full((256 * (3 if cfg["mixer"] else 1), self.inputs), (1 << 16) // 4, dtype=np.int64)
        self.mt = np.full(1 << cfg["match_bits"], -1, dtype=np.int64) if cfg["match"] else None
        if cfg["apm"]:
            cells = np.array([16 * squash((j - 16) * 128) for j in range(APM_CELLS)], dtype=np.int64)
            self.apm = np.tile(cells, 65536)
        self.limit = cfg["limit"]

    def update_counters(self, t: np.ndarray, idx: np.ndarray, y: np.ndarray) -> None:
        """Merged update of counters idx (flat) with bits y: a slot hit k times in the step, `ones` of
        them with bit 1, moves once, from the value all k read: p += floor(2 (ones * 65536 - k p) /
        (2 n + 2k + 1)); n = min(n + k, limit). Every duplicate writes the same new value, so the
        order of the writes does not matter."""
        np.add.at(t, idx, (y << 44) + (1 << 24))
        v = t[idx]
        k, ones = (v >> 24) & 0xFFFFF, v >> 44
        p, n = (v >> 8) & 0xFFFF, v & 0xFF
        p = p + np.floor_divide(2 * ((ones << 16) - k * p), 2 * n + 2 * k + 1)
        t[idx] = (p << 8) | np.minimum(n + k, self.limit)


def context_hashes(model: CMModel, hist: np.ndarray, words: np.ndarray, prev_words: np.ndarray) -> np.ndarray:
    """[S, C] 32-bit context hashes at a byte boundary: ((x + tag * P0) * P1 mod 2^64) >> 32, where x is
    the last `order` bytes (little-end first), the word hash, or word + previous word << 32."""
    c = len(model.cfg["orders"])
    x = np.empty((hist.size, contexts(model.cfg)), dtype=np.uint64)
    x[:, :c] = hist[:, None] & model.masks[None, :c]
    if model.cfg["words"] >= 1:
        x[:, c] = words
    if model.cfg["words"] == 2:
        x[:, c + 1] = words ^ (prev_words << np.uint64(32))
    return ((x + model.tags[None, :] * P0) * P1) >> np.uint64(32)


def is_letter(b: np.ndarray) -> np.ndarray:
    low = b | 32
    return (low >= 97) & (low <= 122)
