"""Fuzz the container reader alone: preamble, header JSON, section table, CRCs.

    python fuzz/fuzz_container.py fuzz/corpus/load -dict=fuzz/nnc.dict -max_total_time=3600
"""


import atheris
import numpy  # noqa: F401 - third-party modules are imported uninstrumented first
import torch  # noqa: F401
import zstandard  # noqa: F401

with atheris.instrument_imports(include=["nncodec", "common"]):
    from common import FUZZ_LIMITS, guarded, prepare

    from nncodec.container.reader import Container
    from nncodec.tensorfile import TensorFile


@guarded
def test_one_input(data: bytes) -> None:
    # The last byte picks the checksum mode (common.MODES): checked, skipped, or recomputed.
    with Container(prepare(data), FUZZ_LIMITS) as c:
        for s in c.sections:
            c.read_section(s.index)
        TensorFile(c).byte_report()


if __name__ == "__main__":
    from common import run

    run(test_one_input)
