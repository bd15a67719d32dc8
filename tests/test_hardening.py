"""Issue 4 properties: every mutation of a valid file is rejected, bombs stop at the limits,
nothing on the decode path unpickles or evaluates, and interrupted writes lose nothing."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nncodec
from nncodec.codecs.ans import CountTable
from nncodec.compress import quantize_uniform
from nncodec.container.writer import assemble
from nncodec.dtypes import DTYPES


def _multi_tensor_file() -> bytes:
    rng = np.random.default_rng(3)
    w = (rng.standard_normal((6, 10)) * 0.1).astype(np.float32)
    return nncodec.save({
        "w": w,
        "q": quantize_uniform(w, DTYPES["float32"], 0.05, mask=np.abs(w) > 0.05),
        "i": np.arange(7, dtype=np.int64),
        "b": rng.random(9) > 0.5,
    }, {"arch": "test"})


def _decode_all(data: bytes) -> None:
    with nncodec.open(data, framework="np") as f:
        f.info()
        for name in f.keys():
            f.get_tensor(name)


MULTI = _multi_tensor_file()


def test_the_mutation_base_file_is_valid() -> None:
    _decode_all(MULTI)


def test_every_single_bit_flip_is_rejected() -> None:
    silent = []
    for byte in range(len(MULTI)):
        for bit in range(8):
            mutated = bytearray(MULTI)
            mutated[byte] ^= 1 << bit
            try:
                _decode_all(bytes(mutated))
            except nncodec.NNCodecError:
                continue
            silent.append((byte, bit))
    assert silent == [], f"{len(silent)} bit flips decoded without an error, first: {silent[:5]}"


def test_every_truncation_is_rejected() -> None:
    for n in range(len(MULTI)):
        with pytest.raises(nncodec.NNCodecError):
            _decode_all(MULTI[:n])


def test_appending_any_byte_is_rejected() -> None:
    for extra in (b"\0", b"PK\x05\x06" + b"\0" * 18):
        with pytest.raises(nncodec.CorruptFileError):
            _decode_all(MULTI + extra)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_are_rejected(data: bytes) -> None:
    with pytest.raises(nncodec.NNCodecError):
        _decode_all(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=64), st.integers(min_value=8, max_value=len(MULTI) - 1))
def test_random_overwrites_are_rejected(junk: bytes, at: int) -> None:
    mutated = bytearray(MULTI)
    end = min(len(mutated), at + len(junk))
    mutated[at:end] = junk[: end - at]
    if bytes(mutated) == MULTI:
        return
    with pytest.raises(nncodec.NNCodecError):
        _decode_all(bytes(mutated))


def _constant_bomb(numel: int) -> bytes:
    """A ~100-byte file declaring a float32 tensor of `numel` elements, every stream constant."""
    table = CountTable(0, np.array([1], dtype=np.uint64)).to_bytes()
    streams = [["ans", len(table)]] * 4
    body = {"tensors": {"bomb": {"dtype": "float32", "shape": [numel],
                                 "raw": {"s": 0, "codec": "planes", "p": {"split": "float", "streams": streams}}}}}
    return assemble(body, [table * 4])


def test_a_bomb_within_the_limits_still_decodes_correctly() -> None:
    out = nncodec.load(_constant_bomb(1000), framework="np")["bomb"]
    assert out.shape == (1000,) and not out.any()


def test_a_bomb_over_the_configured_limit_is_refused_before_allocation() -> None:
    limits = nncodec.Limits(max_total_decoded_bytes=2**26)
    with pytest.raises(nncodec.LimitExceededError):
        nncodec.open(_constant_bomb(2**30), limits=limits)


def test_a_bomb_larger_than_the_machine_is_refused() -> None:
    with nncodec.open(_constant_bomb(2**34), framework="np") as f, pytest.raises(nncodec.LimitExceededError):
        f.get_tensor("bomb")


def test_decoding_stays_within_an_address_space_limit(tmp_path: Path) -> None:
    """Under RLIMIT_AS, a bomb that passes the default limits fails with a typed error, not a crash."""
    bomb = tmp_path / "bomb.nnc"
    bomb.write_bytes(_constant_bomb(2**31))  # 8 GiB of float32 from ~100 bytes
    script = textwrap.dedent(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30))
        import nncodec
        try:
            with nncodec.open({str(bomb)!r}, framework="np") as f:
                f.get_tensor("bomb")
        except nncodec.LimitExceededError as exc:
            print("LimitExceededError", exc)
            sys.exit(0)
        print("decoded without error")
        sys.exit(1)
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "LimitExceededError" in run.stdout


def test_no_pickle_or_eval_on_the_decode_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("the decoder must never unpickle or evaluate")

    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    import torch

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(torch.jit, "load", forbidden)
    nncodec.load(MULTI)
    nncodec.load(_multi_tensor_file(), framework="np")


def test_a_failing_encode_leaves_no_file_and_keeps_the_old_one(tmp_path: Path) -> None:
    target = tmp_path / "model.nnc"
    target.write_bytes(b"precious")

    def broken(name: str, value: object) -> None:
        raise nncodec.BadArgumentError("compressor failed")

    with pytest.raises(nncodec.BadArgumentError):
        nncodec.save_file({"a": np.ones(3, np.float32)}, target, compressor=broken)
    assert target.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.nnc"]


def test_disk_full_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "model.nnc"

    def no_space(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError):
        nncodec.save_file({"a": np.ones(3, np.float32)}, target)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_not_replaced_without_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "model.nnc"
    target.write_bytes(b"precious")
    with pytest.raises(FileExistsError):
        nncodec.save_file({"a": np.ones(3, np.float32)}, target, overwrite=False)
    assert target.read_bytes() == b"precious"
    nncodec.save_file({"a": np.ones(3, np.float32)}, target, overwrite=True)
    assert nncodec.load_file(target)["a"].tolist() == [1.0, 1.0, 1.0]


def _slow_fsync_prelude(ready: Path) -> str:
    """Script lines that make fsync announce itself (by creating `ready`) and then stall: a write in progress."""
    return textwrap.dedent(f"""
        import os, pathlib, time
        real_fsync = os.fsync
        def slow_fsync(fd):
            pathlib.Path({str(ready)!r}).write_text("x")
            time.sleep(30)
            real_fsync(fd)
        os.fsync = slow_fsync
    """)


def _signal_when_ready(script: str, ready: Path, sig: int) -> int:
    """Run `script`, send `sig` once it has created `ready` (mid-write), return its exit status."""
    import time

    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        for _ in range(1200):
            if ready.exists() or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert ready.exists(), "the writer never reached fsync"
        proc.send_signal(sig)
        return proc.wait(timeout=60)
    finally:
        proc.kill()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_a_write_leaves_no_partial_output(tmp_path: Path, sig: int) -> None:
    target = tmp_path / "model.nnc"
    target.write_bytes(b"precious")
    ready = tmp_path / "ready"
    script = _slow_fsync_prelude(ready) + textwrap.dedent(f"""
        import signal, sys
        import numpy as np
        import nncodec
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
        # a shell that starts a job in the background without job control makes it ignore SIGINT, and
        # Python keeps an ignored SIGINT: restore the default that raises KeyboardInterrupt
        signal.signal(signal.SIGINT, signal.default_int_handler)
        nncodec.save_file({{"a": np.ones(1000, np.float32)}}, {str(target)!r}, overwrite=True)
    """)
    _signal_when_ready(script, ready, sig)
    assert target.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.nnc", "ready"]


def _zip_bytes() -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("hello.txt", "hi")
    return buf.getvalue()


@pytest.mark.parametrize("payload", [_zip_bytes(), b"%PDF-1.7\n" + b"x" * 50 + b"\n%%EOF\n"])
def test_user_bytes_never_make_a_polyglot_file(payload: bytes) -> None:
    """A uint8 tensor holding a ZIP or PDF must not turn the .nnc file into one."""
    import io
    import zipfile

    data = nncodec.save({"blob": np.frombuffer(payload, dtype=np.uint8)}, prefer="speed")
    assert b"%PDF-" not in data[:1024]
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(io.BytesIO(data))
    assert bytes(nncodec.load(data, framework="np")["blob"]) == payload


def test_a_polyglot_file_is_refused() -> None:
    blob = _zip_bytes()
    table_body = {"tensors": {"blob": {"dtype": "uint8", "shape": [len(blob)], "raw": {"s": 0, "codec": "copy"}}}}
    from nncodec.container import writer

    crafted = writer._layout(table_body, [blob], {}, 1, None)
    import io
    import zipfile

    assert zipfile.ZipFile(io.BytesIO(crafted)).namelist() == ["hello.txt"]
    with pytest.raises(nncodec.FormatError, match="ZIP"):
        nncodec.load(crafted)
    pdf = writer._layout({"tensors": {}, "meta": {"m": "%PDF-1.4"}}, [], {}, 1, 0)
    with pytest.raises(nncodec.FormatError, match="PDF"):
        nncodec.load(pdf)


def _quant_file(steps: np.ndarray) -> bytes:
    """A quantized tensor whose quantizer section holds `steps` verbatim (CRCs correct)."""
    from nncodec.codecs import levels

    lv = levels.encode(np.array([1, -2, 3], dtype=np.int64), nncodec.EncodeOptions())
    part = {"s": 0, "codec": lv.codec, **({"p": lv.params} if lv.params else {})}
    body = {"tensors": {"t": {"dtype": "float32", "shape": [3], "q": {"mode": "uniform"},
                              "levels": part, "quantizer": {"s": 1, "codec": "f32"}}}}
    return assemble(body, [lv.payload, np.asarray(steps, "<f4").tobytes()])


def test_quantizer_files_decode_when_valid() -> None:
    assert nncodec.load(_quant_file(np.array([0.5])), framework="np")["t"].tolist() == [0.5, -1.0, 1.5]


@pytest.mark.parametrize("step", [0.0, -0.5, np.nan, np.inf])
def test_non_positive_or_non_finite_steps_are_refused(step: float) -> None:
    with pytest.raises(nncodec.CorruptFileError):
        nncodec.load(_quant_file(np.array([step])), framework="np")


def test_counts_larger_than_the_payload_could_hold_are_refused() -> None:
    """A count table claiming a million symbols in a 10-byte payload fails before allocating."""
    from nncodec.codecs.binary import write_uvarint

    table = write_uvarint(0) + write_uvarint(1_000_000) + b"\x01" * 8
    body = {"tensors": {"t": {"dtype": "uint8", "shape": [4],
                              "raw": {"s": 0, "codec": "planes", "p": {"split": "bytes", "streams": [["ans", len(table)]]}}}}}
    with pytest.raises(nncodec.NNCodecError):
        nncodec.load(assemble(body, [table]), framework="np")


def _zstd_frame_with_window(data: bytes, window_log: int) -> bytes:
    """A valid zstd frame (RFC 8878) declaring a 2**window_log window: one raw block, no checksum."""
    import struct

    descriptor = 0x80  # 4-byte content size, not single-segment (so a window descriptor follows)
    window = (window_log - 10) << 3
    block_header = (1 | (0 << 1) | (len(data) << 3)).to_bytes(3, "little")  # last block, raw
    return b"\x28\xb5\x2f\xfd" + bytes([descriptor, window]) + struct.pack("<I", len(data)) + block_header + data


def test_zstd_frames_with_huge_windows_are_refused() -> None:
    import zstandard

    from nncodec.codecs import zstd as zstd_codec

    data = bytes(range(256)) * 4
    modest = _zstd_frame_with_window(data, 20)
    assert zstd_codec.decompress(modest, len(data), "test") == data  # the hand-made frame is valid
    huge = _zstd_frame_with_window(data, 31)
    assert zstandard.get_frame_parameters(huge).window_size == 2**31
    with pytest.raises(nncodec.CorruptFileError, match="window"):
        zstd_codec.decompress(huge, len(data), "test")


def test_sigterm_during_cli_encode_leaves_no_partial_output(tmp_path: Path) -> None:
    """`nncodec encode` killed with SIGTERM mid-write: the old output survives, no temp file is left."""
    src = tmp_path / "in.npz"
    np.savez(src, w=np.ones((50, 50), np.float32))
    target = tmp_path / "out.nnc"
    target.write_bytes(b"precious")
    ready = tmp_path / "ready"
    script = _slow_fsync_prelude(ready) + textwrap.dedent(f"""
        import sys
        from nncodec_cli.main import main
        sys.argv = ["nncodec", "encode", {str(src)!r}, "-o", {str(target)!r}, "--force"]
        main()
    """)
    assert _signal_when_ready(script, ready, signal.SIGTERM) != 0
    assert target.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npz", "out.nnc", "ready"]
