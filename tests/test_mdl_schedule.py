"""nncodec.mdl (session 6): iterate averaging (`train.average`) and geometric prequential blocks:
exact round trips, older files (no `average` key) still decode, typed errors for bad values."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nncodec import mdl
from nncodec.container.reader import Container
from nncodec.errors import CorruptFileError, FormatError
from nncodec.mdl.kinds import SideInfo
from nncodec.mdl.schedule import check_blocks, doubling_blocks, geometric_blocks
from nncodec.mdl.train import TrainConfig

PP = {"arch": "patchpca", "shape": [8, 8], "kernel": 3, "filters": 3, "pool": 2, "hidden": [6], "classes": 4}
MIX = {"arch": "mix", "members": [PP, {**PP, "hidden": [4]}], "temps": ["1"], "share": "1"}


def _idx(arr: np.ndarray) -> bytes:
    a = np.ascontiguousarray(arr, dtype=np.uint8)
    return bytes([0, 0, 8, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape) + a.tobytes()


def _data(n: int = 100) -> tuple[bytes, SideInfo]:
    rng = np.random.default_rng(9)
    labels = rng.integers(0, 4, n)
    imgs = np.clip(rng.integers(0, 90, (n, 8, 8)) + 50 * labels[:, None, None], 0, 255).astype(np.uint8)
    return _idx(labels), SideInfo.from_idx_bytes(_idx(imgs))


def _settings(average: float, ratio: float = 2 ** 0.5, spec: dict = MIX) -> mdl.EncodeSettings:
    cfg = TrainConfig(lr=3e-3, epochs=2, min_steps=5, batch=8, weight_decay=1e-2, average=average)
    return mdl.EncodeSettings(kind="labels", prequential=True, spec=spec, train=cfg, first_block=8, block_ratio=ratio)


@pytest.mark.parametrize("average", [0.0, 0.5, 1.0])
def test_averaged_prequential_codes_decode_exactly(average: float) -> None:
    labels, side = _data()
    out, report = mdl.encode(labels, _settings(average), side)
    assert mdl.decode(out, side) == labels
    with Container(out) as c:
        member = c.header["dataset"]
    assert member["blocks"] == geometric_blocks(100, 8, 2 ** 0.5)
    assert ("average" in member["train"]) == (average > 0)  # written only when used: older files unchanged


def test_averaging_changes_the_code_and_two_part_averaging_decodes() -> None:
    labels, side = _data()
    plain, _ = mdl.encode(labels, _settings(0.0), side)
    averaged, _ = mdl.encode(labels, _settings(0.5), side)
    assert plain != averaged
    two = mdl.EncodeSettings(kind="labels", spec=PP, train=TrainConfig(lr=3e-3, epochs=3, min_steps=5, batch=8,
                                                                        average=0.5))
    out, _ = mdl.encode(labels, two, side, levels=("lossless",))
    assert mdl.decode(out, side) == labels


def test_a_file_without_average_reads_as_before() -> None:
    cfg = TrainConfig(lr=1e-3)
    obj = cfg.to_json()
    assert "average" not in obj and TrainConfig.from_json(obj) == cfg
    assert TrainConfig.from_json({**obj, "average": "0.25"}).average == 0.25


@pytest.mark.parametrize("value", ["1.5", "-0.1", "nan", "x"])
def test_bad_average_is_a_format_error(value: str) -> None:
    with pytest.raises(FormatError):
        TrainConfig.from_json({**TrainConfig().to_json(), "average": value})
    with pytest.raises(FormatError):
        TrainConfig.from_json({**TrainConfig().to_json(), "averages": "0.5"})


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10**6), st.integers(1, 5000), st.floats(1.05, 16.0))
def test_geometric_blocks_are_valid_block_lists(n: int, first: int, ratio: float) -> None:
    try:
        ends = geometric_blocks(n, first, ratio)
    except FormatError as e:
        assert "at most" in str(e)
        return
    assert check_blocks(ends, n) == ends


def test_ratio_two_is_the_doubling_schedule() -> None:
    assert doubling_blocks(60000, 64) == [64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 60000]
    assert geometric_blocks(10000, 32, 2 ** 0.5)[:6] == [32, 45, 64, 91, 128, 181]
    with pytest.raises(FormatError):
        geometric_blocks(100, 8, 1.0)


def test_a_tampered_average_changes_the_replayed_training_and_is_caught() -> None:
    labels, side = _data()
    out, _ = mdl.encode(labels, _settings(0.5), side)
    with Container(out) as c:
        header = json.loads(json.dumps(c.header))
    header["dataset"]["train"]["average"] = "0.25"
    from nncodec.container.writer import assemble

    payload = Container(out).read_section(0)
    bad = assemble({"tensors": {}, "dataset": header["dataset"]}, [bytes(payload)], kinds={0: "dataset"})
    with pytest.raises(CorruptFileError):
        mdl.decode(bad, side)
