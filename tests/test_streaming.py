"""Streaming encode and decode (issue 13): the streamed file is byte for byte the in-memory one, the
lazy checkpoint reader gives what the eager one gives, decode writes safetensors one tensor at a
time (one file, stdout, a Hugging Face folder), and Ctrl-C / SIGTERM act within a second."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from nncodec_cli.main import main
from safetensors import safe_open
from safetensors.torch import load_file as st_load
from safetensors.torch import save_file as st_save

import nncodec
from nncodec.api import compressed_items
from nncodec.codecs.base import EncodeOptions
from nncodec.io import read_checkpoint
from nncodec.streaming import open_checkpoint
from nncodec.tensorwriter import encode_to_path


def run(*args: object):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.startswith(".nncodec-")]


def weights(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"fc1.weight": torch.randn(64, 32, generator=g) * 0.05, "fc1.bias": torch.randn(64, generator=g),
            "emb": torch.randn(10, 8, generator=g).to(torch.bfloat16), "steps": torch.tensor(7, dtype=torch.int64),
            "empty": torch.zeros(0, 3), "mask": torch.rand(5, generator=g) > 0.5}


def _zip() -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.txt", "hi")
    return buf.getvalue()


CASES = {
    "mixed": lambda: weights(),
    "tied": lambda: (lambda w: {**w, "tied": w["fc1.weight"]})(weights(1)),
    "many (indexed header)": lambda: {f"t{i}": np.full(3, i, np.float32) for i in range(200)},
    "zip payload (x-pad section)": lambda: {"blob": np.frombuffer(_zip(), np.uint8)},
    "pdf payload": lambda: {"blob": np.frombuffer(b"%PDF-1.7\n" + b"x" * 40, np.uint8)},
    "chunked": lambda: {"big": (np.random.default_rng(0).standard_normal((1200, 1000)) * 0.02).astype(np.float32)},
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("prefer", ["balanced", "speed"])
def test_streamed_file_is_byte_identical_to_the_in_memory_one(tmp_path: Path, case: str, prefer: str) -> None:
    tensors = CASES[case]()
    meta = {"arch": "x"}
    target = tmp_path / "s.nnc"
    size = nncodec.save_file(tensors, target, metadata=meta, prefer=prefer)
    data = nncodec.save(tensors, meta, prefer=prefer)
    assert size == len(data) and target.read_bytes() == data
    loaded = nncodec.load_file(target)
    assert list(loaded) == list(tensors)
    assert leftovers(tmp_path) == []


def test_streaming_with_alignment_and_one_thread_gives_the_same_bytes(tmp_path: Path) -> None:
    tensors = weights(2)
    items = compressed_items(tensors.items())
    encode_to_path(items, tmp_path / "a.nnc", None, EncodeOptions(threads=1), align=64)
    from nncodec.tensorwriter import encode_file

    expected = encode_file(nncodec.api.compress_tensors(tensors), None, EncodeOptions(threads=2), align=64)
    assert (tmp_path / "a.nnc").read_bytes() == expected


def test_an_error_while_streaming_leaves_nothing(tmp_path: Path) -> None:
    def items():
        yield from compressed_items(weights().items())
        raise nncodec.BadArgumentError("broken input")

    target = tmp_path / "m.nnc"
    with pytest.raises(nncodec.BadArgumentError):
        encode_to_path(items(), target)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_refused_before_coding(tmp_path: Path) -> None:
    target = tmp_path / "m.nnc"
    target.write_bytes(b"keep")
    pulled = []

    def items():
        pulled.append(1)
        yield from compressed_items(weights().items())

    with pytest.raises(FileExistsError):
        encode_to_path(items(), target)
    assert pulled == [] and target.read_bytes() == b"keep"


# ------------------------------------------------------------------------------- lazy reading


def _checkpoints(tmp_path: Path) -> dict[str, Path]:
    w = weights(3)
    st_save({k: v for k, v in w.items()}, str(tmp_path / "m.safetensors"), metadata={"format": "pt", "k": "v"})
    torch.save({"model": {**w, "tied": w["fc1.weight"]}, "epoch": 3}, tmp_path / "m.pt")
    np.savez(tmp_path / "m.npz", a=np.arange(6, dtype=np.int16).reshape(2, 3), b=np.ones(4, np.float64))
    names = list(w)
    shards = {"s-1.safetensors": names[:3], "s-2.safetensors": names[3:]}
    for shard, members in shards.items():
        st_save({k: w[k] for k in members}, str(tmp_path / shard), metadata={"format": "pt"})
    weight_map = dict(sorted({k: s for s, members in shards.items() for k in members}.items()))
    (tmp_path / "m.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": 1}, "weight_map": weight_map}))
    return {p.suffix: p for p in (tmp_path / "m.safetensors", tmp_path / "m.pt", tmp_path / "m.npz",
                                  tmp_path / "m.safetensors.index.json")}


def test_lazy_reading_equals_eager_reading_and_encodes_to_the_same_bytes(tmp_path: Path) -> None:
    for path in _checkpoints(tmp_path).values():
        tensors, meta, notes = read_checkpoint(path)
        ckpt = open_checkpoint(path)
        assert ckpt.names == list(tensors) and ckpt.metadata == meta and ckpt.notes == notes
        out = tmp_path / f"{path.name}.nnc"
        assert run("encode", path, "-o", out, "-q").exit_code == 0
        assert out.read_bytes() == nncodec.save(tensors, meta), path.name
        if path.suffix == ".pt":
            assert nncodec.open(out).info()["tensors"][-1].get("alias") == "fc1.weight"  # ties still stored once


def test_encode_to_stdout_streams_the_same_bytes(tmp_path: Path) -> None:
    path = _checkpoints(tmp_path)[".safetensors"]
    result = CliRunner().invoke(main, ["encode", str(path), "-o", "-", "-q"])
    tensors, meta, _ = read_checkpoint(path)
    assert result.exit_code == 0 and result.stdout_bytes == nncodec.save(tensors, meta)


# ------------------------------------------------------------------------------- decode


def test_decode_streams_a_safetensors_file_with_metadata(tmp_path: Path) -> None:
    w = weights(4)
    nncodec.save_file(w, tmp_path / "m.nnc", metadata={"arch": "mlp"})
    assert run("decode", tmp_path / "m.nnc", "-o", tmp_path / "out.safetensors", "-q").exit_code == 0
    with safe_open(str(tmp_path / "out.safetensors"), "pt") as f:
        assert f.metadata() == {"arch": "mlp"}
        for k, v in w.items():
            got = f.get_tensor(k)
            assert got.dtype == v.dtype and torch.equal(got, v)
    piped = CliRunner().invoke(main, ["decode", str(tmp_path / "m.nnc"), "-o", "-", "-q"]).stdout_bytes
    assert piped == (tmp_path / "out.safetensors").read_bytes()
    assert leftovers(tmp_path) == []


def test_decode_to_a_folder_writes_hugging_face_shards_and_index(tmp_path: Path) -> None:
    w = {f"layer{i}.weight": torch.randn(50, 40) for i in range(5)}
    w["tied"] = w["layer0.weight"]
    nncodec.save_file(w, tmp_path / "m.nnc", metadata={"format": "pt"})
    out = tmp_path / "hf"
    assert run("decode", tmp_path / "m.nnc", "-o", f"{out}/", "--max-shard-size", "20kB", "-q").exit_code == 0
    index = json.loads((out / "model.safetensors.index.json").read_text())
    files = sorted(p.name for p in out.iterdir() if p.suffix == ".safetensors")
    assert files == [f"model-{i:05d}-of-00003.safetensors" for i in range(1, 4)]  # 8 kB tensors, two a shard
    assert set(index["weight_map"]) == set(w) and sorted(set(index["weight_map"].values())) == files
    assert index["metadata"]["total_size"] == sum(t.numel() * 4 for t in w.values())
    loaded = {}
    for name in files:
        assert (out / name).stat().st_size <= 20_000 + 200  # shard size limit (+ its header)
        with safe_open(str(out / name), "pt") as f:
            assert f.metadata() == {"format": "pt"}
        loaded.update(st_load(str(out / name)))
    assert all(torch.equal(loaded[k], v) for k, v in w.items())
    assert leftovers(tmp_path) == [] and leftovers(out) == []
    # one shard: model.safetensors alone, as Hugging Face writes it
    assert run("decode", tmp_path / "m.nnc", "-o", f"{tmp_path / 'one'}/", "-q").exit_code == 0
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == ["model.safetensors"]
    # an existing file in the folder is not replaced without --force
    again = run("decode", tmp_path / "m.nnc", "-o", f"{tmp_path / 'one'}/", "-q")
    assert again.exit_code == 1 and "already exists" in again.stderr


def test_bad_shard_size_is_a_one_line_error(tmp_path: Path) -> None:
    nncodec.save_file(weights(), tmp_path / "m.nnc")
    result = run("decode", tmp_path / "m.nnc", "-o", f"{tmp_path / 'x'}/", "--max-shard-size", "lots")
    assert result.exit_code == 1 and "is not a size" in result.stderr


# ------------------------------------------------------------------------------- cancellation


def _interrupt(argv: list[str], sig: int, tmp_path: Path) -> tuple[int, float, str]:
    """Start `nncodec ARGV`, signal it 1 s into its coding phase; (exit code, seconds to exit, stderr)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", "from nncodec_cli.main import main; main()", *argv],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env, cwd=tmp_path)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if b"coding" in line or b"decoding" in line:
                break
        time.sleep(1.0)
        assert proc.poll() is None, "the command finished before it could be interrupted"
        start = time.monotonic()
        proc.send_signal(sig)
        err = proc.stderr.read().decode()
        proc.wait(timeout=30)
        return proc.returncode, time.monotonic() - start, err
    finally:
        proc.kill()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_a_long_encode_acts_within_a_second_and_leaves_nothing(tmp_path: Path, sig: int) -> None:
    big = tmp_path / "big.safetensors"
    # ~6 s of coding with --prefer size on one thread (4M weights took ~1 s after session 8's speed work, so the
    # signal sent 1 s in sometimes met a finished file)
    st_save({"w": torch.randn(24_000_000) * 0.02}, str(big))
    target = tmp_path / "big.nnc"
    code, seconds, err = _interrupt(["encode", str(big), "-o", str(target), "--prefer", "size", "--threads", "1"],
                                    sig, tmp_path)
    assert code == (130 if sig == signal.SIGINT else 143)
    assert seconds < 1.0, f"took {seconds:.2f} s to stop"
    if sig == signal.SIGINT:
        assert err.strip().splitlines()[-1] == "error: interrupted"
    assert not target.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("ahead", [0, 64 * 2**20])
def test_reading_ahead_yields_the_eager_tensors_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ahead: int) -> None:
    """The next tensor is read on a helper thread while this one is coded (streaming.READ_AHEAD_BYTES): same
    tensors, same order, across shards; a consumer that stops early leaves no reader thread behind."""
    import threading

    import nncodec.streaming

    monkeypatch.setattr(nncodec.streaming, "READ_AHEAD_BYTES", ahead)
    for path in _checkpoints(tmp_path).values():
        tensors, _, _ = read_checkpoint(path)
        got = list(open_checkpoint(path).items())
        assert [n for n, _ in got] == list(tensors)
        for (name, value), want in zip(got, tensors.values(), strict=True):
            assert _raw_bytes(value) == _raw_bytes(want), name
    it = open_checkpoint(_checkpoints(tmp_path)[".json"]).items()
    next(it)
    it.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("nncodec-read")]


def _raw_bytes(value: object) -> bytes:
    if hasattr(value, "words"):  # a lossless component (bfloat16, float8 words)
        return value.words.tobytes()
    if isinstance(value, torch.Tensor):
        return value.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
    return np.ascontiguousarray(value).tobytes()
