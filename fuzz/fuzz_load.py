"""Fuzz the whole read path: bytes -> open -> info -> every tensor decoded.

    python fuzz/fuzz_load.py fuzz/corpus/load -dict=fuzz/nnc.dict -max_total_time=3600
"""


import atheris
import numpy  # noqa: F401 - third-party modules are imported uninstrumented first
import torch  # noqa: F401
import zstandard  # noqa: F401

with atheris.instrument_imports(include=["nncodec", "common"]):
    from common import decode_everything, guarded, prepare


@guarded
def test_one_input(data: bytes) -> None:
    # The last byte picks the checksum mode (common.MODES): checked, skipped, or recomputed after
    # the mutation, so that mutated payloads reach every codec through the checked read path.
    decode_everything(prepare(data))


if __name__ == "__main__":
    from common import run

    run(test_one_input)
