"""Fuzz every codec's decoder directly with arbitrary parameters and payloads.

The first bytes choose the component kind, codec, dtype, shape and parameters; the rest is the
payload. Any exception other than an NNCodecError is a finding.

    python fuzz/fuzz_codecs.py fuzz/corpus/codecs -max_total_time=3600
"""

import json

import atheris
import numpy  # noqa: F401 - third-party modules are imported uninstrumented first
import torch  # noqa: F401
import zstandard  # noqa: F401

with atheris.instrument_imports(include=["nncodec", "common"]):
    from common import FUZZ_LIMITS, guarded

    from nncodec import codecs
    from nncodec.codecs.base import DecodeContext
    from nncodec.dtypes import DTYPES

CTX = DecodeContext(FUZZ_LIMITS)
DTYPE_NAMES = sorted(DTYPES)
RAW = ["copy", "zstd", "planes"]
MASK = ["ans", "ans-rows", "ans-classes", "zstd"]
LEVELS = ["ans", "ans-rowclass", "zstd"]
METHODS = ["copy", "zstd", "ans", "pairs", "bogus"]


def _params(fdp: "atheris.FuzzedDataProvider", kind: str, codec: str) -> dict:
    if fdp.ConsumeBool():  # sometimes arbitrary JSON
        try:
            value = json.loads(fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 64)))
        except ValueError:
            value = {}
        return value if isinstance(value, dict) else {"x": value}
    if kind == "raw" and codec == "planes":
        n = fdp.ConsumeIntInRange(0, 9)
        return {"split": fdp.PickValueInList(["float", "bytes", "x"]),
                "streams": [[fdp.PickValueInList(METHODS), fdp.ConsumeIntInRange(0, 1 << 12)] for _ in range(n)]}
    if kind == "levels" and codec == "zstd":
        return {"width": fdp.ConsumeIntInRange(0, 8)}
    return {}


@guarded
def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    kind = fdp.PickValueInList(["raw", "mask", "levels", "quantizer"])
    dt = DTYPES[fdp.PickValueInList(DTYPE_NAMES)]
    shape = tuple(fdp.ConsumeIntInRange(0, 64) for _ in range(fdp.ConsumeIntInRange(0, 3)))
    count = fdp.ConsumeIntInRange(0, 4096)
    codec = fdp.PickValueInList({"raw": RAW, "mask": MASK, "levels": LEVELS, "quantizer": ["f32", "x"]}[kind])
    params = _params(fdp, kind, codec)
    payload = memoryview(fdp.ConsumeBytes(fdp.remaining_bytes()))
    if kind == "raw":
        codecs.raw.decode(codec, params, payload, dt, count, CTX)
    elif kind == "mask":
        codecs.mask.decode(codec, params, payload, shape, CTX)
    elif kind == "levels":
        rows = codecs.levels_ctx.row_counts(shape, None) if codec == "ans-rowclass" else None
        codecs.levels.decode(codec, params, payload, count, CTX, rows)
    else:
        codecs.quantizer.decode(codec, params, payload, count, CTX)


if __name__ == "__main__":
    from common import run

    run(test_one_input)
