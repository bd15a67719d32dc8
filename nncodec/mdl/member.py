"""The `dataset` header member (spec/FORMAT.md §21): writing it and validating it when read."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..container.format import is_optional
from ..container.reader import header_int
from ..errors import FormatError, UnsupportedVersionError
from .schedule import check_blocks
from .train import TrainConfig

CODES = ("two-part", "prequential")
KEYS = ("s", "kind", "code", "n", "alphabet", "sha256", "model", "seed", "env")
OPTIONAL_BY_CODE = {"two-part": (), "prequential": ("train", "blocks")}
KIND_KEYS = {"bytes": ("streams",), "labels": ("side",)}
MAX_STREAMS = 1 << 16
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class DatasetMember:
    section: int
    kind: str
    code: str
    n: int
    alphabet: int
    sha256: str
    model: dict
    seed: int
    env: dict
    streams: int = 1
    side: dict | None = None
    train: TrainConfig | None = None
    blocks: list[int] | None = None

    def to_json(self) -> dict:
        out: dict = {"s": self.section, "kind": self.kind, "code": self.code, "n": self.n, "alphabet": self.alphabet,
                     "sha256": self.sha256, "model": self.model, "seed": self.seed, "env": self.env}
        if self.kind == "bytes":
            out["streams"] = self.streams
        if self.kind == "labels":
            out["side"] = self.side
        if self.code == "prequential":
            out["train"] = self.train.to_json() if self.train else None
            out["blocks"] = self.blocks
        return out


def parse(obj: object, sections: int) -> DatasetMember:
    """Validate the member against §21 (structure only; env and side are checked when decoding)."""
    if not isinstance(obj, dict):
        raise FormatError("dataset must be an object")
    code, kind = obj.get("code"), obj.get("kind")
    if not isinstance(code, str) or code not in CODES:
        raise UnsupportedVersionError(f"unknown dataset code {code!r} (known: {', '.join(CODES)})")
    if not isinstance(kind, str) or kind not in KIND_KEYS:
        raise UnsupportedVersionError(f"unknown dataset kind {kind!r} (known: {', '.join(KIND_KEYS)})")
    allowed = KEYS + OPTIONAL_BY_CODE[code] + KIND_KEYS[kind]
    for key in obj:
        if key not in allowed and not is_optional(key):
            raise UnsupportedVersionError(f"dataset has the unknown critical key {key!r}")
    for key in allowed:
        if key not in obj:
            raise FormatError(f"dataset is missing {key!r}")
    n = header_int(obj["n"], "dataset n")
    alphabet = header_int(obj["alphabet"], "dataset alphabet", 2, 1 << 16)
    sha = obj["sha256"]
    if not isinstance(sha, str) or not _HEX64.fullmatch(sha):
        raise FormatError("dataset sha256 must be 64 lowercase hex digits")
    if not isinstance(obj["model"], dict):
        raise FormatError("dataset model must be an object")
    streams, side, train, blocks = 1, None, None, None
    if kind == "bytes":
        streams = header_int(obj["streams"], "dataset streams", 1, MAX_STREAMS)
    else:
        side = obj["side"]
        if (not isinstance(side, dict) or set(side) != {"sha256", "shape"} or not isinstance(side["sha256"], str)
                or not _HEX64.fullmatch(side["sha256"]) or not isinstance(side["shape"], list)
                or not 2 <= len(side["shape"]) <= 8):
            raise FormatError("dataset side must be {sha256, shape} of the inputs")
        shape = [header_int(d, "dataset side shape") for d in side["shape"]]
        if shape[0] != n:
            raise FormatError(f"dataset side has {shape[0]} inputs for {n} labels")
    if code == "prequential":
        train = TrainConfig.from_json(obj["train"])
        blocks = check_blocks(obj["blocks"], n)
    return DatasetMember(header_int(obj["s"], "dataset section index", 0, max(sections - 1, 0)), kind, code, n,
                         alphabet, sha, obj["model"], header_int(obj["seed"], "dataset seed"),
                         obj["env"], streams, side, train, blocks)


def check_spec(member: DatasetMember) -> None:
    """The model must fit the data kind: an lstm over the alphabet for bytes, or a prequential cm in one
    block over bytes (alphabet 256); for labels a model over the
    inputs to the alphabet (`_fits_labels`), or a prequential mix of such models (anything else could not
    have coded these symbols)."""
    spec = member.model
    if member.kind == "bytes" and spec.get("arch") == "cm":  # prequential only, one block, bytes
        ok = member.code == "prequential" and member.alphabet == 256 and member.blocks == ([member.n] if member.n else [])
    elif member.kind == "bytes":
        ok = spec.get("arch") == "lstm" and spec.get("alphabet") == member.alphabet
    elif spec.get("arch") == "mix":  # prequential only; every member must fit (build checks the rest)
        parts = spec.get("members")
        ok = member.code == "prequential" and isinstance(parts, list) and all(
            isinstance(m, dict) and m.get("arch") != "mix" and _fits_labels(m, member) for m in parts)
    else:
        ok = _fits_labels(spec, member)
    if not ok:
        raise FormatError(f"dataset model {spec!r} does not fit {member.kind} data of alphabet {member.alphabet}")


def _fits_labels(spec: dict, member: DatasetMember) -> bool:
    """An mlp from the inputs' size, a cnn or patchpca over their [height, width], or uniform, to the alphabet."""
    size = 1
    for d in member.side["shape"][1:]:
        size *= d
    image = spec.get("shape") == member.side["shape"][1:]
    fits = {"mlp": spec.get("inputs") == size, "gauss": spec.get("inputs") == size, "cnn": image, "patchpca": image,
            "uniform": True}
    arch = spec.get("arch")
    return isinstance(arch, str) and fits.get(arch, False) and spec.get("classes") == member.alphabet
