"""Fuzz the whole read path: bytes -> open -> info -> every tensor decoded.

    python fuzz/fuzz_load.py fuzz/corpus/load -dict=fuzz/nnc.dict -max_total_time=3600
"""


import atheris
import numpy  # noqa: F401 - third-party modules are imported uninstrumented first
import torch  # noqa: F401
import zstandard  # noqa: F401

with atheris.instrument_imports(include=["nncodec", "common"]):
    from common import decode_everything, skip_checksums

    import nncodec


def test_one_input(data: bytes) -> None:
    # Half the inputs skip the checksums so that mutations reach the header and codec parsers;
    # the other half exercise the checksums themselves.
    skip_checksums(bool(data) and data[-1] & 1 == 1)
    try:
        decode_everything(data)
    except nncodec.NNCodecError:
        pass


if __name__ == "__main__":
    from common import run

    run(test_one_input)
