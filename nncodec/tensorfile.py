"""Tensors in a container: which sections hold which component of which tensor.

This layer maps names to components and components to sections, and validates every reference
(each section used exactly once, sizes and shapes within limits) before anything is decoded.
It knows component kinds by name only; the codecs know how their bytes work.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from . import codecs, decode_memory, fidelity, tensorfile_vae
from .codecs.base import DecodeContext, EncodeOptions
from .components import (
    CompressedTensor,
    Quantizer,
    QuantTensor,
    RawTensor,
    as_int64,
    check_quant_consistency,
    dequantize,
)
from .container import strict_json
from .container.format import PREAMBLE_SIZE, is_optional
from .container.reader import CONTAINER_KEYS, Container, header_int
from .container.writer import assemble
from .dtypes import DTYPES, DType, dtype_by_name
from .errors import (
    BadArgumentError,
    CorruptFileError,
    FormatError,
    LimitExceededError,
    NNCodecError,
    UnsupportedVersionError,
)
from .limits import DEFAULT_LIMITS, Limits
from .vae_components import VaeSet, VaeTensor

BODY_KEYS = ("tensors", "meta", "vae", "dataset")  # "dataset": a coded data set (§21, nncodec.mdl)
QUANT_PARTS = ("mask", "levels", "quantizer", "pip")
_PART_KEYS = frozenset(("s", "codec", "p"))
_RAW_KEYS = frozenset(("dtype", "shape", "raw"))
_NO_PARAMS: dict = {}
_MAX_HEADER_INT = 2**53 - 1


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
    vae_group: int | None = None  # a VAE tensor (spec §19): decoded from this group's latents

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


# ----------------------------------------------------------------------------------- writing


def encode_file(tensors: dict[str, CompressedTensor | Alias | VaeTensor], metadata: dict[str, str] | None = None,
                options: EncodeOptions = codecs.DEFAULT_OPTIONS, align: int = 1,
                progress: Callable[[str], None] | None = None, optional: dict | None = None,
                vae: VaeSet | None = None) -> bytes:
    """The bytes of a .nnc file holding `tensors` (in their given order) and string `metadata`.
    `progress(name)` is called after each tensor is coded (the CLI's progress bar); `optional` holds
    optional ("x-") header members, such as the lossy error summary of nncodec.fidelity; `vae` holds
    the decoders and latent groups that VaeTensor entries refer to (spec §19)."""
    sections: list[bytes] = []
    entries: dict[str, dict] = {}

    def add(kind: str, enc: codecs.Encoded) -> dict:
        sections.append(enc.payload)
        part = {"s": len(sections) - 1, "codec": enc.codec}
        if enc.params:
            part["p"] = enc.params
        return part

    if metadata:
        for key, value in metadata.items():
            _check_text(key, "metadata key")
            _check_text(value, f"metadata value of {key!r}")
        check_metadata_size(metadata, DEFAULT_LIMITS, BadArgumentError)  # before the slow part

    def entry_of(name: str, t: CompressedTensor) -> dict:
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
        return entry

    group_numels = [0] * (len(vae.groups) if vae else 0)
    for name, t in tensors.items():
        _check_text(name, "tensor name")
        if isinstance(t, Alias):
            entries[name] = {"alias": t.target}
        elif isinstance(t, VaeTensor):
            if vae is None or not 0 <= t.group < len(vae.groups):
                raise BadArgumentError(f"tensor {name!r}: vae group {t.group} is not in the file's VaeSet")
            group_numels[t.group] += t.numel
            entries[name] = tensorfile_vae.encode_vae_entry(name, t, entry_of)
        else:
            entries[name] = entry_of(name, t)
        if progress:
            progress(name)
    body: dict = {"tensors": entries}
    if vae is not None:
        body["vae"] = tensorfile_vae.encode_vae_header(vae, group_numels, lambda enc: add("", enc), entry_of, options)
    if metadata:
        body["meta"] = dict(metadata)
    for key, value in (optional or {}).items():
        if not is_optional(key) or key in body:
            raise BadArgumentError(f"{key!r} is not an optional header member name (they start with 'x-')")
        body[key] = value
    aliases = sum(1 for t in tensors.values() if isinstance(t, Alias))
    min_bytes = DEFAULT_LIMITS.entry_bytes(len(entries) - aliases, aliases)
    return readable(assemble(body, sections, align=align, min_file_bytes=min_bytes))


def readable(data: bytes) -> bytes:
    """`data`, once a reader with the default limits has accepted its header: the writer never
    produces a file that the reader refuses (too many tensors for the file size, a huge header...)."""
    try:
        open_tensor_file(data, DEFAULT_LIMITS).container.close()
    except NNCodecError as e:
        raise BadArgumentError(f"refusing to write a file that readers with the default limits refuse: {e}") from None
    return data


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


def check_metadata_size(meta: dict[str, str], limits: Limits, error: type[Exception]) -> None:
    """Metadata (UTF-8 bytes of keys and values) within the reader's limit; the writer checks the same."""
    size = sum(len(k.encode()) + len(v.encode()) for k, v in meta.items())
    if size > limits.max_metadata_bytes:
        raise error(f"metadata size in bytes is {size}, over the limit of {limits.max_metadata_bytes}")


def _check_unknown_keys(obj: dict, known: tuple[str, ...], what: str) -> None:
    for key in obj:
        if key not in known and not is_optional(key):
            raise UnsupportedVersionError(f"{what} has the unknown critical key {key!r}")


class TensorFile:
    """The tensors of an open container; `decode(name)` reads only that tensor's sections."""

    def __init__(self, container: Container) -> None:
        self.container = container
        self.limits: Limits = container.limits
        self.ctx = DecodeContext(self.limits, legacy_ans=container.preamble.major == 1)
        header = container.header
        _check_unknown_keys(header, BODY_KEYS + CONTAINER_KEYS, "header")
        self.metadata = self._parse_metadata(header.get("meta", {}))
        raw_tensors = header.get("tensors", {})
        if not isinstance(raw_tensors, dict):
            raise FormatError("tensors must be an object mapping names to entries")
        self.limits.check("number of tensors", len(raw_tensors), self.limits.max_tensors)
        aliases = sum(1 for raw in raw_tensors.values() if isinstance(raw, dict) and "alias" in raw)
        self.limits.check_entries("tensors", len(raw_tensors) - aliases, container.file_size, aliases)
        self.entries: dict[str, TensorEntry] = {}
        self.aliases: dict[str, str] = {}
        used: dict[int, str] = {}
        total_bytes = 0
        for name, raw in raw_tensors.items():
            if not isinstance(raw, dict):
                raise FormatError(f"tensor {name!r}: entry must be an object")
            if "alias" in raw:
                if len(raw) > 1:
                    _check_unknown_keys(raw, ("alias",), f"tensor {name!r}")
                if not isinstance(raw["alias"], str):
                    raise FormatError(f"tensor {name!r}: alias must be a tensor name")
                self.aliases[name] = raw["alias"]
                continue
            entry = tensorfile_vae.parse_vae_entry(self, name, raw) if "vae" in raw else self._parse_entry(name, raw)
            for part in entry.parts.values():
                if part.section in used:
                    raise FormatError(f"section {part.section} is used by both {used[part.section]!r} and {name!r}")
                used[part.section] = name
            total_bytes += entry.numel * entry.dtype.itemsize
            if total_bytes > self.limits.max_total_decoded_bytes:
                self.limits.check("total decoded size in bytes", total_bytes, self.limits.max_total_decoded_bytes)
            self.entries[name] = entry
        for name, target in self.aliases.items():
            if target not in self.entries:
                what = "another alias" if target in self.aliases else "no tensor"
                raise FormatError(f"tensor {name!r} is an alias of {target!r}, which is {what}")
        self.vae = tensorfile_vae.VaeIndex(self, header.get("vae"), used)
        for s in container.sections:
            if s.kind == "data" and s.index not in used:
                raise FormatError(f"section {s.index} is not used by any tensor (orphan section)")
            if s.kind != "data" and s.index in used:
                raise FormatError(f"section {s.index} of kind {s.kind!r} is used by tensor {used[s.index]!r}")
        self._check_dataset_reference(header)
        self.names = list(raw_tensors)
        self.owners = used  # section index -> the tensor (or VAE decoder/latent group) that uses it
        self.error_summary = fidelity.parse(header.get(fidelity.HEADER_KEY))

    def _check_dataset_reference(self, header: dict) -> None:
        """A `dataset` member references exactly the one section of kind "dataset" (§21); the rest
        of the member is validated by nncodec.mdl when the data is decoded."""
        indices = [s.index for s in self.container.sections if s.kind == "dataset"]
        if "dataset" not in header:
            if indices:
                raise FormatError(f"section {indices[0]} of kind 'dataset' without a dataset header member")
            return
        member = header["dataset"]
        if not isinstance(member, dict):
            raise FormatError("dataset must be an object")
        s = header_int(member.get("s"), "dataset section index", 0, max(len(self.container.sections) - 1, 0))
        if indices != [s]:
            raise FormatError(f"dataset must reference the file's one section of kind 'dataset' (sections {indices}, s = {s})")

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
            _check_unknown_keys(raw, tuple(_PART_KEYS), f"tensor {name!r} {kind}")
        section = raw.get("s")
        if type(section) is not int or not 0 <= section < len(self.container.sections):
            header_int(section, f"tensor {name!r} {kind} section index", 0, len(self.container.sections) - 1)
        codec = raw.get("codec")
        if not isinstance(codec, str):
            raise FormatError(f"tensor {name!r} {kind}: codec must be a string")
        params = raw.get("p", _NO_PARAMS)
        if not isinstance(params, dict):
            raise FormatError(f"tensor {name!r} {kind}: p must be an object")
        return Part(kind, section, codec, params)

    def _parse_dtype_shape(self, name: str, raw: dict) -> tuple[DType, tuple[int, ...]]:
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
        return dt, shape

    def _parse_entry(self, name: str, raw: dict) -> TensorEntry:
        dt, shape = self._parse_dtype_shape(name, raw)
        if "raw" in raw:
            if not raw.keys() <= _RAW_KEYS:
                _check_unknown_keys(raw, tuple(_RAW_KEYS), f"tensor {name!r}")
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
        return memoryview(self.read_section(part.section))

    def read_section(self, index: int) -> bytes:
        """Section `index` after its CRC check; a mismatch names the tensor and component it holds."""
        try:
            return self.container.read_section(index)
        except CorruptFileError as e:
            if index not in self.owners:
                raise
            name = self.owners[index]
            parts = self.entries[name].parts if name in self.entries else {}
            kind = next((k for k, p in parts.items() if p.section == index), "data")
            what = f"tensor {name!r}" if name in self.entries else repr(name)
            raise CorruptFileError(f"{what} ({kind}, section {index}): {e}") from None

    def _quantizer_values(self, e: TensorEntry) -> np.ndarray:
        """The step(s) or codebook of a quantized tensor: one step, one per index of the axis, or
        as many codebook entries as the section holds."""
        p = e.parts["quantizer"]
        if e.quant_mode == "uniform":
            count = 1 if e.quant_axis is None else e.shape[e.quant_axis]
        else:
            count = self.container.sections[p.section].length // 4
        return codecs.quantizer.decode(p.codec, p.params, self._payload(p), count, self.ctx)

    def _section_length(self, index: int) -> int:
        return self.container.sections[index].length

    def peak_bytes(self, name: str, components: bool = False) -> int:
        """The modelled peak memory of decoding tensor `name` (decode_memory.py)."""
        return decode_memory.tensor_peak_bytes(self.resolve(name), self._section_length, components)

    def check_memory_for_all(self, names: list[str]) -> None:
        """Before decoding several tensors that are all kept (load_file): their outputs together,
        plus the largest single decode's extra working memory, must fit the cap and free memory."""
        kept, extra = 0, 0
        for name in dict.fromkeys(self.aliases.get(n, n) for n in names):
            e = self.resolve(name)
            out = e.numel * e.dtype.itemsize
            kept += out
            extra = max(extra, decode_memory.tensor_peak_bytes(e, self._section_length) - out)
        decode_memory.check(f"{len(names)} tensors", kept + extra, self.limits)

    def components_of(self, e: TensorEntry) -> CompressedTensor:
        """The components of a raw or quantized entry (a VAE entry: its residual), decoded and
        checked against each other (levels as int32)."""
        ctx = self.ctx
        if "raw" in e.parts:
            p = e.parts["raw"]
            words = codecs.raw.decode(p.codec, p.params, self._payload(p), e.dtype, e.numel, ctx)
            return RawTensor(e.dtype, e.shape, words)
        mask, pip = None, None
        survivors = e.numel
        if "pip" in e.parts:
            pip = self._pip_of(e)
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

    def decode_components(self, name: str) -> CompressedTensor | VaeTensor:
        """The components of tensor `name`, decoded and checked against each other (int64 levels).

        Like `decode`, refused before decoding when its modelled peak memory does not fit, and an
        out-of-memory failure is a LimitExceededError."""
        e = self.resolve(name)
        if e.vae_group is not None:
            return VaeTensor(e.dtype, e.shape, e.vae_group, self.vae.residual(e))
        need = decode_memory.tensor_peak_bytes(e, self._section_length, components=True)
        decode_memory.check(f"the components of tensor {name!r}", need, self.limits)
        try:
            t = self.components_of(e)
            if isinstance(t, QuantTensor):
                t = replace(t, levels=as_int64(t.levels))
        except MemoryError:
            raise LimitExceededError(f"out of memory while decoding tensor {name!r} (about {need} bytes)") from None
        return t

    def decode_pip(self, name: str) -> codecs.pip.Pip | None:
        """The inclusion probabilities of tensor `name` (only its pip section is read), None if it has none."""
        e = self.resolve(name)
        if "pip" not in e.parts:
            return None
        decode_memory.check(f"the inclusion probabilities of {name!r}", 16 * e.numel, self.limits)
        return self._pip_of(e)

    def _pip_of(self, e: TensorEntry) -> codecs.pip.Pip:
        p = e.parts["pip"]
        return codecs.pip.decode(p.codec, p.params, self._payload(p), e.numel, self.ctx)

    def decode(self, name: str) -> tuple[DType, tuple[int, ...], np.ndarray]:
        """(dtype, shape, flat storage words) of tensor `name`.

        The decoder's modelled peak memory (output, masks, levels, streams: decode_memory.py) is
        checked against `Limits.max_decode_memory_bytes` and the free memory before anything is
        allocated (a few bytes can declare a huge constant tensor), and running out of memory while
        decoding is reported as LimitExceededError rather than escaping as MemoryError.
        """
        e = self.resolve(name)
        need = decode_memory.tensor_peak_bytes(e, self._section_length)
        decode_memory.check(f"tensor {name!r}", need, self.limits)
        return self.decode_entry(e)

    def decode_entry(self, e: TensorEntry) -> tuple[DType, tuple[int, ...], np.ndarray]:
        """(dtype, shape, flat storage words) of a resolved entry, after the memory check."""
        try:
            if e.vae_group is not None:
                return e.dtype, e.shape, self.vae.decode_tensor(e)
            t = self.components_of(e)
            words = t.words if isinstance(t, RawTensor) else dequantize(t)
        except MemoryError:
            raise LimitExceededError(f"out of memory while decoding tensor {e.name!r}") from None
        return t.dtype, t.shape, words

    # ------------------------------------------------------------------------------- info

    SPARSITY_BUDGET = 2**24  # elements `info` decodes, over all tensors, to report sparsity

    def _quant_fields(self, e: TensorEntry, budget: list[int]) -> dict:
        """step(s) or codebook size and the fraction of zero weights of a quantized tensor, for
        `info`. Sparsity needs the components decoded, so it is reported only while the tensors
        decoded for it total at most SPARSITY_BUDGET elements (`budget[0]` is what is left): a small
        file declaring thousands of big tensors must not make `info` decode them all."""
        if "raw" in e.parts or e.vae_group is not None:
            return {}
        if e.numel > budget[0]:
            values, nonzero = self._quantizer_values(e), None
        else:
            budget[0] -= e.numel
            try:
                t = self.components_of(e)
            except MemoryError:
                raise LimitExceededError(f"out of memory while decoding tensor {e.name!r} for its sparsity") from None
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
        budget = [self.SPARSITY_BUDGET]
        for name in self.names:
            if name in self.aliases:
                tensors.append({"name": name, "alias": self.aliases[name], "bytes": 0, "components": []})
                continue
            e = self.entries[name]
            comps = [{"kind": p.kind, "codec": p.codec, "bytes": c.sections[p.section].length,
                      **({"params": p.params} if p.params else {})} for p in e.parts.values()]
            total = sum(x["bytes"] for x in comps)
            encoding = "raw" if "raw" in e.parts else f"quantized/{e.quant_mode}"
            if e.vae_group is not None:
                encoding = f"vae/group {e.vae_group}" + (" + residual" if e.parts else "")
            tensors.append({"name": name, "dtype": e.dtype.name, "shape": list(e.shape), "numel": e.numel,
                            "encoding": encoding,
                            "bytes": total, "bits_per_param": 8 * total / e.numel if e.numel else 0.0,
                            **({"pip_bytes": c.sections[e.parts["pip"].section].length} if "pip" in e.parts else {}),
                            **self._quant_fields(e, budget), "components": comps})
        optional = [{"index": s.index, "kind": s.kind, "bytes": s.length} for s in c.sections if is_optional(s.kind)]
        dataset = sum(s.length for s in c.sections if s.kind == "dataset")
        padding = sum(n for _, n in c.padding)
        report = {
            "file_bytes": c.file_size,
            "version": f"{c.preamble.major}.{c.preamble.minor}",
            "preamble_bytes": PREAMBLE_SIZE,
            "header_bytes": c.header_bytes,
            "header_encoding": "zstd" if c.preamble.header_encoding else "json",
            "padding_bytes": padding,
            "optional_section_bytes": sum(o["bytes"] for o in optional),
            **({"dataset_bytes": dataset} if "dataset" in c.header else {}),
            "tensors": tensors,
            "metadata": self.metadata,
        }
        if self.error_summary is not None:
            member = c.header.get(fidelity.HEADER_KEY)
            report["error"] = self.error_summary
            # its JSON text in the header, with key and comma (before the header's zstd compression, if any)
            report["error_header_bytes"] = len(strict_json.dumps({fidelity.HEADER_KEY: member})) - 1
        if self.vae.groups or self.vae.archs:
            report["vae"] = tensorfile_vae.vae_report(self.vae, tensors)
        accounted = (PREAMBLE_SIZE + c.header_bytes + padding + report["optional_section_bytes"] + dataset + sum(t["bytes"] for t in tensors)
                     + report.get("vae", {}).get("decoder_bytes", 0) + report.get("vae", {}).get("latent_bytes", 0))
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

