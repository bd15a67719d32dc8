"""Checkpoint reading and writing (nncodec.io) and the IDX reader (nncodec.mdl.idx, the Fashion-MNIST preset)."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import struct

import numpy as np
import pytest
import torch
from nncodec_cli.presets.fashion_mnist import load_fashion_mnist
from safetensors.torch import save_file as st_save

from nncodec.errors import BadArgumentError, LimitExceededError, UnsupportedInputError
from nncodec.io import read_checkpoint, split_checkpoint, write_checkpoint
from nncodec.mdl.idx import parse_idx, read_idx


def small_state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"fc.weight": torch.randn(4, 3, generator=g), "fc.bias": torch.randn(4, generator=g),
            "steps": torch.tensor(7, dtype=torch.int64), "emb": torch.randn(2, 3, generator=g).to(torch.bfloat16)}


def assert_same(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape
        assert torch.equal(a[k].view(-1).view(torch.uint8) if a[k].numel() else a[k], b[k].view(-1).view(torch.uint8)
                           if b[k].numel() else b[k])


# ----------------------------------------------------------------------------------- torch


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".bin", ".ckpt"])
def test_plain_state_dict(tmp_path, suffix):
    state = small_state()
    path = tmp_path / f"model{suffix}"
    torch.save(state, path)
    tensors, meta, notes = read_checkpoint(path)
    assert_same(tensors, state)
    assert meta == {} and notes == []


@pytest.mark.parametrize("key", ["state_dict", "model"])
def test_state_dict_found_under_key_rest_becomes_metadata_or_notes(tmp_path, key):
    state = small_state()
    opt = {"state": {0: {"exp_avg": torch.ones(3)}}, "param_groups": [{"lr": 0.1}]}
    torch.save({key: state, "epoch": 3, "arch": "mlp", "sizes": [784, 10], "optimizer": opt}, tmp_path / "c.pt")
    tensors, meta, notes = read_checkpoint(tmp_path / "c.pt")
    assert_same(tensors, state)
    assert meta == {"epoch": "3", "arch": "mlp", "sizes": "[784, 10]"}  # strings unquoted
    assert any(key in n for n in notes) and any("optimizer" in n for n in notes)


def test_nested_dicts_flatten_with_dots_and_plain_values_go_to_metadata(tmp_path):
    a, b = torch.arange(3.0), torch.ones(2, dtype=torch.int32)
    torch.save({"enc": {"layer": {"w": a}, "b": b}, "lr": 0.5, "optimizer": {"state": {0: {"m": a}}}}, tmp_path / "n.pt")
    tensors, meta, notes = read_checkpoint(tmp_path / "n.pt")
    assert list(tensors) == ["enc.layer.w", "enc.b"]
    assert torch.equal(tensors["enc.layer.w"], a) and torch.equal(tensors["enc.b"], b)
    assert meta == {"lr": "0.5"}
    assert any("optimizer" in n for n in notes)


def test_single_tensor_file(tmp_path):
    torch.save(torch.ones(3), tmp_path / "w.pt")
    tensors, _, notes = read_checkpoint(tmp_path / "w.pt")
    assert list(tensors) == ["w"] and notes


def test_checkpoint_without_tensors_is_refused(tmp_path):
    torch.save({"epoch": 1, "name": "x"}, tmp_path / "e.pt")
    with pytest.raises(UnsupportedInputError, match="no tensors"):
        read_checkpoint(tmp_path / "e.pt")
    torch.save([1, 2], tmp_path / "l.pt")
    with pytest.raises(UnsupportedInputError, match="not a dict"):
        read_checkpoint(tmp_path / "l.pt")


def test_colliding_flattened_names_are_refused():
    with pytest.raises(UnsupportedInputError, match="same name"):
        split_checkpoint({"a.b": torch.ones(1), "a": {"b": torch.zeros(1)}})


class Evil:
    """Unpickling this would run a shell command that creates a marker file."""

    marker = ""

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("how", ["torch.save", "raw pickle"])
def test_malicious_pickle_is_refused_and_not_executed(tmp_path, how):
    marker = tmp_path / "PWNED"
    evil = Evil()
    evil.marker = str(marker)
    path = tmp_path / "evil.pt"
    if how == "torch.save":
        torch.save({"w": torch.ones(2), "x": evil}, path)
    else:
        path.write_bytes(pickle.dumps({"w": 1, "x": evil}, protocol=2))
    with pytest.raises(UnsupportedInputError) as info:
        read_checkpoint(path)
    message = str(info.value)
    assert "weights_only" in message and "\n" not in message
    assert not marker.exists()


def test_not_a_checkpoint(tmp_path):
    for content in (b"", b"hello world, not a checkpoint"):
        (tmp_path / "junk.pt").write_bytes(content)
        with pytest.raises(UnsupportedInputError, match="not a readable torch checkpoint"):
            read_checkpoint(tmp_path / "junk.pt")


def test_missing_file_unknown_extension_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "m.onnx").write_bytes(b"x")
    with pytest.raises(UnsupportedInputError, match="unknown checkpoint type"):
        read_checkpoint(tmp_path / "m.onnx")
    with pytest.raises(UnsupportedInputError, match="already a .nnc"):
        read_checkpoint(tmp_path / "m.nnc")
    (tmp_path / "d.pt").mkdir()
    with pytest.raises(IsADirectoryError):
        read_checkpoint(tmp_path / "d.pt")


# ----------------------------------------------------------------------------------- safetensors


def test_safetensors_keeps_tensors_and_metadata(tmp_path):
    state = small_state()
    st_save(state, tmp_path / "m.safetensors", metadata={"b": "2", "a": "1"})
    tensors, meta, notes = read_checkpoint(tmp_path / "m.safetensors")
    assert_same({k: tensors[k] for k in state}, state)
    assert list(meta.items()) == [("a", "1"), ("b", "2")]  # sorted: deterministic output
    assert notes == []


def test_damaged_safetensors_is_refused(tmp_path):
    (tmp_path / "bad.safetensors").write_bytes(struct.pack("<Q", 5) + b"{bad}")
    with pytest.raises(UnsupportedInputError, match="safetensors"):
        read_checkpoint(tmp_path / "bad.safetensors")


def make_sharded(tmp_path, weight_map=None, metadata=None):
    st_save({"a": torch.ones(2), "b": torch.zeros(3)}, tmp_path / "m-00001.safetensors", metadata={"format": "pt"})
    st_save({"c": torch.arange(4)}, tmp_path / "m-00002.safetensors")
    index = {"metadata": metadata or {"total_size": 44},
             "weight_map": weight_map or {"a": "m-00001.safetensors", "b": "m-00001.safetensors",
                                          "c": "m-00002.safetensors"}}
    path = tmp_path / "m.safetensors.index.json"
    path.write_text(json.dumps(index))
    return path


def test_sharded_index(tmp_path):
    tensors, meta, _ = read_checkpoint(make_sharded(tmp_path))
    assert list(tensors) == ["a", "b", "c"]
    assert torch.equal(tensors["c"], torch.arange(4))
    assert meta == {"total_size": "44", "format": "pt"}


@pytest.mark.parametrize("shard", ["../m-00001.safetensors", "sub/m-00001.safetensors", "/etc/passwd", "..", "",
                                   "..\\x.safetensors", "C:x.safetensors"])
def test_sharded_index_refuses_paths_outside_its_directory(tmp_path, shard):
    path = make_sharded(tmp_path, weight_map={"a": shard})
    with pytest.raises(UnsupportedInputError, match="plain file name"):
        read_checkpoint(path)


def test_sharded_index_needs_listed_tensors(tmp_path):
    path = make_sharded(tmp_path, weight_map={"zz": "m-00002.safetensors"})
    with pytest.raises(UnsupportedInputError, match="lacks"):
        read_checkpoint(path)
    path.write_text("{not json")
    with pytest.raises(UnsupportedInputError, match="JSON"):
        read_checkpoint(path)
    path.write_text(json.dumps({"weight_map": {}}))
    with pytest.raises(UnsupportedInputError, match="weight_map"):
        read_checkpoint(path)


# ----------------------------------------------------------------------------------- npz


def test_npz(tmp_path):
    arrays = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "big_endian": np.arange(3, dtype=">i4")}
    np.savez(tmp_path / "a.npz", **arrays)
    tensors, meta, _ = read_checkpoint(tmp_path / "a.npz")
    assert list(tensors) == ["w", "big_endian"]
    assert np.array_equal(tensors["w"], arrays["w"]) and np.array_equal(tensors["big_endian"], arrays["big_endian"])


def test_npz_object_arrays_are_refused(tmp_path):
    np.savez(tmp_path / "o.npz", x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(UnsupportedInputError, match="object arrays"):
        read_checkpoint(tmp_path / "o.npz")
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(UnsupportedInputError):
        read_checkpoint(tmp_path / "bad.npz")


# ----------------------------------------------------------------------------------- writing


@pytest.mark.parametrize("name", ["out.safetensors", "out.pt"])
def test_write_checkpoint_round_trip(tmp_path, name):
    state = small_state()
    state["tied"] = state["fc.weight"]  # shared memory: safetensors needs its own copy
    state["nan"] = torch.tensor([float("nan"), -0.0, float("inf")])
    path = tmp_path / name
    write_checkpoint(state, path, {"k": "v"})
    tensors, meta, _ = read_checkpoint(path)
    if name.endswith(".safetensors"):  # safetensors lists tensors in sorted order
        tensors = {k: tensors[k] for k in state}
    assert_same(tensors, state)
    assert meta == ({"k": "v"} if name.endswith(".safetensors") else {})
    assert oct(path.stat().st_mode & 0o777) != oct(0o600)  # an ordinary file, not a private temp file


def test_write_checkpoint_accepts_numpy_and_never_overwrites_by_default(tmp_path):
    path = tmp_path / "n.safetensors"
    write_checkpoint({"x": np.arange(3, dtype=np.uint16)}, path)
    with pytest.raises(FileExistsError):
        write_checkpoint({"x": np.zeros(1)}, path)
    assert read_checkpoint(path)[0]["x"].tolist() == [0, 1, 2]
    write_checkpoint({"x": np.zeros(1)}, path, overwrite=True)
    assert read_checkpoint(path)[0]["x"].tolist() == [0.0]
    with pytest.raises(BadArgumentError, match=".safetensors or .pt"):
        write_checkpoint({"x": np.zeros(1)}, tmp_path / "n.txt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["n.safetensors"]  # no temp files left


# ----------------------------------------------------------------------------------- IDX


def idx_bytes(arr: np.ndarray, code: int) -> bytes:
    return bytes([0, 0, code, arr.ndim]) + b"".join(struct.pack(">I", n) for n in arr.shape) + arr.tobytes()


def test_read_idx_gzip_and_plain(tmp_path):
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    labels = np.array([3, 7], dtype=np.uint8)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images, 0x08)))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(labels, 0x08))
    x, y = load_fashion_mnist(tmp_path, "test")
    assert np.array_equal(x, images) and np.array_equal(y, labels)
    floats = np.array([[1.5, -2.0]], dtype=">f4")
    assert np.array_equal(parse_idx(idx_bytes(floats, 0x0D)), floats.astype(np.float32))
    with pytest.raises(FileNotFoundError):
        load_fashion_mnist(tmp_path, "train")


@pytest.mark.parametrize("raw", [b"", b"\x01\x00\x08\x01", b"\x00\x00\x07\x01\x00\x00\x00\x01x",
                                 b"\x00\x00\x08\x02\x00\x00", b"\x00\x00\x08\x01\x00\x00\x00\x05abc"])
def test_bad_idx_is_refused(raw):
    with pytest.raises(UnsupportedInputError):
        parse_idx(raw)


def test_idx_gzip_bomb_is_refused(tmp_path):
    (tmp_path / "bomb.gz").write_bytes(gzip.compress(b"\0" * 100_000))
    with pytest.raises(LimitExceededError):
        read_idx(tmp_path / "bomb.gz", max_bytes=1000)
