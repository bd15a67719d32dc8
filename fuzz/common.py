"""Shared set-up of the fuzz harnesses: tight limits, the checksum modes, and the rule for what
counts as a finding.

A finding is any exception that is not an `NNCodecError`, a hang (libFuzzer -timeout), or one
input that costs more than `CPU_CAP_S` of CPU time or grows the peak RSS by more than `RSS_CAP`
(measured per input by `Budget`: the kernel's peak-RSS counter is reset before each input).

Checksum modes, chosen per input by its last byte, so that one corpus serves all three:
- `checked`: the file as it is; mutations mostly stop at a CRC (which is then what is fuzzed);
- `skipped`: the reader ignores CRCs (libpng's fuzzers do the same);
- `fixed`: every CRC (preamble, header, each section) is recomputed after the mutation, so the
  mutated bytes reach every codec's decoder through the real, checked read path.
"""

from __future__ import annotations

import dataclasses
import json
import time
import zlib
from pathlib import Path

import nncodec

# Small enough that a decompression bomb cannot get past them inside the memory cap.
FUZZ_LIMITS = nncodec.Limits(
    max_header_bytes=1 << 20,
    max_tensors=1024,
    max_sections=4096,
    max_ndim=8,
    max_elements_per_tensor=1 << 22,
    max_total_decoded_bytes=1 << 26,
    max_metadata_bytes=1 << 16,
    max_json_depth=16,
    max_alphabet=1 << 16,
)

# Dataset files (fuzz_dataset.py): decoding replays training and codes n symbols, so the work per
# coded byte and the symbol count are kept small enough for one input to stay well inside CPU_CAP_S.
DATASET_LIMITS = dataclasses.replace(
    FUZZ_LIMITS,
    max_total_decoded_bytes=1 << 17,  # at most 16,384 symbols
    max_dataset_model_parameters=1 << 16,
    max_dataset_cm_bytes=1 << 26,
    max_dataset_work_per_byte=1 << 25,  # every vector needs at most ~2e7 per coded byte
)

CPU_CAP_S = 10.0
RSS_CAP = 1 << 30
MODES = ("checked", "skipped", "fixed", "fixed")


def skip_checksums(enabled: bool) -> None:
    """Let mutations reach the parsers behind the CRCs (libpng's fuzzers do the same)."""
    from nncodec.container import reader

    reader._FUZZING_SKIP_CHECKSUMS = enabled


def prepare(data: bytes) -> bytes:
    """Set the checksum mode from the input's last byte; returns the bytes to decode."""
    mode = MODES[data[-1] % len(MODES)] if data else "checked"
    skip_checksums(mode == "skipped")
    return fix_checksums(data) if mode == "fixed" else data


def fix_checksums(data: bytes) -> bytes:
    """`data` with every CRC recomputed: the section table's CRCs (when the header parses), the
    header CRC, the preamble's file length and CRC. Layout and everything else stay as mutated."""
    from nncodec.container.format import HEADER_INDEXED, MAGIC, PREAMBLE, PREAMBLE_SIZE, Preamble, align_up

    if len(data) < PREAMBLE_SIZE or data[:8] != MAGIC:
        return data
    _, major, minor, encoding, reserved, h_len, _, _, _ = PREAMBLE.unpack(data[:PREAMBLE_SIZE])
    stored = data[PREAMBLE_SIZE:PREAMBLE_SIZE + h_len]
    rest = data[PREAMBLE_SIZE + len(stored):]
    if encoding & HEADER_INDEXED:
        plain = _plain(stored, encoding)
        header = _indexed_top(plain) if plain is not None else None
    else:
        header = _header(stored, encoding)
    if isinstance(header, dict):
        align = header.get("align", 1)
        align = align if isinstance(align, int) and 1 <= align <= 1 << 16 and not align & (align - 1) else 1
        old_gap = align_up(PREAMBLE_SIZE + len(stored), align) - PREAMBLE_SIZE - len(stored)
        body = rest[old_gap:]

        def crcs(lengths):  # offsets in body, which starts aligned: sections are aligned to file offsets
            start = 0
            for length in lengths:
                yield zlib.crc32(body[start:start + length])
                start = align_up(start + min(length, len(body)), align)

        if encoding & HEADER_INDEXED:
            text = _fix_indexed(plain, crcs)
        else:
            table = header.get("sections")
            if isinstance(table, list):  # the well-formed entries up to the first that is not
                good = []
                for e in table:
                    if not (isinstance(e, list) and len(e) >= 2 and isinstance(e[0], int) and e[0] >= 0):
                        break
                    good.append(e)
                for entry, crc in zip(good, crcs([e[0] for e in good]), strict=True):
                    entry[1] = crc
            text = json.dumps(header, separators=(",", ":")).encode()  # its length may change: relayout
        stored = _compress(text, encoding)
        rest = b"\0" * (align_up(PREAMBLE_SIZE + len(stored), align) - PREAMBLE_SIZE - len(stored)) + body
    length = PREAMBLE_SIZE + len(stored) + len(rest)
    pre = Preamble(major, minor, encoding, len(stored), length, zlib.crc32(stored), reserved[:3].ljust(3, b"\0"))
    return pre.pack() + stored + rest


def _plain(stored: bytes, encoding: int) -> bytes | None:
    """The header text under `encoding` (bit 0: a zstd frame; bit 2: against header dictionary 1), or
    None when it does not decompress. Output is capped, as the reader caps it."""
    import zstandard

    if not encoding & 1:
        return stored
    try:
        return _dctx(encoding).decompressobj().decompress(stored[:1 << 20])[:1 << 22]
    except zstandard.ZstdError:
        return None


def _dctx(encoding: int):
    import zstandard

    if encoding & 4:
        from nncodec.container.header_dict import _dict

        return zstandard.ZstdDecompressor(dict_data=_dict())
    return zstandard.ZstdDecompressor()


def _compress(text: bytes, encoding: int) -> bytes:
    """`text` stored as `encoding` stores a header: plain, a zstd frame, or one against dictionary 1."""
    import zstandard

    if not encoding & 1:
        return text
    if encoding & 4:
        from nncodec.container import header_dict

        return header_dict.compress(text)
    return zstandard.ZstdCompressor(level=1, write_content_size=True).compress(text)


def _indexed_top(plain: bytes) -> dict | None:
    """The JSON object of an indexed header (§4.5), when its counts and JSON text parse."""
    import struct

    if len(plain) < 40:
        return None
    n, m, j, _, _ = struct.unpack_from("<5Q", plain, 0)
    at = 40 + 12 * n + 16 * m
    if n > 1 << 16 or at + j > len(plain):
        return None
    try:
        top = json.loads(plain[at:at + j])
    except (ValueError, RecursionError):
        return None
    return top if isinstance(top, dict) else {}


def _fix_indexed(plain: bytes, crcs) -> bytes:
    """The indexed header with its section CRCs replaced (its length never changes)."""
    import struct

    n = struct.unpack_from("<Q", plain, 0)[0]
    out = bytearray(plain)
    lengths = struct.unpack_from(f"<{n}Q", plain, 40)
    for i, crc in enumerate(crcs(lengths)):
        struct.pack_into("<I", out, 40 + 8 * n + 4 * i, crc)
    return bytes(out)


def _header(stored: bytes, encoding: int) -> object:
    plain = _plain(stored, encoding)
    if plain is None:
        return None
    try:
        return json.loads(plain)
    except (ValueError, RecursionError):
        return None


def side_inputs() -> dict:
    """The side inputs of the dataset vectors (labels given images), by the sha256 a header names."""
    from nncodec.mdl.kinds import SideInfo

    folder = Path(__file__).resolve().parent.parent / "spec" / "vectors" / "dataset"
    sides = (SideInfo.from_idx_bytes(f.read_bytes()) for f in sorted(folder.glob("*.side.idx")))
    return {s.sha256: s for s in sides}


class ResourceFinding(Exception):
    """One input cost more CPU time or memory than the caps allow."""


class Budget:
    """Per-input CPU time and peak-RSS growth (Linux: /proc/self/clear_refs resets the peak)."""

    def __enter__(self) -> Budget:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.rss0 = _status_kb("VmRSS") * 1024
        except OSError:
            self.rss0 = None
        self.cpu0 = time.process_time()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        cpu = time.process_time() - self.cpu0
        grown = _status_kb("VmHWM") * 1024 - self.rss0 if self.rss0 is not None else 0
        if cpu > CPU_CAP_S or grown > RSS_CAP:
            raise ResourceFinding(f"one input took {cpu:.1f} s of CPU and grew the peak RSS by {grown >> 20} MiB "
                                  f"(caps {CPU_CAP_S} s, {RSS_CAP >> 20} MiB)")


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def guarded(run_one):
    """`run_one(data)` with NNCodecError allowed and the resource caps enforced."""

    def test_one_input(data: bytes) -> None:
        with Budget():
            try:
                run_one(data)
            except nncodec.NNCodecError:
                pass

    return test_one_input


LIBFUZZER_DEFAULTS = ["-rss_limit_mb=3072", "-timeout=30"]


def decode_everything(data: bytes) -> None:
    """Open, account, decode every tensor as numpy, and verify — the whole load_file path."""
    with nncodec.open(data, framework="np", limits=FUZZ_LIMITS) as f:
        f.info()
        f.metadata()
        for name in f.keys():
            f.get_tensor(name)


def run(test_one_input) -> None:
    """Start libFuzzer on `test_one_input` with our defaults, unless the command line sets them."""
    import sys

    import atheris
    from atheris_cmp import untrace_array_comparisons

    def one_input(data: bytes) -> None:
        untrace_array_comparisons()  # atheris.Fuzz() installs its own hook: wrap it (once) from inside
        test_one_input(data)

    given = " ".join(sys.argv)
    atheris.Setup(sys.argv + [a for a in LIBFUZZER_DEFAULTS if a.split("=")[0] not in given], one_input)
    atheris.Fuzz()


