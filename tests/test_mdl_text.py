"""The `cm` byte model (context mixing, FORMAT.md §21.7): prequential files decode back exactly, in
this process and in a fresh one; two encodes give identical bytes; malformed specs are refused with
typed errors before anything is allocated; the squash/stretch tables are what the spec says."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nncodec import mdl
from nncodec.errors import BadArgumentError, FormatError, LimitExceededError, NNCodecError
from nncodec.limits import Limits
from nncodec.mdl import cm

SMALL = {"arch": "cm", "orders": [0, 1, 2, 4], "words": 2, "match": 3, "match_bits": 10, "table_bits": 10,
         "limit": 60, "lr": 8, "apm": 1, "mixer": 1}
TEXT = (b"In the beginning God created the heaven and the earth. And the earth was without form, and void; "
        b"and darkness was upon the face of the deep. " * 12)


def _settings(spec: dict = SMALL, streams: int = 3) -> mdl.EncodeSettings:
    return mdl.EncodeSettings(kind="bytes", prequential=True, spec=dict(spec), streams=streams)


@pytest.fixture(scope="module")
def coded() -> bytes:
    return mdl.encode(TEXT, _settings())[0]


@settings(max_examples=25, deadline=None)
@given(st.binary(max_size=300), st.integers(1, 9), st.sampled_from([0, 1]))
def test_round_trip_any_bytes(data: bytes, streams: int, apm: int) -> None:
    out, report = mdl.encode(data, _settings({**SMALL, "apm": apm}, streams))
    assert report.code == "prequential" and report.file_bytes == len(out)
    assert mdl.decode(out) == data


def test_round_trip_without_match_or_words_and_learns(coded: bytes) -> None:
    spec = {**SMALL, "words": 0, "match": 0, "apm": 0}
    out = mdl.encode(TEXT, _settings(spec))[0]
    assert mdl.decode(out) == TEXT
    assert mdl.decode(coded) == TEXT
    report = mdl.encode(TEXT, _settings())[1]
    assert report.data_bytes < len(TEXT) / 4  # 12 repeats: the online model learns the text (< 2 bits/byte)


def test_two_encodes_give_identical_bytes(coded: bytes) -> None:
    assert mdl.encode(TEXT, _settings())[0] == coded


def test_fresh_process_decodes_the_cli_file(tmp_path) -> None:
    """`nncodec mdl encode --arch cm` (the default spec) writes the file; a new process decodes it."""
    from click.testing import CliRunner
    from nncodec_cli.main import main

    src, nnc, out = tmp_path / "book.txt", tmp_path / "book.nnc", tmp_path / "book.out"
    src.write_bytes(TEXT)
    result = CliRunner().invoke(main, ["mdl", "encode", str(src), "-o", str(nnc), "--prequential", "--arch", "cm"])
    assert result.exit_code == 0, result.output
    script = f"from nncodec_cli.main import main\nmain(['mdl', 'decode', {str(nnc)!r}, '-o', {str(out)!r}], standalone_mode=False)\n"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == TEXT


@pytest.mark.parametrize(("change", "error"), [
    ({"orders": [2, 1]}, FormatError),
    ({"orders": [9]}, FormatError),
    ({"orders": []}, FormatError),
    ({"orders": [True]}, FormatError),
    ({"table_bits": 25}, FormatError),
    ({"table_bits": "10"}, FormatError),
    ({"match": 1}, FormatError),
    ({"limit": 0}, FormatError),
    ({"lr": 2000}, FormatError),
    ({"apm": 2}, FormatError),
    ({"extra": 1}, FormatError),
])
def test_malformed_specs_are_refused(change: dict, error: type) -> None:
    with pytest.raises(error):
        mdl.encode(TEXT[:50], _settings({**SMALL, **change}))


def test_malformed_spec_in_a_file_is_refused(coded: bytes) -> None:
    from test_mdl import _rebuild

    for spec, error in [({**SMALL, "words": 3}, FormatError), ({**SMALL, "arch": "cm2"}, FormatError)]:
        bad = _rebuild(coded, lambda b, s, k, spec=spec: b["dataset"].update(model=spec))
        with pytest.raises(error):
            mdl.decode(bad)
    bad = _rebuild(coded, lambda b, s, k: b["dataset"].update(blocks=[10, len(TEXT)]))
    with pytest.raises(FormatError):  # a cm code is one block
        mdl.decode(bad)


def test_huge_tables_are_refused_before_allocation(coded: bytes, monkeypatch) -> None:
    from test_mdl import _rebuild

    huge = {**SMALL, "orders": [0, 1, 2, 3, 4, 5, 6, 7, 8], "words": 2, "table_bits": 24}  # 1.6 GiB < 2 GiB
    bad = _rebuild(coded, lambda b, s, k: b["dataset"].update(model=huge))
    monkeypatch.setattr(cm.np, "full", lambda *a, **k: pytest.fail("allocated before the check"))
    with pytest.raises(LimitExceededError, match="max_dataset_cm_bytes"):
        mdl.decode(bad, limits=Limits(max_dataset_cm_bytes=2**30))
    with pytest.raises(LimitExceededError, match="tables of a cm model"):  # the memory cap, also before allocation
        mdl.decode(coded, limits=Limits(max_decode_memory_bytes=100_000))


def test_tables_out_of_proportion_to_the_data_are_refused(coded: bytes, monkeypatch) -> None:
    """A short text may not ask for more than max(2^26, 4096 per byte) of tables (§21.7), in either direction."""
    from test_mdl import _rebuild

    big = {**SMALL, "table_bits": 22}  # 6 tables of 2^22 slots: 201 MB for 1,716 bytes of text
    assert cm.cm_bytes(cm.check_cm_spec(big)) > max(2**26, 4096 * len(TEXT))
    bad = _rebuild(coded, lambda b, s, k: b["dataset"].update(model=big))
    monkeypatch.setattr(cm.np, "full", lambda *a, **k: pytest.fail("allocated before the check"))
    with pytest.raises(LimitExceededError, match="4096 per byte"):
        mdl.decode(bad)
    with pytest.raises(LimitExceededError, match="4096 per byte"):
        mdl.encode(TEXT, _settings(big))
    assert cm.cm_bytes(cm.check_cm_spec(cm.default_cm_spec(2**19))) <= 4096 * 2**19  # the default always fits


def test_a_length_the_payload_cannot_hold_is_refused(coded: bytes) -> None:
    """Every cm byte costs more than 2^-9 bits, so the payload bounds n ~128 times tighter than the generic rule."""
    from test_mdl import _rebuild

    from nncodec.errors import CorruptFileError

    payload = len(coded)  # more than the data section alone
    n = 64 + (8 * payload + 64) * 512 + 1
    assert n < (8 * payload + 64) * (1 << 24) // 255  # the generic bound would let it through
    bad = _rebuild(coded, lambda b, s, k: b["dataset"].update(n=n, blocks=[n]))
    with pytest.raises(CorruptFileError, match="hold at most"):
        mdl.decode(bad)


def test_cm_is_prequential_only_and_bytes_only() -> None:
    with pytest.raises(BadArgumentError):
        mdl.encode(TEXT, mdl.EncodeSettings(kind="bytes", spec=dict(SMALL)))


def test_env_checks_constriction_only(coded: bytes) -> None:
    """Integer arithmetic: torch, numpy or platform may differ; the constriction version may not."""
    from test_mdl import _rebuild

    other = _rebuild(coded, lambda b, s, k: b["dataset"]["env"].update(torch="0.0", numpy="0.0", platform="x"))
    assert mdl.decode(other) == TEXT
    bad = _rebuild(coded, lambda b, s, k: b["dataset"]["env"].update(constriction="0.0"))
    with pytest.raises(mdl.EnvironmentMismatchError):
        mdl.decode(bad)
    assert issubclass(mdl.EnvironmentMismatchError, NNCodecError)


def test_squash_and_stretch_match_the_spec() -> None:
    assert cm.squash(0) == 2047 and cm.squash(-2047) == 1 and cm.squash(2047) == 4094
    assert cm.squash(5000) == cm.squash(2047) and cm.squash(-5000) == cm.squash(-2047)
    d = np.arange(-2047, 2048)
    sq = cm.SQUASH[d + 2047]
    assert np.all(np.diff(sq) >= 0)
    for p in (0, 1, 2, 100, 2047, 4000, 4094, 4095):  # the smallest d with squash(d) >= p, else 2047
        hit = d[sq >= p]
        assert cm.STRETCH[p] == (hit[0] if hit.size else 2047)


def test_counter_merge_rule_is_order_free() -> None:
    m = cm.CMModel(SMALL)
    t = np.full(4, cm.COUNTER0, dtype=np.int64)
    m.update_counters(t, np.array([1, 1, 1, 2]), np.array([1, 0, 1, 1]))
    t2 = np.full(4, cm.COUNTER0, dtype=np.int64)
    m.update_counters(t2, np.array([2, 1, 1, 1]), np.array([1, 1, 0, 1]))
    assert t.tolist() == t2.tolist()
    assert (t & 0xFF).tolist() == [0, 3, 1, 0] and (t >> 24).tolist() == [0] * 4  # scratch bits cleared
    # k = 3 hits, 2 ones, from p = 32768, n = 0: p += floor(2 (2 * 65536 - 3 * 32768) / 7)
    assert t[1] >> 8 == 32768 + (2 * (2 * 65536 - 3 * 32768)) // 7
    assert t[2] >> 8 == 32768 + (2 * (65536 - 32768)) // 3


def test_spec_json_is_plain_data() -> None:
    assert json.loads(json.dumps(cm.DEFAULT_CM_SPEC)) == cm.DEFAULT_CM_SPEC
    cm.check_cm_spec(cm.DEFAULT_CM_SPEC)
    assert cm.default_cm_spec(969_448) == cm.DEFAULT_CM_SPEC  # the benchmark text gets the tuned tables
    assert cm.default_cm_spec(100)["table_bits"] == 12 and cm.default_cm_spec(10**9)["table_bits"] == 24
