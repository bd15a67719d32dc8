"""Tensor entries of a header (spec §6): their forms, dtypes, shapes, parts and limits, checked
before anything is decoded. `EntryParsing` is what TensorFile (and the VAE index) use to turn one
entry object into a TensorEntry; whole-file rules (references, totals) live in TensorFile."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .container.format import is_optional
from .container.reader import header_int
from .dtypes import DTYPES, DType, dtype_by_name
from .errors import FormatError, LimitExceededError, UnsupportedVersionError
from .limits import Limits

QUANT_PARTS = ("mask", "levels", "quantizer", "pip")
_PART_KEYS = frozenset(("s", "codec", "p"))
_RAW_KEYS = frozenset(("dtype", "shape", "raw"))
_NO_PARAMS: dict = {}
_MAX_HEADER_INT = 2**53 - 1


@dataclass(frozen=True)
class Part:
    kind: str
    section: int
    codec: str
    params: dict


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: DType
    shape: tuple[int, ...]
    parts: dict[str, Part]
    quant_mode: str | None = None
    quant_axis: int | None = None
    vae_group: int | None = None  # a VAE tensor (spec §19): decoded from this group's latents
    # computed once (a full load asks each entry for them about ten times: validation, memory checks,
    # decode, the thread split); nbytes = bytes of the decoded tensor (what memory checks and shard sizes count)
    numel: int = field(init=False, repr=False, compare=False)
    nbytes: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        numel = math.prod(self.shape)
        object.__setattr__(self, "numel", numel)
        object.__setattr__(self, "nbytes", numel * self.dtype.itemsize)


def _new_part(kind: str, section: int, codec: str, params: dict) -> Part:
    """Part(kind, section, codec, params) without the frozen dataclass's per-field object.__setattr__ calls
    (the same object: fields in its __dict__): a file of many tensors makes one per entry when it is opened."""
    part = object.__new__(Part)
    part.__dict__.update(kind=kind, section=section, codec=codec, params=params)
    return part


def _new_raw_entry(name: str, dt: DType, shape: tuple[int, ...], numel: int, part: Part) -> TensorEntry:
    """TensorEntry(name, dt, shape, {"raw": part}) the same way (`numel`: the product of `shape`, known
    from the shape check): ~1.3 -> ~0.4 us per entry."""
    e = object.__new__(TensorEntry)
    e.__dict__.update(name=name, dtype=dt, shape=shape, parts={"raw": part}, quant_mode=None, quant_axis=None,
                      vae_group=None, numel=numel, nbytes=numel * dt.itemsize)
    return e


# ----------------------------------------------------------------------------------- reading


def check_metadata_size(meta: dict[str, str], limits: Limits, error: type[Exception]) -> None:
    """Metadata (UTF-8 bytes of keys and values) within the reader's limit; the writer checks the same."""
    size = sum(len(k.encode()) + len(v.encode()) for k, v in meta.items())
    if size > limits.max_metadata_bytes:
        raise error(f"metadata size in bytes is {size}, over the limit of {limits.max_metadata_bytes}")


def check_unknown_keys(obj: dict, known: tuple[str, ...], what: str) -> None:
    for key in obj:
        if key not in known and not is_optional(key):
            raise UnsupportedVersionError(f"{what} has the unknown critical key {key!r}")


class EntryParsing:
    """Parsing of entry objects; the host provides `limits` and `container` (for the section count)."""

    limits: Limits

    def _parse_metadata(self, meta: object) -> dict[str, str]:
        if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
            raise FormatError("meta must map strings to strings")
        check_metadata_size(meta, self.limits, LimitExceededError)
        return dict(meta)

    def _parse_part(self, name: str, kind: str, raw: object) -> Part:
        # the happy path builds no message strings: files may hold a million entries
        if not isinstance(raw, dict):
            raise FormatError(f"tensor {name!r} {kind}: part must be an object")
        if not raw.keys() <= _PART_KEYS:
            check_unknown_keys(raw, tuple(_PART_KEYS), f"tensor {name!r} {kind}")
        section = raw.get("s")
        if type(section) is not int or not 0 <= section < len(self.container.sections):
            header_int(section, f"tensor {name!r} {kind} section index", 0, len(self.container.sections) - 1)
        codec = raw.get("codec")
        if not isinstance(codec, str):
            raise FormatError(f"tensor {name!r} {kind}: codec must be a string")
        params = raw.get("p", _NO_PARAMS)
        if not isinstance(params, dict):
            raise FormatError(f"tensor {name!r} {kind}: p must be an object")
        return _new_part(kind, section, codec, params)

    def _parse_dtype_shape(self, name: str, raw: dict) -> tuple[DType, tuple[int, ...]]:
        dt, shape, _ = self._parse_dtype_shape_numel(name, raw)
        return dt, shape

    def _parse_dtype_shape_numel(self, name: str, raw: dict) -> tuple[DType, tuple[int, ...], int]:
        limits = self.limits
        dt = DTYPES.get(raw.get("dtype")) if isinstance(raw.get("dtype"), str) else None
        if dt is None:
            dt = dtype_by_name(raw.get("dtype"))
        shape_raw = raw.get("shape")
        if not isinstance(shape_raw, list):
            raise FormatError(f"tensor {name!r}: shape must be a list")
        if len(shape_raw) > limits.max_ndim:
            limits.check(f"tensor {name!r} dimensions", len(shape_raw), limits.max_ndim)
        numel = extent = 1
        for d in shape_raw:
            if type(d) is not int or not 0 <= d <= _MAX_HEADER_INT:
                header_int(d, f"tensor {name!r} dimension")
            numel *= d  # Python ints: no overflow
            extent *= d or 1  # an empty tensor's other dimensions still size numpy's strides
        shape = tuple(shape_raw)
        if numel > limits.max_elements_per_tensor:
            limits.check(f"tensor {name!r} elements", numel, limits.max_elements_per_tensor)
        if extent > limits.max_elements_per_tensor:
            limits.check(f"tensor {name!r} product of non-zero dimensions", extent, limits.max_elements_per_tensor)
        return dt, shape, numel

    def _parse_entry(self, name: str, raw: dict) -> TensorEntry:
        dt, shape, numel = self._parse_dtype_shape_numel(name, raw)
        if "raw" in raw:
            if not raw.keys() <= _RAW_KEYS:
                check_unknown_keys(raw, tuple(_RAW_KEYS), f"tensor {name!r}")
            return _new_raw_entry(name, dt, shape, numel, self._parse_part(name, "raw", raw["raw"]))
        if "levels" not in raw or "quantizer" not in raw or "q" not in raw:
            raise FormatError(f"tensor {name!r}: needs either a raw part or q, levels and quantizer parts")
        check_unknown_keys(raw, ("dtype", "shape", "q") + QUANT_PARTS, f"tensor {name!r}")
        if dt.kind != "f":
            raise FormatError(f"tensor {name!r}: quantized tensors must have a float dtype")
        q = raw["q"]
        if not isinstance(q, dict):
            raise FormatError(f"tensor {name!r}: q must be an object")
        check_unknown_keys(q, ("mode", "axis"), f"tensor {name!r} q")
        mode = q.get("mode")
        if mode not in ("uniform", "codebook"):
            raise UnsupportedVersionError(f"tensor {name!r}: unknown quantizer mode {mode!r}")
        axis = q.get("axis")
        if axis is not None:
            if mode != "uniform":
                raise FormatError(f"tensor {name!r}: only a uniform quantizer has an axis")
            axis = header_int(axis, f"tensor {name!r} quantizer axis", 0, max(len(shape) - 1, 0))
            if not shape:
                raise FormatError(f"tensor {name!r}: a scalar has no axis")
        parts = {kind: self._parse_part(name, kind, raw[kind]) for kind in QUANT_PARTS if kind in raw}
        if "pip" in parts and "mask" in parts:
            raise FormatError(f"tensor {name!r}: a tensor with a pip part has no mask part (its mask is derived)")
        return TensorEntry(name, dt, shape, parts, mode, axis)
