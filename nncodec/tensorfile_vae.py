"""The `vae` header member and VAE tensor entries (spec §19): writing, validating, decoding.

Kept apart from `tensorfile` so that layer stays about plain tensors; `TensorFile` calls in here
through a few hooks. A model of a collection decodes alone: decoding one of its tensors reads the
shared decoder (once per file) and that model's latents (once per group), nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from . import codecs, decode_memory
from .codecs import decoder as decoder_codec
from .codecs import latent as latent_codec
from .codecs.base import EncodeOptions
from .components import CompressedTensor, QuantTensor, check_quant_consistency, dequantize_float32, float32_to_words
from .container.format import is_optional
from .container.reader import header_int
from .errors import BadArgumentError, CorruptFileError, FormatError, UnsupportedVersionError
from .vae_components import VaeSet, VaeTensor

if TYPE_CHECKING:
    from .tensorfile import Part, TensorEntry, TensorFile


VAE_KEYS = ("decoders", "groups")
DECODER_KEYS = ("chunk", "latent", "layers", "tensors")
GROUP_KEYS = ("decoder", "chunks", "latent", "model")
ENTRY_KEYS = ("dtype", "shape", "vae", "q", "mask", "levels", "quantizer")

AddPart = Callable[[codecs.Encoded], dict]
EncodeEntry = Callable[[str, CompressedTensor], dict]


# ----------------------------------------------------------------------------------- writing


def chunk_count(numel: int, chunk: int) -> int:
    return -(-numel // chunk)


def encode_vae_entry(name: str, t: VaeTensor, encode_residual: EncodeEntry) -> dict:
    """`{"dtype", "shape", "vae": group}` plus the residual's quantized parts, if any."""
    entry: dict = {"dtype": t.dtype.name, "shape": [int(d) for d in t.shape], "vae": int(t.group)}
    if t.residual is not None:
        r = t.residual
        if r.dtype != t.dtype or tuple(r.shape) != tuple(t.shape):
            raise BadArgumentError(f"tensor {name!r}: residual dtype/shape differ from the tensor's")
        entry.update({k: v for k, v in encode_residual(name, r).items() if k not in ("dtype", "shape")})
    return entry


def encode_vae_header(vae: VaeSet, group_numels: list[int], add: AddPart, encode_entry: EncodeEntry,
                      options: EncodeOptions) -> dict:
    """The `vae` header member; decoder weights and latents are added as sections via `add`."""
    decoders = []
    for i, d in enumerate(vae.decoders):
        arch = decoder_codec.Arch(int(d.chunk), int(d.latent), tuple(tuple(x) for x in d.layers))
        decoder_codec.parse_arch(arch.to_json(), f"decoder {i}")  # refuse what a reader would refuse
        decoder_codec.check_shapes(arch, {n: tuple(w.shape) for n, w in d.weights.items()}, f"decoder {i}")
        obj = arch.to_json()
        obj["tensors"] = {n: encode_entry(f"decoder {i}/{n}", w) for n, w in d.weights.items()}
        decoders.append(obj)
    groups = []
    for g, grp in enumerate(vae.groups):
        if not 0 <= grp.decoder < len(vae.decoders):
            raise BadArgumentError(f"group {g}: no decoder {grp.decoder}")
        d = vae.decoders[grp.decoder]
        chunks = chunk_count(group_numels[g], d.chunk)
        if tuple(grp.latents.levels.shape) != (chunks, d.latent):
            raise BadArgumentError(f"group {g}: latents of shape {grp.latents.levels.shape}, need {(chunks, d.latent)}")
        obj = {"decoder": grp.decoder, "chunks": chunks, "latent": add(latent_codec.encode(grp.latents.levels,
                                                                                         grp.latents.step, options))}
        if grp.model:
            obj["model"] = grp.model
        groups.append(obj)
    return {"decoders": decoders, "groups": groups}


# ----------------------------------------------------------------------------------- reading


def _check_keys(obj: dict, known: tuple[str, ...], what: str) -> None:
    for key in obj:
        if key not in known and not is_optional(key):
            raise UnsupportedVersionError(f"{what} has the unknown critical key {key!r}")


def parse_vae_entry(tf: TensorFile, name: str, raw: dict) -> TensorEntry:
    """A tensor entry with a `vae` member: a float dtype, a group index, an optional residual."""
    from .tensorfile import TensorEntry

    _check_keys(raw, ENTRY_KEYS, f"tensor {name!r}")
    group = header_int(raw.get("vae"), f"tensor {name!r} vae group")
    residual = {k: v for k, v in raw.items() if k != "vae"}
    if any(k in raw for k in ("q", "levels", "quantizer", "mask")):
        e = tf._parse_entry(name, residual)
        if "raw" in e.parts:
            raise FormatError(f"tensor {name!r}: a vae tensor's residual must be quantized")
        return TensorEntry(e.name, e.dtype, e.shape, e.parts, e.quant_mode, e.quant_axis, vae_group=group)
    dt, shape = tf._parse_dtype_shape(name, raw)
    if dt.kind != "f":
        raise FormatError(f"tensor {name!r}: vae tensors must have a float dtype")
    return TensorEntry(name, dt, shape, {}, vae_group=group)


class VaeIndex:
    """The decoders and groups of a file, validated against its tensors before anything is read."""

    def __init__(self, tf: TensorFile, raw: object, used: dict[int, str]) -> None:
        self.tf = tf
        vae_entries = [e for e in tf.entries.values() if e.vae_group is not None]
        if raw is None:
            if vae_entries:
                raise FormatError(f"tensor {vae_entries[0].name!r} is a vae tensor but the file has no vae member")
            raw = {"decoders": [], "groups": []}
        if not isinstance(raw, dict):
            raise FormatError("vae must be an object")
        _check_keys(raw, VAE_KEYS, "vae")
        decoders, groups = raw.get("decoders", []), raw.get("groups", [])
        if not isinstance(decoders, list) or not isinstance(groups, list):
            raise FormatError("vae decoders and groups must be lists")
        tf.limits.check("number of vae groups and decoders", len(decoders) + len(groups), tf.limits.max_tensors)
        self.archs: list[decoder_codec.Arch] = []
        self.weights: list[dict[str, TensorEntry]] = []
        self.macs: list[int] = []

        def use(part: Part, owner: str) -> None:
            if part.section in used:
                raise FormatError(f"section {part.section} is used by both {used[part.section]!r} and {owner!r}")
            used[part.section] = owner

        total = sum(e.nbytes for e in tf.entries.values())
        for i, d in enumerate(decoders):
            what = f"decoder {i}"
            if not isinstance(d, dict):
                raise FormatError(f"{what} must be an object")
            _check_keys(d, DECODER_KEYS, what)
            arch = decoder_codec.parse_arch(d, what, tf.limits)
            tensors = d.get("tensors")
            if not isinstance(tensors, dict):
                raise FormatError(f"{what}: tensors must be an object")
            tf.limits.check(f"{what} tensors", len(tensors), 2 * tf.limits.max_vae_layers)
            entries = {}
            for n, e_raw in tensors.items():
                if not isinstance(e_raw, dict) or "vae" in e_raw or "alias" in e_raw:
                    raise FormatError(f"{what} tensor {n!r}: must be a raw or quantized entry (nesting depth 1)")
                e = tf._parse_entry(f"{what}/{n}", e_raw)
                if e.dtype.kind != "f":
                    raise FormatError(f"{what} tensor {n!r}: decoder weights must have a float dtype")
                for part in e.parts.values():
                    use(part, f"{what}/{n}")
                entries[n] = e
            self.macs.append(decoder_codec.check_shapes(arch, {n: e.shape for n, e in entries.items()}, what, tf.limits))
            total += sum(e.nbytes for e in entries.values())  # decoder weights count too
            tf.limits.check("total decoded size in bytes", total, tf.limits.max_total_decoded_bytes)
            self.archs.append(arch)
            self.weights.append(entries)
        self.groups: list[dict] = []
        self.members: list[list[TensorEntry]] = [[] for _ in groups]
        for e in vae_entries:
            if e.vae_group >= len(groups):
                raise FormatError(f"tensor {e.name!r}: no vae group {e.vae_group}")
            self.members[e.vae_group].append(e)
        for g, grp in enumerate(groups):
            what = f"vae group {g}"
            if not isinstance(grp, dict):
                raise FormatError(f"{what} must be an object")
            _check_keys(grp, GROUP_KEYS, what)
            if "latent" not in grp:
                raise FormatError(f"{what}: missing latent part")
            dec = header_int(grp.get("decoder"), f"{what} decoder", 0, max(len(self.archs) - 1, 0))
            if not self.archs:
                raise FormatError(f"{what}: the file has no decoder")
            chunks = header_int(grp.get("chunks"), f"{what} chunks")
            total = sum(e.numel for e in self.members[g])
            need = chunk_count(total, self.archs[dec].chunk)
            if chunks != need:
                raise FormatError(f"{what}: {chunks} chunks of {self.archs[dec].chunk} decode "
                                  f"{chunks * self.archs[dec].chunk} values, but its tensors hold {total} (need {need} chunks)")
            decoder_codec.check_work(self.macs[dec], chunks, what, tf.limits)
            model = grp.get("model", "")
            if not isinstance(model, str):
                raise FormatError(f"{what}: model must be a string")
            part = tf._parse_part(what, "latent", grp["latent"])
            use(part, what)
            self.groups.append({"decoder": dec, "chunks": chunks, "latent": part, "model": model})
        self.offsets: dict[str, int] = {}  # where each VAE tensor starts in its group's decoder output
        for members in self.members:
            start = 0
            for e in members:
                self.offsets[e.name] = start
                start += e.numel
        self._decoder_cache: dict[int, dict[str, np.ndarray]] = {}
        self._group_cache: dict[int, np.ndarray] = {}

    # ------------------------------------------------------------------------------- decode

    def decoder_weights(self, d: int) -> dict[str, np.ndarray]:
        """The decoded weights of decoder d (decoded once per file)."""
        if d not in self._decoder_cache:
            out = {}
            need = sum(e.numel * 8 for e in self.weights[d].values())  # widened to float64 to run
            decode_memory.check(f"the weights of VAE decoder {d}", need, self.tf.limits)
            for n, e in self.weights[d].items():
                dt, shape, words = self.tf.decode_entry(e)
                out[n] = float_values(dt.name, words).reshape(shape)
            self._decoder_cache[d] = out
        return self._decoder_cache[d]

    def latents(self, g: int) -> tuple[np.ndarray, float]:
        grp = self.groups[g]
        part = grp["latent"]
        count = grp["chunks"] * self.archs[grp["decoder"]].latent
        return latent_codec.decode(part.codec, part.params, self.tf._payload(part), count, self.tf.ctx)

    def group_values(self, g: int) -> np.ndarray:
        """The decoder's float32 output for group g, flattened (chunks x chunk values)."""
        if g not in self._group_cache:
            grp = self.groups[g]
            arch = self.archs[grp["decoder"]]
            levels, step = self.latents(g)
            z = levels.reshape(grp["chunks"], arch.latent).astype(np.float32) * np.float32(step)
            self._group_cache[g] = decoder_codec.run(arch, self.decoder_weights(grp["decoder"]), z).reshape(-1)
        return self._group_cache[g]

    def decoded_float32(self, e: TensorEntry) -> np.ndarray:
        """The tensor's float32 values: its slice of the decoder output, plus the residual."""
        start = self.offsets[e.name]
        d = self.group_values(e.vae_group)[start : start + e.numel]
        if "levels" not in e.parts:
            return d.copy()
        r = self.tf.components_of(e)
        with np.errstate(over="ignore"):
            return d + dequantize_float32(r)

    def decode_tensor(self, e: TensorEntry) -> np.ndarray:
        return float32_to_words(self.decoded_float32(e), e.dtype)

    def residual(self, e: TensorEntry) -> QuantTensor | None:
        if "levels" not in e.parts:
            return None
        r = self.tf.components_of(e)
        check_quant_consistency(r, CorruptFileError)
        return r



def vae_report(index: VaeIndex, tensors: list[dict]) -> dict:
    """Decoder, latent and residual bytes for `info` (decoder and latent bytes belong to no tensor;
    residual bytes are the VAE tensors' own parts and are already in their rows)."""
    c = index.tf.container
    decoders = []
    for i, entries in enumerate(index.weights):
        comps = [{"name": n, "kind": p.kind, "codec": p.codec, "bytes": c.sections[p.section].length}
                 for n, e in entries.items() for p in e.parts.values()]
        decoders.append({"index": i, **index.archs[i].to_json(), "bytes": sum(x["bytes"] for x in comps),
                         "parameters": sum(e.numel for e in entries.values()), "components": comps})
    groups = []
    for g, grp in enumerate(index.groups):
        groups.append({"index": g, "model": grp["model"], "decoder": grp["decoder"], "chunks": grp["chunks"],
                       "latent_numbers": grp["chunks"] * index.archs[grp["decoder"]].latent,
                       "parameters": sum(e.numel for e in index.members[g]),
                       "latent_bytes": c.sections[grp["latent"].section].length, "latent_codec": grp["latent"].codec})
    vae_names = {e.name for members in index.members for e in members}
    return {"decoders": decoders, "groups": groups,
            "decoder_bytes": sum(d["bytes"] for d in decoders),
            "latent_bytes": sum(g["latent_bytes"] for g in groups),
            "residual_bytes": sum(t["bytes"] for t in tensors if t["name"] in vae_names)}


def float_values(dtype_name: str, words: np.ndarray) -> np.ndarray:
    """The values of float storage words (bfloat16 widened exactly to float32)."""
    if dtype_name == "bfloat16":
        return (words.astype(np.uint32) << 16).view(np.float32)
    return words.view({"float32": "<f4", "float64": "<f8", "float16": "<f2"}[dtype_name])
