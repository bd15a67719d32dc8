"""The decoding work of a dataset file is bounded by its coded bytes (FORMAT §21.6, nncodec/mdl/work.py):
a short file that declares days of training is refused before any training, the estimate counts the
training the code really does, and the encoder never writes a file a default decoder would refuse."""

from __future__ import annotations

import time

import numpy as np
import pytest

from nncodec import mdl
from nncodec.errors import LimitExceededError
from nncodec.limits import Limits
from nncodec.mdl import dataset_file, train, work
from nncodec.mdl.kinds import SideInfo
from nncodec.mdl.member import parse
from tests.test_mdl import TEXT, _bytes_settings, _label_settings, _labels, _rebuild


def _member_and_payload(data: bytes):
    from nncodec.container.reader import Container

    with Container(data) as c:
        member = parse(c.header["dataset"], len(c.sections))
        return member, len(c.read_section(member.section))


@pytest.fixture(scope="module")
def text_file() -> bytes:
    return mdl.encode(TEXT, _bytes_settings(True))[0]


@pytest.fixture(scope="module")
def labels_file() -> tuple[bytes, bytes, SideInfo]:
    idx_lab, _, side = _labels(120)
    return mdl.encode(idx_lab, _label_settings(True), side)[0], idx_lab, side


@pytest.mark.parametrize("edit", [
    {"min_steps": str(2**20), "batch": str(2**20)},  # one block's training: 2^40 windows
    {"min_steps": str(2**20)},  # a million steps of 4 windows per block
])
def test_a_short_file_asking_for_days_of_training_is_refused_before_training(text_file, edit, monkeypatch) -> None:
    bad = _rebuild(text_file, lambda b, s, k: b["dataset"]["train"].update(edit))
    assert len(bad) < 2_000

    def no_training(*args, **kwargs):
        raise AssertionError("training started before the work was checked")

    monkeypatch.setattr(train, "_train_steps", no_training)
    started = time.process_time()
    with pytest.raises(LimitExceededError, match="max_dataset_work_per_byte"):
        mdl.decode(bad)
    assert time.process_time() - started < 5


def test_the_limit_holds_exactly_at_the_estimate(text_file) -> None:
    member, payload = _member_and_payload(text_file)
    from nncodec.mdl.models import build

    estimate = work.estimate(member, work.model_costs(build(member.model, member.seed), "bytes", None))
    per_byte = -(-estimate // (payload + work.SLACK_BYTES))
    with pytest.raises(LimitExceededError, match="max_dataset_work_per_byte"):
        mdl.decode(text_file, limits=Limits(max_dataset_work_per_byte=per_byte - 1))
    assert mdl.decode(text_file, limits=Limits(max_dataset_work_per_byte=per_byte)) == TEXT


@pytest.mark.parametrize("kind", ["bytes", "labels"])
def test_the_estimate_counts_every_training_sample(text_file, labels_file, kind, monkeypatch) -> None:
    """Independent count: the targets of every training loss the decoder computes."""
    import torch.nn.functional as F

    data, side = (text_file, None) if kind == "bytes" else (labels_file[0], labels_file[2])
    member, _ = _member_and_payload(data)
    seen = {"targets": 0, "steps": 0}
    real = F.cross_entropy

    def counting(logits, target, *args, **kwargs):  # one call per training step
        seen["targets"] += target.numel()
        seen["steps"] += 1
        return real(logits, target, *args, **kwargs)

    monkeypatch.setattr(train.F, "cross_entropy", counting)
    mdl.decode(data, side)
    assert seen["targets"] > 0
    expected = member.n * (1 + work.SYMBOL_COST) + 3 * seen["targets"] + seen["steps"] * work.STEP_COST
    assert work.estimate(member, [1]) == expected


def test_a_convolution_costs_each_weight_at_every_output_position() -> None:
    from nncodec.mdl.models import build

    spec = {"arch": "cnn", "shape": [8, 8], "channels": [4], "kernel": 3, "hidden": [], "classes": 3}
    model = build(spec, 0)
    params = sum(p.numel() for p in model.parameters())
    cost = work.model_costs(model, "labels", np.zeros((2, 8, 8), np.uint8))[0]
    assert cost >= 4 * 9 * 64 > params  # 4 filters of 3x3 at 8x8 positions


def test_the_encoder_refuses_what_a_default_decoder_would_refuse(labels_file, monkeypatch, tmp_path) -> None:
    _, idx_lab, side = labels_file
    monkeypatch.setattr(dataset_file, "DEFAULT_LIMITS", Limits(max_dataset_work_per_byte=1))
    with pytest.raises(LimitExceededError, match="max_dataset_work_per_byte"):
        mdl.encode(idx_lab, _label_settings(True), side)
    with pytest.raises(LimitExceededError, match="max_dataset_work_per_byte"):
        mdl.encode(idx_lab, _label_settings(False), side)


def test_cli_refuses_in_one_line_and_the_option_raises_the_limit(text_file, tmp_path) -> None:
    from click.testing import CliRunner
    from nncodec_cli.main import main

    bad = tmp_path / "heavy.nnc"
    bad.write_bytes(_rebuild(text_file, lambda b, s, k: b["dataset"]["train"].update(min_steps=str(2**20))))
    out = tmp_path / "out.txt"
    result = CliRunner().invoke(main, ["mdl", "decode", str(bad), "-o", str(out)])
    assert result.exit_code == 1 and result.output.startswith("error: ") and len(result.output.splitlines()) == 1
    assert "max_dataset_work_per_byte" in result.output and not out.exists()
    good = tmp_path / "good.nnc"
    good.write_bytes(text_file)
    assert CliRunner().invoke(main, ["mdl", "decode", str(good), "-o", str(out), "--max-work-per-byte", "1"]).exit_code == 1
    assert not out.exists()
    result = CliRunner().invoke(main, ["mdl", "decode", str(good), "-o", str(out), "--max-work-per-byte", str(2**40)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == TEXT
