"""The dataset fuzz harness's seeds decode under its tight limits, in a few seconds each: a vector too
heavy for `fuzz/common.DATASET_LIMITS` would make every mutated copy of it a refusal (no coverage) or
a resource finding, and CI would stop on the harness instead of on a decoder bug."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from script_modules import load_script

from nncodec import mdl
from nncodec.errors import CorruptFileError
from nncodec.mdl import env

VECTORS = Path(__file__).resolve().parent.parent / "spec" / "vectors" / "dataset"


@pytest.mark.parametrize("path", sorted(VECTORS.glob("*.nnc")), ids=lambda p: p.name)
def test_every_dataset_vector_decodes_under_the_fuzzing_limits(path: Path) -> None:
    common = load_script("fuzz/common.py")
    data = path.read_bytes()
    from nncodec.container.reader import Container

    with Container(data) as c:
        side = (c.header["dataset"].get("side") or {}).get("sha256")
        recorded = c.header["dataset"]["env"]
    started = time.process_time()
    try:
        out = mdl.decode(data, common.side_inputs().get(side), allow_env_mismatch=True, limits=common.DATASET_LIMITS)
        assert len(out) > 0
    except CorruptFileError:  # coded on another CPU kernel family (AVX2 vs AVX-512): the full work, then refused
        assert recorded.get("cpu") != env.cpu_kernels()
    assert time.process_time() - started < common.CPU_CAP_S / 2
