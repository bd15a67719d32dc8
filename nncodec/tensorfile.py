"""Tensors in a container: which sections hold which component of which tensor.

This layer maps names to components and components to sections, and validates every reference
(each section used exactly once, sizes and shapes within limits) before anything is decoded; one
entry's own rules are in entries.py.
It knows component kinds by name only; the codecs know how their bytes work.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from . import byte_report, chunk_reads, codecs, decode_memory, fidelity, tensorfile_vae
from .codecs.base import DecodeContext
from .components import (
    CompressedTensor,
    Quantizer,
    QuantTensor,
    RawTensor,
    as_int64,
    check_quant_consistency,
    dequantize,
)
from .container.reader import CONTAINER_KEYS, Container, header_int
from .dtypes import DType
from .entries import EntryParsing, Part, TensorEntry, check_metadata_size, check_unknown_keys
from .errors import (
    CorruptFileError,
    FormatError,
    LimitExceededError,
)
from .limits import Limits
from .vae_components import VaeTensor

_UNREAD = object()  # (_load: the entry object is still to be read)
BODY_KEYS = ("tensors", "meta", "vae", "dataset")  # "dataset": a coded data set (§21, nncodec.mdl)
__all__ = ["Part", "TensorEntry", "TensorFile", "check_metadata_size", "open_tensor_file"]


class TensorFile(EntryParsing):
    """The tensors of an open container; `decode(name)` reads only that tensor's sections.

    Entries are parsed and validated when first used (`resolve`); `validate_all` makes every
    whole-file check (each data section used exactly once, alias targets, the total decoded size,
    the VAE member) and runs before anything that touches every tensor (`load_file`, `info`,
    `verify`). A JSON header is parsed whole anyway, so for it `validate_all` runs at open,
    as it always did; an indexed header (§4.5) defers it, so opening does no per-entry Python work
    (the header's CRC and a few numpy views of its arrays)."""

    def __init__(self, container: Container, threads: int | None = None) -> None:
        self.container = container
        self.limits: Limits = container.limits
        self.ctx = DecodeContext(self.limits, legacy_ans=container.preamble.major == 1, threads=threads)
        header = container.header
        check_unknown_keys(header, BODY_KEYS + CONTAINER_KEYS, "header")
        self.metadata = self._parse_metadata(header.get("meta", {}))
        self._index = container.index
        if self._index is None:
            raw_tensors = header.get("tensors", {})
            if not isinstance(raw_tensors, dict):
                raise FormatError("tensors must be an object mapping names to entries")
            self.limits.check("number of tensors", len(raw_tensors), self.limits.max_tensors)
            self._json_entries: dict = raw_tensors
        self._entries: dict[str, TensorEntry] = {}  # validated entries, filled as they are used
        self._aliases: dict[str, str] = {}
        self._section_owner: dict[int, str] = {}  # data sections of the entries validated so far
        self._names: list[str] | None = None
        self._vae: tensorfile_vae.VaeIndex | None = None
        self._all_checked = False
        self._check_dataset_reference(header)
        self.error_summary = fidelity.parse(header.get(fidelity.HEADER_KEY))
        if self._index is None:
            self.validate_all()

    # ------------------------------------------------------------------ lazy entries (§4.5, §10)

    @property
    def names(self) -> list[str]:
        """Every tensor name in file order (UTF-8, distinct)."""
        if self._names is None:
            self._names = list(self._json_entries) if self._index is None else self._index.all_names()
        return self._names

    def _raw_entry(self, name: str) -> object:
        """The entry object of tensor `name` as stored (KeyError if there is none)."""
        if self._index is None:
            return self._json_entries[name]
        i = self._index.find(name)
        if i is None:
            raise KeyError(name)
        return self._index.entry(i)

    def _load(self, name: str, raw: object = _UNREAD) -> TensorEntry | str:
        """The validated entry of `name` (a TensorEntry, or an alias's target name); `raw` is its entry
        object when the caller has read it already (validate_all walks an index's entries in order)."""
        if name in self._entries:
            return self._entries[name]
        if name in self._aliases:
            return self._aliases[name]
        if raw is _UNREAD:
            try:
                raw = self._raw_entry(name)
            except KeyError:
                raise KeyError(f"no tensor named {name!r} in this file") from None
        if not isinstance(raw, dict):
            raise FormatError(f"tensor {name!r}: entry must be an object")
        if "alias" in raw:
            if len(raw) > 1:
                check_unknown_keys(raw, ("alias",), f"tensor {name!r}")
            if not isinstance(raw["alias"], str):
                raise FormatError(f"tensor {name!r}: alias must be a tensor name")
            self._aliases[name] = raw["alias"]
            return raw["alias"]
        entry = tensorfile_vae.parse_vae_entry(self, name, raw) if "vae" in raw else self._parse_entry(name, raw)
        sections = self.container.sections
        for part in entry.parts.values():
            owner = self._section_owner.get(part.section)
            if owner is not None and owner != name:
                raise FormatError(f"section {part.section} is used by both {owner!r} and {name!r}")
            kind = sections.kinds.get(part.section, "data")
            if kind != "data":
                raise FormatError(f"section {part.section} of kind {kind!r} is used by tensor {name!r}")
            self._section_owner[part.section] = name
        self._entries[name] = entry
        return entry

    def alias_of(self, name: str) -> str | None:
        """The target of alias `name`, None if `name` is not an alias (KeyError: no such tensor)."""
        got = self._load(name)
        return got if isinstance(got, str) else None

    def alias_targets(self) -> set[str]:
        """The names that aliases point at (tied weights). For an indexed header only the entries
        holding the text `"alias"` are parsed (all of them if an escape could hide it)."""
        if self._all_checked or self._index is None:
            return set(self.aliases.values())
        idx = self._index
        blob = bytes(idx.entries)
        if b"\\" in blob:
            return set(self.aliases.values())
        targets, pos, seen = set(), blob.find(b'"alias"'), set()
        while pos >= 0:
            i = int(np.searchsorted(idx.entry_ends, pos, side="right"))
            if i not in seen:
                seen.add(i)
                target = self.alias_of(idx.name(i))
                if target is not None:
                    targets.add(target)
            pos = blob.find(b'"alias"', pos + 1)
        return targets

    @property
    def entries(self) -> dict[str, TensorEntry]:
        self.validate_all()
        return self._entries

    @property
    def aliases(self) -> dict[str, str]:
        self.validate_all()
        return self._aliases

    @property
    def owners(self) -> dict[int, str]:
        """Section index -> the tensor (or VAE decoder/latent group) that uses it."""
        self.validate_all()
        return self._section_owner

    @property
    def vae(self) -> tensorfile_vae.VaeIndex:
        self.validate_all()
        return self._vae

    def validate_all(self) -> None:
        """Every entry and every whole-file rule of §6 and §5 (references): once per file."""
        if self._all_checked:
            return
        names = self.names
        aliases = 0
        total_bytes = 0
        # an index's entries in file order, each parsed as `_raw_entry` would (no name lookups)
        raws = self._index.each_entry() if self._index is not None else None
        for name in names:
            got = self._load(name) if raws is None else self._load(name, next(raws))
            if isinstance(got, str):
                aliases += 1
                continue
            total_bytes += got.nbytes
            if total_bytes > self.limits.max_total_decoded_bytes:
                self.limits.check("total decoded size in bytes", total_bytes, self.limits.max_total_decoded_bytes)
        self.limits.check_entries("tensors", len(names) - aliases, self.container.file_size, aliases)
        for name, target in self._aliases.items():
            if target not in self._entries:
                what = "another alias" if target in self._aliases else "no tensor"
                raise FormatError(f"tensor {name!r} is an alias of {target!r}, which is {what}")
        used = self._section_owner
        self._entries = {n: self._entries[n] for n in names if n in self._entries}  # file order
        self._all_checked = True  # VaeIndex reads self.entries
        try:
            self._vae = tensorfile_vae.VaeIndex(self, self.container.header.get("vae"), used)
            sections = self.container.sections
            if len(used) != len(sections) - len(sections.kinds):
                for i in range(len(sections)):
                    if i not in used and i not in sections.kinds:
                        raise FormatError(f"section {i} is not used by any tensor (orphan section)")
        except BaseException:
            self._all_checked = False
            raise

    def _check_dataset_reference(self, header: dict) -> None:
        """A `dataset` member references exactly the one section of kind "dataset" (§21); the rest
        of the member is validated by nncodec.mdl when the data is decoded."""
        indices = [i for i, kind in sorted(self.container.sections.kinds.items()) if kind == "dataset"]
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

    # ------------------------------------------------------------------------------- decode

    def resolve(self, name: str) -> TensorEntry:
        """The validated entry of tensor `name`, through an alias (KeyError if there is none)."""
        got = self._load(name)
        if isinstance(got, TensorEntry):
            return got
        try:
            target = self._load(got)
        except KeyError:
            target = None
        if not isinstance(target, TensorEntry):
            what = "another alias" if isinstance(target, str) else "no tensor"
            raise FormatError(f"tensor {name!r} is an alias of {got!r}, which is {what}")
        return target

    def _payload(self, part: Part) -> memoryview:
        return self.read_section(part.section)

    def read_section(self, index: int) -> memoryview:
        """Section `index` (no copy) after its CRC check; a mismatch names the tensor and component it holds."""
        try:
            return self.container.section_view(index)
        except CorruptFileError as e:
            if index not in self._section_owner:
                raise
            name = self._section_owner[index]
            parts = self._entries[name].parts if name in self._entries else {}
            kind = next((k for k, p in parts.items() if p.section == index), "data")
            what = f"tensor {name!r}" if name in self._entries else repr(name)
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
        return int(self.container.sections.lengths[index])  # (no Section object: this runs per tensor)

    def peak_bytes(self, name: str, components: bool = False) -> int:
        """The modelled peak memory of decoding tensor `name` (decode_memory.py)."""
        return decode_memory.tensor_peak_bytes(self.resolve(name), self._section_length, components)

    def check_memory_for_all(self, names: list[str]) -> None:
        """Before decoding several tensors that are all kept (load_file): their outputs together,
        plus the largest single decode's extra working memory, must fit the cap and free memory."""
        kept, extra = 0, 0
        aliases, entries = self.aliases, self.entries  # (validated: every alias names an entry)
        section_length = self.container.sections.lengths.tolist().__getitem__  # (Python ints, no numpy per entry)
        for name in dict.fromkeys(aliases.get(n, n) for n in names):
            e = entries[name] if name in entries else self.resolve(name)  # (resolve: KeyError for an unknown name)
            out = e.nbytes
            kept += out
            extra = max(extra, decode_memory.tensor_peak_bytes(e, section_length) - out)
        decode_memory.check(f"{len(names)} tensors", kept + extra, self.limits)

    def components_of(self, e: TensorEntry, threads: int | None = None) -> CompressedTensor:
        """The components of a raw or quantized entry (a VAE entry: its residual), decoded and
        checked against each other (levels as int32); a chunked tensor's chunks on `threads` threads."""
        ctx = self.ctx if threads is None else replace(self.ctx, threads=threads)
        if "raw" in e.parts:
            return RawTensor(e.dtype, e.shape, self._raw_words(e, threads))
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

    def _raw_words(self, e: TensorEntry, threads: int | None = None) -> np.ndarray:
        """The flat storage words of a raw entry: a chunked tensor's chunks on `threads` threads (§23: the chunk
        CRCs, checked by the workers, stand for the section's), any other payload by its codec."""
        p = e.parts["raw"]
        if p.codec == codecs.chunks.CODEC:
            return chunk_reads.decode_elements(self, e, 0, e.numel, threads, checked=True)
        return codecs.raw.decode_whole(p.codec, p.params, self._payload(p), e.dtype, e.numel, self.ctx)

    def decode_entry(self, e: TensorEntry, threads: int | None = None) -> tuple[DType, tuple[int, ...], np.ndarray]:
        """(dtype, shape, flat storage words) of a resolved entry, after the memory check."""
        try:
            if e.vae_group is not None:
                return e.dtype, e.shape, self.vae.decode_tensor(e)
            if "raw" in e.parts:  # (components_of's raw tensor, without making a RawTensor: files of many tiny ones)
                return e.dtype, e.shape, self._raw_words(e, threads)
            t = self.components_of(e, threads)
            words = t.words if isinstance(t, RawTensor) else dequantize(t)
        except MemoryError:
            raise LimitExceededError(f"out of memory while decoding tensor {e.name!r}") from None
        return t.dtype, t.shape, words

    def chunk_table(self, e: TensorEntry) -> codecs.chunks.ChunkTable | None:
        """The validated chunk table of a chunked raw entry (§23), None for any other entry."""
        p = e.parts.get("raw")
        if p is None or p.codec != codecs.chunks.CODEC:
            return None
        return codecs.chunks.parse(p.params, e.numel, self._section_length(p.section), self.limits)

    def decode_elements(self, e: TensorEntry, start: int, stop: int, threads: int | None = None) -> np.ndarray:
        """Flat storage words [start, stop) of a resolved entry. For a chunked tensor only the chunks
        covering the range are read, each after its own CRC check; other entries are decoded whole."""
        return chunk_reads.decode_elements(self, e, start, stop, threads)

    def byte_report(self) -> dict:
        """Every byte of the file attributed to a part (nncodec/byte_report.py)."""
        return byte_report.build(self)


def open_tensor_file(source, limits: Limits, threads: int | None = None) -> TensorFile:
    container = Container(source, limits)
    try:
        return TensorFile(container, threads)
    except BaseException:
        container.close()
        raise

