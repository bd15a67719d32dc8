"""Shared set-up of the fuzz harnesses: tight limits and the rule for what counts as a finding.

A finding is any exception that is not an `NNCodecError`, a hang (libFuzzer -timeout), or memory
use beyond the limits below (libFuzzer -rss_limit_mb / -malloc_limit_mb).
"""

from __future__ import annotations

import nncodec

# Small enough that a decompression bomb cannot get past them inside libFuzzer's memory limit.
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

def skip_checksums(enabled: bool) -> None:
    """Let mutations reach the parsers behind the CRCs (libpng's fuzzers do the same)."""
    from nncodec.container import reader

    reader._FUZZING_SKIP_CHECKSUMS = enabled


LIBFUZZER_DEFAULTS = ["-rss_limit_mb=2048", "-malloc_limit_mb=1024", "-timeout=20"]


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

    given = " ".join(sys.argv)
    atheris.Setup(sys.argv + [a for a in LIBFUZZER_DEFAULTS if a.split("=")[0] not in given], test_one_input)
    atheris.Fuzz()
