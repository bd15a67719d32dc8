"""Fuzz the dataset decoder (FORMAT §21): bytes -> nncodec.mdl.decode, the `nncodec mdl decode` path,
which builds a model from the header, replays its training and arithmetic-decodes the data.

    python fuzz/fuzz_dataset.py fuzz/work/dataset fuzz/corpus/dataset -dict=fuzz/nnc.dict -max_total_time=3600

The labels vectors were coded given side inputs; the harness hands a file the inputs whose sha256
its header names (loaded once from spec/vectors/dataset/*.side.idx). It decodes with the recorded
environment check off (`allow_env_mismatch`), so that mutations reach the models and coders on any
machine; the decoded data is still checked against the recorded sha256.
"""


import atheris
import numpy  # noqa: F401 - third-party modules are imported uninstrumented first
import torch  # noqa: F401
import zstandard  # noqa: F401

with atheris.instrument_imports(include=["nncodec", "common"]):
    from common import DATASET_LIMITS, guarded, prepare, side_inputs

    from nncodec import NNCodecError, mdl
    from nncodec.container.reader import Container

SIDES = side_inputs()


def warm_up() -> None:
    """Decode one seed before fuzzing: the first training step imports torch's optimizer machinery
    (torch._dynamo, seconds of CPU), which must not count against the first fuzzed input's caps.
    The seed was coded on one CPU kernel family (its header's `env`); on another one the float model's
    tables differ and the decoder refuses the stream as damaged (CorruptFileError, FORMAT §21). That is
    the reader's documented answer, not a finding, and the training step has run either way."""
    from pathlib import Path

    seed = Path(__file__).resolve().parent.parent / "spec" / "vectors" / "dataset" / "bytes-prequential.nnc"
    if seed.is_file():
        try:
            mdl.decode(seed.read_bytes(), allow_env_mismatch=True)
        except NNCodecError:
            pass


def named_side(data: bytes):
    """The known side inputs whose sha256 the header's dataset member names, else None."""
    try:
        with Container(data, limits=DATASET_LIMITS) as c:
            member = c.header.get("dataset")
    except NNCodecError:
        return None
    side = member.get("side") if isinstance(member, dict) else None
    sha = side.get("sha256") if isinstance(side, dict) else None
    return SIDES.get(sha) if isinstance(sha, str) else None


@guarded
def test_one_input(data: bytes) -> None:
    data = prepare(data)
    mdl.decode(data, named_side(data), allow_env_mismatch=True, limits=DATASET_LIMITS)


if __name__ == "__main__":
    from common import run

    warm_up()

    run(test_one_input)
