"""Fuzz `info()` and `components()`: the byte report (which decodes quantized tensors for their
sparsity) and every tensor's decoded components, mostly with checksums recomputed after mutation.

    python fuzz/fuzz_info.py fuzz/work/load fuzz/corpus/load -dict=fuzz/nnc.dict -max_total_time=3600
"""


import atheris
import numpy  # noqa: F401 - third-party modules are imported uninstrumented first
import torch  # noqa: F401
import zstandard  # noqa: F401

with atheris.instrument_imports(include=["nncodec", "common"]):
    from common import FUZZ_LIMITS, guarded, prepare

    import nncodec


@guarded
def test_one_input(data: bytes) -> None:
    with nncodec.open(prepare(data), framework="np", limits=FUZZ_LIMITS) as f:
        f.info()  # raises CorruptFileError itself when its parts do not add up to the file size
        for name in f.keys():
            f.components(name)


if __name__ == "__main__":
    from common import run

    run(test_one_input)
