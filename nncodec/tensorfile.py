"""Tensors in a container: which sections hold which component of which tensor.

This layer maps names to components and components to sections, and validates every reference
(each section used exactly once, sizes and shapes within limits) before anything is decoded.
It knows component kinds by name only; the codecs know how their bytes work.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import codecs
from .codecs.base import DecodeContext, EncodeOptions
from .components import CompressedTensor, Quantizer, QuantTensor, RawTensor, check_quant_consistency, dequantize
from .container.format import PREAMBLE_SIZE, is_optional
from .container.reader import CONTAINER_KEYS, Container, header_int
from .container.writer import assemble
from .dtypes import DTYPES, DType, dtype_by_name
from .errors import BadArgumentError, CorruptFileError, FormatError, LimitExceededError, UnsupportedVersionError
from .limits import DEFAULT_LIMITS, Limits

BODY_KEYS = ("tensors", "meta")
QUANT_PARTS = ("mask", "levels", "quantizer", "pip")


@dataclass(frozen=True)
class Alias:
    """A tensor whose value is another tensor's (tied weights are stored once)."""

    target: str


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

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


# ----------------------------------------------------------------------------------- writing


def encode_file(tensors: dict[str, CompressedTensor | Alias], metadata: dict[str, str] | None = None,
                options: EncodeOptions = codecs.DEFAULT_OPTIONS, align: int = 1,
                progress: Callable[[str], None] | None = None) -> bytes:
    """The bytes of a .nnc file holding `tensors` (in their given order) and string `metadata`.
    `progress(name)` is called after each tensor is coded (the CLI's progress bar)."""
    sections: list[bytes] = []
    entries: dict[str, dict] = {}

    def add(kind: str, enc: codecs.Encoded) -> dict:
        sections.append(enc.payload)
        part = {"s": len(sections) - 1, "codec": enc.codec}
        if enc.params:
            part["p"] = enc.params
        return part

    for name, t in tensors.items():
        _check_text(name, "tensor name")
        if isinstance(t, Alias):
            entries[name] = {"alias": t.target}
            if progress:
                progress(name)
            continue
        _check_writable(name, t)
        entry: dict = {"dtype": t.dtype.name, "shape": [int(d) for d in t.shape]}
        if isinstance(t, RawTensor):
            entry["raw"] = add("raw", codecs.raw.encode(t.words.reshape(-1), t.dtype, options))
        else:
            q = {"mode": t.quantizer.mode}
            if t.quantizer.axis is not None:
                q["axis"] = int(t.quantizer.axis)
            entry["q"] = q
            if t.pip is not None:  # the mask is derived from the pip codes and threshold (codecs/pip.py)
                entry["pip"] = add("pip", codecs.pip.encode(t.pip, options))
            elif t.mask is not None:
                entry["mask"] = add("mask", codecs.mask.encode(t.mask, options))
            rows = codecs.levels_ctx.row_counts(t.shape, t.mask)  # context for the row-class levels codec
            entry["levels"] = add("levels", codecs.levels.encode(t.levels, options, rows))
            entry["quantizer"] = add("quantizer", codecs.quantizer.encode(t.quantizer.values, options))
        entries[name] = entry
        if progress:
            progress(name)
    body: dict = {"tensors": entries}
    if metadata:
        for key, value in metadata.items():
            _check_text(key, "metadata key")
            _check_text(value, f"metadata value of {key!r}")
        body["meta"] = dict(metadata)
    return assemble(body, sections, align=align)


def _check_text(text: object, what: str) -> None:
    """Names and metadata must be Unicode text (a lone surrogate would make a file no reader accepts)."""
    if not isinstance(text, str):
        raise BadArgumentError(f"{what} must be a string, got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadArgumentError(f"{what} {text!r} is not valid Unicode text (it holds a lone surrogate)") from None


def _check_writable(name: str, t: object) -> None:
    """A component set from a compressor must describe a tensor the reader accepts: refuse it here,
    before a file is written, rather than write one that fails to decode or decodes to other values."""
    if not isinstance(t, (RawTensor, QuantTensor)):
        raise BadArgumentError(f"tensor {name!r}: expected a RawTensor or QuantTensor, got {type(t).__name__}")
    if not isinstance(t.dtype, DType) or DTYPES.get(t.dtype.name) != t.dtype:
        raise BadArgumentError(f"tensor {name!r}: unknown dtype {t.dtype!r}")
    if (not isinstance(t.shape, tuple) or len(t.shape) > DEFAULT_LIMITS.max_ndim
            or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and 0 <= d < 2**53 for d in t.shape)):
        raise BadArgumentError(f"tensor {name!r}: shape must be a tuple of at most {DEFAULT_LIMITS.max_ndim} "
                               f"integers in [0, 2**53), got {t.shape!r}")
    numel = int(np.prod(t.shape, dtype=object)) if t.shape else 1
    if isinstance(t, RawTensor):
        w = t.words
        if not isinstance(w, np.ndarray) or w.dtype.kind not in "uib" or w.dtype.itemsize != t.dtype.itemsize:
            raise BadArgumentError(f"tensor {name!r}: words must be {t.dtype.storage} storage words, "
                                   f"got {getattr(w, 'dtype', type(w).__name__)}")
        if w.size != numel:
            raise BadArgumentError(f"tensor {name!r}: {w.size} words for shape {t.shape}")
        if t.dtype.kind == "b" and w.size and w.view(np.uint8).max() > 1:
            raise BadArgumentError(f"tensor {name!r}: bool words must be 0 or 1")
        return
    for part, value in (("levels", t.levels), ("quantizer values", t.quantizer.values), ("mask", t.mask)):
        if not isinstance(value, (np.ndarray, np.generic)) and not (part == "mask" and value is None):
            raise BadArgumentError(f"tensor {name!r}: {part} must be a numpy array, got {type(value).__name__}")
    if t.levels.dtype.kind not in "iu":
        raise BadArgumentError(f"tensor {name!r}: levels must be integers, got {t.levels.dtype}")
    if t.quantizer.axis is not None and (isinstance(t.quantizer.axis, bool)
                                         or not isinstance(t.quantizer.axis, (int, np.integer))):
        raise BadArgumentError(f"tensor {name!r}: quantizer axis must be an integer, got {t.quantizer.axis!r}")
    check_quant_consistency(t, BadArgumentError)


# ----------------------------------------------------------------------------------- reading


def physical_memory_bytes() -> int:
    """Installed RAM (no tensor larger than this can be decoded); unlimited where unknown."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return 2**63


def _check_unknown_keys(obj: dict, known: tuple[str, ...], what: str) -> None:
    for key in obj:
        if key not in known and not is_optional(key):
            raise UnsupportedVersionError(f"{what} has the unknown critical key {key!r}")


class TensorFile:
    """The tensors of an open container; `decode(name)` reads only that tensor's sections."""

    def __init__(self, container: Container) -> None:
        self.container = container
        self.limits: Limits = container.limits
        self.ctx = DecodeContext(self.limits)
        header = container.header
        _check_unknown_keys(header, BODY_KEYS + CONTAINER_KEYS, "header")
        self.metadata = self._parse_metadata(header.get("meta", {}))
        raw_tensors = header.get("tensors", {})
        if not isinstance(raw_tensors, dict):
            raise FormatError("tensors must be an object mapping names to entries")
        self.limits.check("number of tensors", len(raw_tensors), self.limits.max_tensors)
        self.entries: dict[str, TensorEntry] = {}
        self.aliases: dict[str, str] = {}
        used: dict[int, str] = {}
        total_bytes = 0
        for name, raw in raw_tensors.items():
            if not isinstance(raw, dict):
                raise FormatError(f"tensor {name!r}: entry must be an object")
            if "alias" in raw:
                _check_unknown_keys(raw, ("alias",), f"tensor {name!r}")
                if not isinstance(raw["alias"], str):
                    raise FormatError(f"tensor {name!r}: alias must be a tensor name")
                self.aliases[name] = raw["alias"]
                continue
            entry = self._parse_entry(name, raw)
            for part in entry.parts.values():
                if part.section in used:
                    raise FormatError(f"section {part.section} is used by both {used[part.section]!r} and {name!r}")
                used[part.section] = name
            total_bytes += entry.numel * entry.dtype.itemsize
            self.limits.check("total decoded size in bytes", total_bytes, self.limits.max_total_decoded_bytes)
            self.entries[name] = entry
        for name, target in self.aliases.items():
            if target not in self.entries:
                what = "another alias" if target in self.aliases else "no tensor"
                raise FormatError(f"tensor {name!r} is an alias of {target!r}, which is {what}")
        for s in container.sections:
            if s.kind == "data" and s.index not in used:
                raise FormatError(f"section {s.index} is not used by any tensor (orphan section)")
            if s.kind != "data" and s.index in used:
                raise FormatError(f"section {s.index} of optional kind {s.kind!r} is used by tensor {used[s.index]!r}")
        self.names = list(raw_tensors)

    def _parse_metadata(self, meta: object) -> dict[str, str]:
        if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
            raise FormatError("meta must map strings to strings")
        size = sum(len(k.encode()) + len(v.encode()) for k, v in meta.items())
        self.limits.check("metadata size in bytes", size, self.limits.max_metadata_bytes)
        return dict(meta)

    def _parse_part(self, name: str, kind: str, raw: object) -> Part:
        what = f"tensor {name!r} {kind}"
        if not isinstance(raw, dict):
            raise FormatError(f"{what}: part must be an object")
        _check_unknown_keys(raw, ("s", "codec", "p"), what)
        section = header_int(raw.get("s"), f"{what} section index", 0, len(self.container.sections) - 1)
        codec = raw.get("codec")
        if not isinstance(codec, str):
            raise FormatError(f"{what}: codec must be a string")
        params = raw.get("p", {})
        if not isinstance(params, dict):
            raise FormatError(f"{what}: p must be an object")
        return Part(kind, section, codec, params)

    def _parse_entry(self, name: str, raw: dict) -> TensorEntry:
        limits = self.limits
        dt = dtype_by_name(raw.get("dtype"))
        shape_raw = raw.get("shape")
        if not isinstance(shape_raw, list):
            raise FormatError(f"tensor {name!r}: shape must be a list")
        limits.check(f"tensor {name!r} dimensions", len(shape_raw), limits.max_ndim)
        shape = tuple(header_int(d, f"tensor {name!r} dimension") for d in shape_raw)
        numel = 1
        for d in shape:
            numel *= d  # Python ints: no overflow
        limits.check(f"tensor {name!r} elements", numel, limits.max_elements_per_tensor)
        if "raw" in raw:
            _check_unknown_keys(raw, ("dtype", "shape", "raw"), f"tensor {name!r}")
            return TensorEntry(name, dt, shape, {"raw": self._parse_part(name, "raw", raw["raw"])})
        if "levels" not in raw or "quantizer" not in raw or "q" not in raw:
            raise FormatError(f"tensor {name!r}: needs either a raw part or q, levels and quantizer parts")
        _check_unknown_keys(raw, ("dtype", "shape", "q") + QUANT_PARTS, f"tensor {name!r}")
        if dt.kind != "f":
            raise FormatError(f"tensor {name!r}: quantized tensors must have a float dtype")
        q = raw["q"]
        if not isinstance(q, dict):
            raise FormatError(f"tensor {name!r}: q must be an object")
        _check_unknown_keys(q, ("mode", "axis"), f"tensor {name!r} q")
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

    # ------------------------------------------------------------------------------- decode

    def resolve(self, name: str) -> TensorEntry:
        if name in self.aliases:
            name = self.aliases[name]
        try:
            return self.entries[name]
        except KeyError:
            raise KeyError(f"no tensor named {name!r} in this file") from None

    def _payload(self, part: Part) -> memoryview:
        return memoryview(self.container.read_section(part.section))

    def _quantizer_values(self, e: TensorEntry) -> np.ndarray:
        """The step(s) or codebook of a quantized tensor: one step, one per index of the axis, or
        as many codebook entries as the section holds."""
        p = e.parts["quantizer"]
        if e.quant_mode == "uniform":
            count = 1 if e.quant_axis is None else e.shape[e.quant_axis]
        else:
            count = self.container.sections[p.section].length // 4
        return codecs.quantizer.decode(p.codec, p.params, self._payload(p), count, self.ctx)

    def decode_components(self, name: str) -> CompressedTensor:
        """The components of tensor `name`, decoded and checked against each other."""
        e = self.resolve(name)
        ctx = self.ctx
        if "raw" in e.parts:
            p = e.parts["raw"]
            words = codecs.raw.decode(p.codec, p.params, self._payload(p), e.dtype, e.numel, ctx)
            return RawTensor(e.dtype, e.shape, words)
        mask, pip = None, None
        survivors = e.numel
        if "pip" in e.parts:
            pip = self.decode_pip(name)
            mask = pip.mask(e.shape)
            survivors = int(np.count_nonzero(mask))
        elif "mask" in e.parts:
            p = e.parts["mask"]
            mask = codecs.mask.decode(p.codec, p.params, self._payload(p), e.shape, ctx)
            survivors = int(np.count_nonzero(mask))
        p = e.parts["levels"]
        rows = codecs.levels_ctx.row_counts(e.shape, mask) if p.codec == "ans-rowclass" else None
        levels = codecs.levels.decode(p.codec, p.params, self._payload(p), survivors, ctx, rows)
        values = self._quantizer_values(e)
        t = QuantTensor(e.dtype, e.shape, levels, Quantizer(e.quant_mode, values, e.quant_axis), mask, pip=pip)
        check_quant_consistency(t, CorruptFileError)
        return t

    def decode_pip(self, name: str) -> codecs.pip.Pip | None:
        """The inclusion probabilities of tensor `name` (only its pip section is read), None if it has none."""
        e = self.resolve(name)
        if "pip" not in e.parts:
            return None
        p = e.parts["pip"]
        return codecs.pip.decode(p.codec, p.params, self._payload(p), e.numel, self.ctx)

    def decode(self, name: str) -> tuple[DType, tuple[int, ...], np.ndarray]:
        """(dtype, shape, flat storage words) of tensor `name`.

        A tensor larger than this machine's memory is refused before anything is allocated (a few
        bytes can declare a huge constant tensor), and running out of memory while decoding is
        reported as LimitExceededError rather than escaping as MemoryError.
        """
        e = self.resolve(name)
        need = e.numel * e.dtype.itemsize
        if need > physical_memory_bytes():
            raise LimitExceededError(f"tensor {name!r} needs {need} bytes, more than this machine's memory")
        try:
            t = self.decode_components(name)
            words = t.words if isinstance(t, RawTensor) else dequantize(t)
        except MemoryError:
            raise LimitExceededError(f"out of memory while decoding tensor {name!r} ({need} bytes)") from None
        return t.dtype, t.shape, words

    # ------------------------------------------------------------------------------- info

    SPARSITY_MAX_ELEMENTS = 2**26  # info decodes quantized tensors up to this size to report sparsity

    def _quant_fields(self, e: TensorEntry) -> dict:
        """step(s) or codebook size and the fraction of zero weights of a quantized tensor, for
        `info` (decodes the tensor's components; sparsity is skipped above SPARSITY_MAX_ELEMENTS)."""
        if "raw" in e.parts:
            return {}
        if e.numel > self.SPARSITY_MAX_ELEMENTS:
            values, nonzero = self._quantizer_values(e), None
        else:
            t = self.decode_components(e.name)
            values = t.quantizer.values
            lv = t.levels if t.quantizer.mode == "uniform" else values[t.levels]
            nonzero = int(np.count_nonzero(lv))
        out: dict = {}
        if e.quant_mode == "codebook":
            out["codebook_size"] = int(values.size)
        elif values.size == 1:
            out["step"] = float(values[0])
        elif values.size:
            out["step"] = [float(values.min()), float(values.max())]
        if nonzero is not None:
            out["sparsity"] = 1.0 - nonzero / e.numel if e.numel else 0.0
        return out

    def byte_report(self) -> dict:
        """Every byte of the file attributed to the preamble, the header, padding, an optional
        section, or one component of one tensor; the parts add up to the file size exactly."""
        c = self.container
        tensors = []
        for name in self.names:
            if name in self.aliases:
                tensors.append({"name": name, "alias": self.aliases[name], "bytes": 0, "components": []})
                continue
            e = self.entries[name]
            comps = [{"kind": p.kind, "codec": p.codec, "bytes": c.sections[p.section].length,
                      **({"params": p.params} if p.params else {})} for p in e.parts.values()]
            total = sum(x["bytes"] for x in comps)
            tensors.append({"name": name, "dtype": e.dtype.name, "shape": list(e.shape), "numel": e.numel,
                            "encoding": "raw" if "raw" in e.parts else f"quantized/{e.quant_mode}",
                            "bytes": total, "bits_per_param": 8 * total / e.numel if e.numel else 0.0,
                            **({"pip_bytes": c.sections[e.parts["pip"].section].length} if "pip" in e.parts else {}),
                            **self._quant_fields(e), "components": comps})
        optional = [{"index": s.index, "kind": s.kind, "bytes": s.length} for s in c.sections if s.kind != "data"]
        padding = sum(n for _, n in c.padding)
        report = {
            "file_bytes": c.file_size,
            "version": f"{c.preamble.major}.{c.preamble.minor}",
            "preamble_bytes": PREAMBLE_SIZE,
            "header_bytes": c.header_bytes,
            "header_encoding": "zstd" if c.preamble.header_encoding else "json",
            "padding_bytes": padding,
            "optional_section_bytes": sum(o["bytes"] for o in optional),
            "tensors": tensors,
            "metadata": self.metadata,
        }
        accounted = PREAMBLE_SIZE + c.header_bytes + padding + report["optional_section_bytes"] + sum(t["bytes"] for t in tensors)
        if accounted != c.file_size:
            raise CorruptFileError(f"byte accounting found {accounted} bytes in a {c.file_size}-byte file")
        report["parameters"] = sum(t.get("numel", 0) for t in tensors)
        return report


def open_tensor_file(source, limits: Limits) -> TensorFile:
    container = Container(source, limits)
    try:
        return TensorFile(container)
    except BaseException:
        container.close()
        raise

