"""Writing a .nnc file: compressed tensors in, file bytes out. Every entry is checked against what
the reader accepts (names, shapes, limits), and the finished file is re-opened with the default
limits (`readable`), so the writer never produces a file that readers refuse."""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from . import codecs, parallel, tensorfile_vae
from .codecs.base import EncodeOptions
from .components import CompressedTensor, QuantTensor, RawTensor, check_quant_consistency
from .container.format import is_optional
from .container.writer import Sections, StreamingFile, lay_out
from .dtypes import DTYPES, DType
from .errors import BadArgumentError, NNCodecError
from .limits import DEFAULT_LIMITS
from .tensorfile import check_metadata_size, open_tensor_file
from .vae_components import VaeSet, VaeTensor


@dataclass(frozen=True)
class Alias:
    """A tensor whose value is another tensor's (tied weights are stored once)."""

    target: str


Item = tuple[str, "CompressedTensor | Alias | VaeTensor"]


def encode_file(tensors: dict[str, CompressedTensor | Alias | VaeTensor], metadata: dict[str, str] | None = None,
                options: EncodeOptions = codecs.DEFAULT_OPTIONS, align: int = 1,
                progress: Callable[[str], None] | None = None, optional: dict | None = None,
                vae: VaeSet | None = None) -> bytes:
    """The bytes of a .nnc file holding `tensors` (in their given order) and string `metadata`.
    `progress(name)` is called after each tensor is coded (the CLI's progress bar); `optional` holds
    optional ("x-") header members, such as the lossy error summary of nncodec.fidelity; `vae` holds
    the decoders and latent groups that VaeTensor entries refer to (spec §19)."""
    store = Sections()
    body, min_bytes = encode_body(tensors.items(), store, metadata, options, progress, optional, vae)
    plan = lay_out(body, store, align=align, min_file_bytes=min_bytes, minor=format_minor(body["tensors"]))
    return readable(plan.read(store, 0, plan.file_length))


def encode_to_path(items: Iterable[Item], path: str | os.PathLike, metadata: dict[str, str] | None = None,
                   options: EncodeOptions = codecs.DEFAULT_OPTIONS, align: int = 1,
                   progress: Callable[[str], None] | None = None, optional: dict | None = None,
                   overwrite: bool = False) -> int:
    """Stream `items` (name, components), consumed one at a time, into the .nnc file `path`: each
    section goes to a spool file as it is coded, and the file (exactly the bytes `encode_file` gives
    for the same tensors) is moved into place only once complete. Returns the file size."""
    with StreamingFile(path, overwrite=overwrite) as out:
        body, min_bytes = encode_body(items, out.sections, metadata, options, progress, optional)
        return out.finish(body, align=align, min_file_bytes=min_bytes, check=readable_file,
                          minor=format_minor(body["tensors"]))


def encode_body(items: Iterable[Item], store: Sections, metadata: dict[str, str] | None = None,
                options: EncodeOptions = codecs.DEFAULT_OPTIONS, progress: Callable[[str], None] | None = None,
                optional: dict | None = None, vae: VaeSet | None = None) -> tuple[dict, int]:
    """Code every tensor of `items` in order into `store`; returns the header body and the file size
    that readers require for its entries."""

    def add(kind: str, enc: codecs.Encoded) -> dict:
        part = {"s": store.add(enc.payload), "codec": enc.codec}
        if enc.params:
            part["p"] = enc.params
        return part

    if metadata:
        for key, value in metadata.items():
            _check_text(key, "metadata key")
            _check_text(value, f"metadata value of {key!r}")
        check_metadata_size(metadata, DEFAULT_LIMITS, BadArgumentError)  # before the slow part

    def entry_of(name: str, t: CompressedTensor) -> dict:
        return encode_entry(name, t, options, add)

    entries: dict[str, dict] = {}
    aliases = 0
    group_numels = [0] * (len(vae.groups) if vae else 0)
    for name, t, coded in code_entries(items, options):
        _check_text(name, "tensor name")
        if name in entries:
            raise BadArgumentError(f"two tensors are named {name!r}")
        if coded is not None:  # a raw or quantized tensor, coded by code_entries (maybe on another thread)
            entry, recorded = coded
            for part, payload in recorded:
                part["s"] = store.add(payload)
            entries[name] = entry
        elif isinstance(t, Alias):
            entries[name] = {"alias": t.target}
            aliases += 1
        elif isinstance(t, VaeTensor):
            if vae is None or not 0 <= t.group < len(vae.groups):
                raise BadArgumentError(f"tensor {name!r}: vae group {t.group} is not in the file's VaeSet")
            group_numels[t.group] += t.numel
            entries[name] = tensorfile_vae.encode_vae_entry(name, t, entry_of)
        else:  # neither raw, quantized, alias nor VAE: refused
            _check_writable(name, t)
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
    return body, DEFAULT_LIMITS.entry_bytes(len(entries) - aliases, aliases)


Recorded = list[tuple[dict, bytes]]  # (part object, payload) per section of one tensor, "s" to be set
_BATCH_BYTES = 64 * 2**20  # input bytes of small tensors coded concurrently at most (memory stays bounded)
_AHEAD_BYTES = 64 * 2**20  # input bytes of large tensors coded ahead of the one the caller is writing


def code_entries(items: Iterable[tuple[str, object]], options: EncodeOptions) -> Iterator[tuple[str, object, tuple[dict, Recorded] | None]]:
    """(name, tensor, (entry, recorded sections)) per item, in input order, using `options.threads`
    threads: runs of small raw/quantized tensors are coded concurrently (one tensor per thread), a tensor
    larger than a chunk with its chunks in parallel (§23); with more than one thread, large tensors of at
    most _AHEAD_BYTES are coded ahead on a helper thread (up to _AHEAD_BYTES of input in flight) while
    the caller reads the next tensor and writes the last one's sections. Other items (Alias,
    VaeTensor) come back with None, for the caller to handle. The caller appends each recorded payload
    as the next section and sets its part's "s": the bytes are the same for any number of threads.
    Items are pulled lazily: at most one batch (64 MiB of input) plus the look-ahead is held."""
    batch: list[tuple[str, CompressedTensor]] = []
    size = 0
    ahead: deque[tuple[int, Future]] = deque()  # (input bytes, future of _code_one), in input order
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nncodec-ahead") if parallel.resolve(options.threads) > 1 else None

    def drain(keep: int) -> Iterator[tuple[str, object, tuple[dict, Recorded]]]:
        """The coded tensors ahead, in order, until at most `keep` input bytes are still in flight."""
        while ahead and sum(n for n, _ in ahead) > keep:
            yield ahead.popleft()[1].result()

    def flush() -> Iterator[tuple[str, object, tuple[dict, Recorded]]]:
        yield from drain(0)
        yield from parallel.map_sized(lambda item: _code_one(*item, options), batch,
                                      [_input_bytes(t) for _, t in batch], options.threads)

    try:
        for name, t in items:
            if not isinstance(t, (RawTensor, QuantTensor)):
                yield from flush()
                batch, size = [], 0
                yield name, t, None
                continue
            nbytes = _input_bytes(t)
            if batch and (nbytes > options.chunk_bytes or size + nbytes > _BATCH_BYTES):
                yield from flush()
                batch, size = [], 0
            if nbytes <= options.chunk_bytes:
                batch.append((name, t))
                size += nbytes
            elif pool is None or nbytes > _AHEAD_BYTES:  # (a huge tensor is not held beside another)
                yield from drain(0)
                yield _code_one(name, t, options)
            else:
                yield from drain(max(0, _AHEAD_BYTES - nbytes))
                ahead.append((nbytes, pool.submit(_code_one, name, t, options)))
        yield from flush()
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _input_bytes(t: object) -> int:
    shape = getattr(t, "shape", ())
    dt = getattr(t, "dtype", None)
    return math.prod(shape) * (dt.itemsize if isinstance(dt, DType) else 8)


def _code_one(name: str, t: CompressedTensor, options: EncodeOptions) -> tuple[str, object, tuple[dict, Recorded]]:
    recorded: Recorded = []

    def record(kind: str, enc: codecs.Encoded) -> dict:
        part: dict = {"s": None, "codec": enc.codec}
        if enc.params:
            part["p"] = enc.params
        recorded.append((part, enc.payload))
        return part

    return name, t, (encode_entry(name, t, options, record), recorded)


def encode_entry(name: str, t: CompressedTensor, options: EncodeOptions, add: Callable[[str, codecs.Encoded], dict]) -> dict:
    """The header entry of one raw or quantized tensor; `add(kind, encoded)` stores each component's
    payload as a section and returns its part object. A large raw tensor is cut into chunks (§23),
    a whole number of rows each where a row fits."""
    _check_writable(name, t)
    entry: dict = {"dtype": t.dtype.name, "shape": [int(d) for d in t.shape]}
    if isinstance(t, RawTensor):
        row = math.prod(t.shape[1:]) if len(t.shape) > 1 else 1
        entry["raw"] = add("raw", codecs.raw.encode(t.words.reshape(-1), t.dtype, options, row, parts=True))
        return entry
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


def format_minor(entries: dict[str, dict]) -> int:
    """The format 2.x minor version a file with these header entries needs (§12: writers write the
    minor whose features they use): 2 with a `pairs` stream (§9.1), 1 with a chunked tensor (§23) or a
    float8 dtype, else 0."""
    minor = 0
    for entry in entries.values():
        raw = entry.get("raw")
        if isinstance(raw, dict) and raw.get("codec") == codecs.chunks.CODEC:
            minor = 1
            if any(_uses_pairs(c[2], c[3] if len(c) > 3 else {}) for c in raw["p"]["chunks"]):
                return 2
        elif isinstance(raw, dict) and _uses_pairs(raw.get("codec"), raw.get("p", {})):
            return 2
        dt = DTYPES.get(entry.get("dtype"))
        if dt is not None and dt.minor:
            minor = 1
    return minor


def _uses_pairs(codec: object, params: dict) -> bool:
    return codec == "planes" and any(method == codecs.pairs.METHOD for method, _ in params["streams"])


def readable(data: bytes) -> bytes:
    """`data`, once a reader with the default limits has accepted its header: the writer never
    produces a file that the reader refuses (too many tensors for the file size, a huge header...)."""
    readable_file(data)
    return data


def readable_file(source: bytes | str) -> None:
    """Refuse (BadArgumentError) a file, as bytes or a path, that readers with the default limits refuse."""
    try:
        tf = open_tensor_file(source, DEFAULT_LIMITS)
        tf.validate_all()  # an indexed header checks its entries when they are used: check them all now
        tf.container.close()
    except NNCodecError as e:
        raise BadArgumentError(f"refusing to write a file that readers with the default limits refuse: {e}") from None


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
    if not isinstance(t.dtype, DType) or (DTYPES.get(t.dtype.name) is not t.dtype and DTYPES.get(t.dtype.name) != t.dtype):
        raise BadArgumentError(f"tensor {name!r}: unknown dtype {t.dtype!r}")
    if (not isinstance(t.shape, tuple) or len(t.shape) > DEFAULT_LIMITS.max_ndim
            or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and 0 <= d < 2**53 for d in t.shape)):
        raise BadArgumentError(f"tensor {name!r}: shape must be a tuple of at most {DEFAULT_LIMITS.max_ndim} "
                               f"integers in [0, 2**53), got {t.shape!r}")
    numel = math.prod(int(d) for d in t.shape)  # (Python ints: no overflow)
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
