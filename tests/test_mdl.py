"""nncodec.mdl: data coded under a model decodes back exactly (two-part and prequential, bytes and
labels given inputs), in this process and in a fresh one; the coder proves the stream ended where
the encoder ended; bad files raise typed errors. Tiny models and synthetic data only."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nncodec
from nncodec import mdl
from nncodec.errors import BadArgumentError, CorruptFileError, FormatError, LimitExceededError, UnsupportedVersionError
from nncodec.limits import Limits
from nncodec.mdl import models as mdl_models
from nncodec.mdl.coder import StreamDecoder, StreamEncoder
from nncodec.mdl.kinds import SideInfo

TINY_LSTM = {"arch": "lstm", "alphabet": 256, "emb": 4, "hidden": 8}
FAST = mdl.TrainConfig(epochs=1, min_steps=3, batch=4, seqlen=16)
TEXT = (b"in the beginning was the word, and the word was with the code. " * 20)[:1100]


def _bytes_settings(prequential: bool = False, **kw) -> mdl.EncodeSettings:
    return mdl.EncodeSettings(kind="bytes", prequential=prequential, spec=TINY_LSTM, train=FAST, streams=3,
                              first_block=256, **kw)


def _labels(n: int = 120, seed: int = 0) -> tuple[bytes, bytes, SideInfo]:
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 256, (n, 3, 3), dtype=np.uint8)
    lab = (imgs[:, 0, 0] // 64).astype(np.uint8)
    idx_img = b"\x00\x00\x08\x03" + n.to_bytes(4, "big") + (3).to_bytes(4, "big") * 2 + imgs.tobytes()
    idx_lab = b"\x00\x00\x08\x01" + n.to_bytes(4, "big") + lab.tobytes()
    return idx_lab, idx_img, SideInfo.from_idx_bytes(idx_img)


def _label_settings(prequential: bool) -> mdl.EncodeSettings:
    return mdl.EncodeSettings(kind="labels", prequential=prequential, train=mdl.TrainConfig(epochs=2, min_steps=5, batch=16),
                              spec={"arch": "mlp", "inputs": 9, "hidden": [4], "classes": 4}, first_block=16)


@pytest.fixture(scope="module")
def two_part() -> tuple[bytes, mdl.EncodeReport]:
    return mdl.encode(TEXT, _bytes_settings(), levels=("lossless", "1/8"))


@pytest.fixture(scope="module")
def prequential() -> bytes:
    return mdl.encode(TEXT, _bytes_settings(True))[0]


# ------------------------------------------------------------------------------ coder


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 4), max_size=60), st.integers(0, 2**32 - 1))
def test_coder_round_trip_and_exact_end(symbols: list[int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    probs = rng.random((len(symbols), 5)) + 1e-3
    probs /= probs.sum(1, keepdims=True)
    enc = StreamEncoder()
    enc.encode(np.array(symbols), probs)
    payload = enc.finish()
    dec = StreamDecoder(payload, len(symbols))
    assert dec.decode(probs).tolist() == symbols
    dec.finish()
    # an extra word is never consumed silently
    dec = StreamDecoder(payload + b"\x01\x00\x00\x00", len(symbols))
    dec.decode(probs)
    with pytest.raises(CorruptFileError):
        dec.finish()


def test_decoder_refuses_more_or_fewer_symbols_than_stored() -> None:
    probs = np.full((10, 3), 1 / 3)
    enc = StreamEncoder()
    enc.encode(np.arange(10) % 3, probs)
    dec = StreamDecoder(enc.finish(), 9)
    with pytest.raises(CorruptFileError):
        dec.decode(probs)
    dec = StreamDecoder(enc.finish() if False else StreamEncoder().finish(), 0)
    dec.finish()
    with pytest.raises(CorruptFileError):
        StreamDecoder(b"\x00\x01\x02", 1)


# ------------------------------------------------------------------------------ round trips


def test_two_part_round_trip_and_curve(two_part) -> None:
    out, report = two_part
    assert mdl.decode(out) == TEXT
    assert [r["level"] for r in report.curve] == ["lossless", "1/8"]
    assert report.file_bytes == len(out) == min(r["file_bytes"] for r in report.curve)
    info = nncodec.open(out).info()
    total = (info["preamble_bytes"] + info["header_bytes"] + info["padding_bytes"] + info["dataset_bytes"]
             + sum(t["bytes"] for t in info["tensors"]))
    assert total == info["file_bytes"] == len(out)
    assert info["dataset_bytes"] == report.data_bytes


def test_prequential_round_trip_stores_no_model(prequential) -> None:
    assert mdl.decode(prequential) == TEXT
    with nncodec.open(prequential) as f:
        assert f.keys() == []


def test_same_input_same_bytes(prequential) -> None:
    assert mdl.encode(TEXT, _bytes_settings(True))[0] == prequential


@pytest.mark.parametrize("prequential", [False, True])
def test_labels_given_inputs_round_trip(prequential: bool) -> None:
    labels, _, side = _labels()
    out, _ = mdl.encode(labels, _label_settings(prequential), side, levels=("1/4",))
    assert mdl.decode(out, side) == labels
    other = _labels(seed=1)[2]
    with pytest.raises(BadArgumentError, match="not the ones"):
        mdl.decode(out, other)
    with pytest.raises(BadArgumentError):
        mdl.decode(out)


def test_empty_and_one_byte_data() -> None:
    for data in (b"", b"x"):
        for pre in (False, True):
            out, _ = mdl.encode(data, _bytes_settings(pre), levels=("1/8",))
            assert mdl.decode(out) == data


# ------------------------------------------------------------------------------ CLI, fresh process


def test_cli_encode_then_decode_in_a_fresh_process(tmp_path, two_part, prequential) -> None:
    """`nncodec mdl encode` writes the file; a new process that never saw the encoder decodes it."""
    from click.testing import CliRunner
    from nncodec_cli.main import main

    src = tmp_path / "data.txt"
    src.write_bytes(TEXT[:300])
    nnc = tmp_path / "cli.nnc"
    args = ["mdl", "encode", str(src), "-o", str(nnc), "--arch", json.dumps(TINY_LSTM), "--epochs", "1",
            "--batch", "4", "--seqlen", "16", "--streams", "2", "--levels", "1/8", "--prequential"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    files = {"cli": (nnc, TEXT[:300]), "two": (tmp_path / "two.nnc", TEXT), "pre": (tmp_path / "pre.nnc", TEXT)}
    files["two"][0].write_bytes(two_part[0])
    files["pre"][0].write_bytes(prequential)
    calls = [["mdl", "decode", str(path), "-o", str(tmp_path / f"{name}.out")] for name, (path, _) in files.items()]
    script = ("from nncodec_cli.main import main\n"
              f"for args in {calls!r}:\n    main(args, standalone_mode=False)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for name, (_, data) in files.items():
        assert (tmp_path / f"{name}.out").read_bytes() == data


def test_cli_errors_are_one_line(tmp_path, prequential) -> None:
    from click.testing import CliRunner
    from nncodec_cli.main import main

    bad = tmp_path / "bad.nnc"
    bad.write_bytes(prequential[:-3])
    result = CliRunner().invoke(main, ["mdl", "decode", str(bad), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1 and result.output.startswith("error: ") and len(result.output.splitlines()) == 1


# ------------------------------------------------------------------------------ malformed files


def _rebuild(data: bytes, edit) -> bytes:
    """The file with its dataset member changed by `edit` (checksums recomputed)."""
    from nncodec.container.reader import CONTAINER_KEYS, Container
    from nncodec.container.writer import assemble

    with Container(data) as c:
        body = {k: v for k, v in c.header.items() if k not in CONTAINER_KEYS}
        sections = [bytes(c.read_section(s.index)) for s in c.sections]  # (a view into the file)
        kinds = {s.index: s.kind for s in c.sections if s.kind != "data"}
    edit(body, sections, kinds)
    return assemble(body, sections, kinds=kinds)


@pytest.mark.parametrize("delta", [1, -1, 2**50])
def test_symbol_count_must_match_the_stream(two_part, delta: int) -> None:
    bad = _rebuild(two_part[0], lambda b, s, k: b["dataset"].update(n=b["dataset"]["n"] + delta))
    with pytest.raises(CorruptFileError):
        mdl.decode(bad)


@pytest.mark.parametrize(("edit", "error"), [
    (lambda b, s, k: b["dataset"].update(sha256="0" * 64), CorruptFileError),
    (lambda b, s, k: s.__setitem__(-1, s[-1] + b"\0\0\0\1"), CorruptFileError),
    (lambda b, s, k: s.__setitem__(-1, s[-1][:-4]), CorruptFileError),
    (lambda b, s, k: s.__setitem__(-1, s[-1] + b"\0"), CorruptFileError),
    (lambda b, s, k: b["dataset"].update(code="three-part"), UnsupportedVersionError),
    (lambda b, s, k: b["dataset"].update(kind="images"), UnsupportedVersionError),
    (lambda b, s, k: b["dataset"].update(extra=1), UnsupportedVersionError),
    (lambda b, s, k: b["dataset"].pop("seed"), FormatError),
    (lambda b, s, k: b["dataset"].update(s=5), FormatError),
    (lambda b, s, k: b.pop("dataset"), FormatError),
    (lambda b, s, k: b["dataset"].update(model={"arch": "lstm", "alphabet": 7, "emb": 4, "hidden": 8}), FormatError),
    (lambda b, s, k: b["dataset"].update(model={"arch": "eval"}), FormatError),
    (lambda b, s, k: b["dataset"].update(streams=0), FormatError),
    (lambda b, s, k: b["dataset"].update(blocks=[5, 3]), FormatError),
    (lambda b, s, k: b["dataset"]["train"].update(lr="nan"), FormatError),
    (lambda b, s, k: b["dataset"]["env"].update(torch="0.0"), mdl.EnvironmentMismatchError),
    (lambda b, s, k: k.update({len(s) - 1: "x-other"}), FormatError),
])
def test_malformed_dataset_is_refused(prequential, edit, error) -> None:
    bad = _rebuild(prequential, edit)
    with pytest.raises(error):
        mdl.decode(bad)


@pytest.mark.parametrize("code", ["two-part", "prequential"])
def test_a_file_claiming_a_huge_lstm_is_refused_before_allocation(two_part, prequential, code, monkeypatch) -> None:
    """Every lstm width is allowed alone (<= 1024); together they make 8.9 M parameters, over the limit."""
    huge = {"arch": "lstm", "alphabet": 256, "emb": 1024, "hidden": 1024}
    bad = _rebuild(two_part[0] if code == "two-part" else prequential, lambda b, s, k: b["dataset"].update(model=huge))

    def no_allocation(*args, **kwargs):
        raise AssertionError("the lstm was built before its parameter count was checked")

    monkeypatch.setattr(mdl_models, "ByteLSTM", no_allocation)
    with pytest.raises(LimitExceededError, match="max_dataset_model_parameters"):
        mdl.decode(bad)


@pytest.mark.parametrize("code", ["two-part", "prequential"])
def test_the_reader_s_model_limit_reaches_both_codes(two_part, prequential, code) -> None:
    data = two_part[0] if code == "two-part" else prequential
    with pytest.raises(LimitExceededError, match="max_dataset_model_parameters"):
        mdl.decode(data, limits=Limits(max_dataset_model_parameters=mdl_models.lstm_parameters(256, 4, 8) - 1))
    assert mdl.decode(data, limits=Limits(max_dataset_model_parameters=mdl_models.lstm_parameters(256, 4, 8))) == TEXT


def test_critical_kind_refused_when_unknown_and_section_checksum(prequential) -> None:
    damaged = bytearray(prequential)
    damaged[-1] ^= 1
    with pytest.raises(CorruptFileError):
        mdl.decode(bytes(damaged))
    with pytest.raises(BadArgumentError):
        mdl.decode(nncodec.save({}))


def test_env_override_still_checks_the_result(prequential) -> None:
    bad = _rebuild(prequential, lambda b, s, k: b["dataset"]["env"].update(numpy="0.0"))
    assert mdl.decode(bad, allow_env_mismatch=True) == TEXT


def test_a_file_from_another_cpu_kernel_family_is_refused_by_name(prequential) -> None:
    """An AVX2 and an AVX-512 machine round torch's float kernels differently: the reader says so up front."""
    from nncodec.container.reader import Container
    from nncodec.mdl import env

    with Container(prequential) as c:
        assert c.header["dataset"]["env"]["cpu"] == env.cpu_kernels()
    other = _rebuild(prequential, lambda b, s, k: b["dataset"]["env"].update(cpu="sse41-elsewhere"))
    with pytest.raises(mdl.EnvironmentMismatchError, match="cpu: file 'sse41-elsewhere'"):
        mdl.decode(other)
    assert mdl.decode(other, allow_env_mismatch=True) == TEXT  # same kernels in truth: the checks pass


def test_files_written_before_cpu_was_recorded_are_compared_on_the_rest(prequential, monkeypatch) -> None:
    older = _rebuild(prequential, lambda b, s, k: b["dataset"]["env"].pop("cpu"))
    assert mdl.decode(older) == TEXT
    stale = _rebuild(older, lambda b, s, k: b["dataset"]["env"].update(numpy="0.0"))
    with pytest.raises(mdl.EnvironmentMismatchError, match="numpy"):
        mdl.decode(stale)


def test_variables_that_override_the_kernel_choice_are_part_of_the_cpu_family(monkeypatch) -> None:
    from nncodec.mdl import env

    for name in env.ISA_OVERRIDES:
        monkeypatch.delenv(name, raising=False)
    plain = env.cpu_kernels()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert env.cpu_kernels() == plain + "-ONEDNN_MAX_CPU_ISA=AVX2"


_JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**60, 2**60) | st.text(max_size=8),
                     lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3),
                     max_leaves=6)


@settings(max_examples=25, deadline=None)
@given(key=st.sampled_from(["s", "kind", "code", "n", "alphabet", "sha256", "model", "seed", "env", "streams", "train",
                            "blocks"]), value=_JSON)
def test_any_dataset_member_value_gives_a_typed_error_or_the_data(prequential, key: str, value) -> None:
    bad = _rebuild(prequential, lambda b, s, k: b["dataset"].__setitem__(key, value))
    try:
        assert mdl.decode(bad) == TEXT  # only a value equal in effect to the original may decode
    except nncodec.NNCodecError:
        pass
