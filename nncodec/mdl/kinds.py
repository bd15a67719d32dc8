"""Data kinds: how a file's bytes become symbols and back, and which model family predicts them.

- `bytes`: any byte string; symbols are its bytes (alphabet 256), predicted by a sequence model.
- `labels`: an IDX label file (magic 00 00 08 01, as MNIST / Fashion-MNIST ship them); symbols are
  the labels, predicted from side information (the matching IDX image file), which encoder and
  decoder are both given and which the header identifies by the sha256 of its (unzipped) bytes.

A new kind adds a class here with `parse`, `unparse`, `default_spec` and its driver name.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np

from ..errors import BadArgumentError, CorruptFileError, FormatError, UnsupportedInputError
from .idx import parse_idx, read_idx_bytes

LABELS_MAGIC = b"\x00\x00\x08\x01"


@dataclass(frozen=True)
class SideInfo:
    """Inputs the symbols are predicted from (never stored in the file; identified by hash)."""

    array: np.ndarray  # uint8 or float32 [n, ...]
    sha256: str

    @staticmethod
    def from_idx_bytes(raw: bytes, what: str = "side information") -> SideInfo:
        arr = parse_idx(raw, what)
        if arr.dtype not in (np.uint8, np.float32) or arr.ndim < 2:
            raise UnsupportedInputError(f"{what}: expected a uint8 or float32 IDX array of inputs [n, ...], "
                                        f"got {arr.dtype} {arr.shape}")
        return SideInfo(arr, hashlib.sha256(raw).hexdigest())

    @staticmethod
    def from_path(path) -> SideInfo:
        """An IDX input file, plain or gzipped (hashed after unzipping, so either form identifies it)."""
        return SideInfo.from_idx_bytes(read_idx_bytes(path), os.fspath(path))

    def describe(self) -> dict:
        return {"sha256": self.sha256, "shape": [int(d) for d in self.array.shape]}


class BytesKind:
    name = "bytes"
    driver = "sequence"

    def parse(self, data: bytes, side: SideInfo | None) -> tuple[np.ndarray, int]:
        if side is not None:
            raise BadArgumentError("byte data takes no side information")
        return np.frombuffer(data, dtype=np.uint8).astype(np.int64), 256

    def unparse(self, symbols: np.ndarray) -> bytes:
        return symbols.astype(np.uint8).tobytes()

    def default_spec(self, alphabet: int, side: SideInfo | None) -> dict:
        return {"arch": "lstm", "alphabet": alphabet, "emb": 16, "hidden": 128}


class LabelsKind:
    name = "labels"
    driver = "conditional"

    def parse(self, data: bytes, side: SideInfo | None) -> tuple[np.ndarray, int]:
        if data[:2] == b"\x1f\x8b":
            raise BadArgumentError("label file is gzipped: gunzip it first (the decoder reproduces the bytes coded)")
        if len(data) < 8 or data[:4] != LABELS_MAGIC:
            raise UnsupportedInputError("labels must be an IDX label file (magic 00 00 08 01)")
        labels = parse_idx(data, "labels").astype(np.int64)
        if side is None:
            raise BadArgumentError("labels are coded given their inputs: give the matching IDX image file")
        if len(side.array) != len(labels):
            raise BadArgumentError(f"{len(labels)} labels but {len(side.array)} inputs")
        return labels, max(2, int(labels.max(initial=0)) + 1)

    def unparse(self, symbols: np.ndarray) -> bytes:
        return LABELS_MAGIC + len(symbols).to_bytes(4, "big") + symbols.astype(np.uint8).tobytes()

    def default_spec(self, alphabet: int, side: SideInfo | None) -> dict:
        inputs = int(np.prod(side.array.shape[1:])) if side is not None else 784
        return {"arch": "mlp", "inputs": inputs, "hidden": [256], "classes": alphabet}


KINDS = {k.name: k for k in (BytesKind(), LabelsKind())}


def kind_by_name(name: object) -> BytesKind | LabelsKind:
    if name not in KINDS:
        raise FormatError(f"unknown dataset kind {name!r} (known: {', '.join(KINDS)})")
    return KINDS[name]  # type: ignore[index]


def check_alphabet(symbols: np.ndarray, alphabet: int) -> None:
    if symbols.size and (symbols.min() < 0 or symbols.max() >= alphabet):
        raise CorruptFileError("decoded symbol outside the alphabet")
