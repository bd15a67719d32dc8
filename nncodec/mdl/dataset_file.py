"""One .nnc file holding a dataset's description: model tensors (two-part code) and one `dataset`
section with the data range-coded under the model, described by the `dataset` header member.

`encode` returns the file's bytes and a report (the MDL curve for a two-part code); `decode`
returns the data, which it has checked against the sha256 recorded at encoding.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from .. import decode_memory
from ..api import load as load_bytes
from ..api import open as open_nnc
from ..api import save as save_bytes
from ..compress.uniform import quantize_uniform
from ..container import header_dict
from ..container.format import is_optional
from ..container.reader import CONTAINER_KEYS, Container
from ..container.writer import assemble
from ..convert import to_numpy
from ..errors import BadArgumentError, CorruptFileError, FormatError
from ..limits import DEFAULT_LIMITS, Limits
from . import env, work
from .cm import is_cm
from .codes import (
    EncodeSettings,
    auto_streams,
    check_inputs,
    code_block,
    decode_symbols,
    fit,
    prepare,
    prequential_member,
    run_prequential,
    trainee,
    verify_hash,
)
from .kinds import SideInfo, check_alphabet, kind_by_name
from .member import DatasetMember, check_spec, parse
from .models import build, load_weights
from .sides import EncodeSide
from .train import optimizer

SECTION_KIND = "dataset"
# Model compression levels tried by the two-part code: lossless, then a uniform step of
# std(w) / 2^k per tensor. The level with the smallest whole file wins (the MDL trade-off).
LEVELS: tuple[str, ...] = ("lossless", "1/4", "1/8", "1/16", "1/32", "1/64", "1/128")


@dataclass
class EncodeReport:
    code: str
    n: int
    file_bytes: int
    data_bytes: int
    model_bytes: int  # everything but the dataset section: preamble, header, model tensors
    level: str | None = None
    curve: list[dict] = field(default_factory=list)  # two-part: one row per level tried
    train_loss: float | None = None

    @property
    def bits_per_symbol(self) -> float:
        return 8 * self.file_bytes / self.n if self.n else 0.0


def _compressor(level: str) -> Callable | None:
    if level == "lossless":
        return None
    num, den = level.split("/")
    rel = float(num) / float(den)

    def compress(name: str, value):
        dt, arr = to_numpy(value, name)
        if dt.kind != "f" or arr.size == 0:
            return None
        std = float(np.std(arr.astype(np.float64)))
        return quantize_uniform(arr, dt, rel * std if std > 0 else 1.0)

    return compress


def assemble_file(model_file: bytes | None, member: DatasetMember, payload: bytes) -> bytes:
    """Model tensors (sections and header entries of `model_file`) + the dataset member and section."""
    body: dict = {"tensors": {}}
    sections: list[bytes] = []
    if model_file is not None:
        with Container(model_file) as c:
            body = {k: v for k, v in c.header.items() if k not in CONTAINER_KEYS and not is_optional(k)}
            sections = [c.read_section(s.index) for s in c.sections if s.kind == "data"]
    member = replace(member, section=len(sections))
    body["dataset"] = member.to_json()
    # the header compressed against header dictionary 1 when smaller (FORMAT §4.6): the header is part of
    # the description length, and a few hundred bytes of JSON compress poorly on their own
    return header_dict.recompress(assemble(body, [*sections, payload], kinds={len(sections): SECTION_KIND}))


def encode(data: bytes, settings: EncodeSettings, side_info: SideInfo | None = None,
           model_tensors: dict | None = None, levels: tuple[str, ...] = LEVELS,
           progress: Callable[[int], None] | None = None, log: Callable[[str], None] | None = None,
           model_file: bytes | None = None) -> tuple[bytes, EncodeReport]:
    """The .nnc file describing `data`, and what it is made of. `model_file`: a ready .nnc model
    file (compressed however its maker chose) whose tensor sections and (critical) header entries
    become the model part unchanged, repacked without alignment padding; no level search."""
    kind = kind_by_name(settings.kind)
    symbols, alphabet = kind.parse(data, side_info)
    n = len(symbols)
    inputs = side_info.array if side_info is not None else None
    if settings.prequential:
        if model_tensors is not None or model_file is not None:
            raise BadArgumentError("a prequential code stores no model: --model does not apply")
        member = prequential_member(settings, symbols, alphabet, data, side_info, 0)
        check_spec(member)
        side = EncodeSide(symbols)
        estimate = run_prequential(member, side, inputs, progress, log)
        payload = side.coder.finish()
        work.check_encoded(estimate, len(payload), DEFAULT_LIMITS)  # a default decoder must accept it
        out = assemble_file(None, member, payload)
        return out, EncodeReport("prequential", n, len(out), len(payload), len(out) - len(payload))
    spec = settings.spec or kind.default_spec(alphabet, side_info)
    if spec.get("arch") in ("mix", "cm"):
        raise BadArgumentError(f"a {spec.get('arch')} model is for the prequential code only (--prequential)")
    model = build(spec, settings.seed)
    inputs = prepare(model, inputs)  # features of all inputs, once (every level's model reads the same)
    loss = None
    if model_file is not None:
        if model_tensors is not None:
            raise BadArgumentError("give model tensors or a model file, not both")
        model_tensors, levels = load_bytes(model_file), ("as given",)
    if model_tensors is None:
        import torch

        gen = torch.Generator().manual_seed(settings.seed)
        learner = trainee(model, settings.train)  # with iterate averaging, `model` gets the mean
        loss = fit(learner, settings.kind, symbols, n, settings.train, optimizer(learner, settings.train), gen, inputs,
                   coding=model)
        if log:
            log(f"trained: final loss {loss:.4f} nats/symbol")
    else:
        load_weights(model, model_tensors)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    member = DatasetMember(0, settings.kind, "two-part", n, alphabet, hashlib.sha256(data).hexdigest(), spec,
                           settings.seed, env.current(), settings.streams or auto_streams(n),
                           side_info.describe() if side_info else None)
    check_spec(member)
    cost = work.estimate(member, work.model_costs(model, member.kind, inputs))  # the architecture's: every level's
    best: tuple[bytes, EncodeReport] | None = None
    curve = []
    for level in levels:
        model_part = model_file if level == "as given" else save_bytes(state, compressor=_compressor(level))
        decoded = build(spec, settings.seed)  # the encoder codes under the model as the decoder will see it
        load_weights(decoded, load_bytes(model_part))
        side = EncodeSide(symbols)
        code_block(decoded, member, side, 0, n, inputs, progress)
        payload = side.coder.finish()
        work.check_encoded(cost, len(payload), DEFAULT_LIMITS)
        out = assemble_file(model_part, member, payload)
        row = {"level": level, "model_bytes": len(out) - len(payload), "data_bytes": len(payload), "file_bytes": len(out)}
        curve.append(row)
        if log:
            log(f"level {level:>8}: model part {row['model_bytes']:,} B + data {row['data_bytes']:,} B = {len(out):,} B")
        if best is None or len(out) < len(best[0]):
            best = (out, EncodeReport("two-part", n, len(out), len(payload), len(out) - len(payload), level, curve, loss))
    assert best is not None
    best[1].curve = curve
    return best


def read_member(f) -> tuple[DatasetMember, Container]:
    container = f._tf.container
    if "dataset" not in container.header:
        raise BadArgumentError("this .nnc file holds no dataset (it is a plain model file)")
    return parse(container.header["dataset"], len(container.sections)), container


def _check_size(member: DatasetMember, payload_bytes: int, limits: Limits) -> None:
    """Refuse a symbol count the payload cannot hold, or that needs too much memory, before decoding.
    With 24-bit probabilities every symbol costs at least (alphabet - 1) / 2^24 bits. A cm byte is 8 binary
    symbols whose probabilities are at least 1/4096 each, so it costs more than 8 · 2^-12 bits: a bound
    ~128 times tighter, which keeps a short cm file's decoding time in proportion to its length (§21.6)."""
    most = 64 + (8 * payload_bytes + 64) * (1 << 24) // (member.alphabet - 1)
    if is_cm(member.model):
        most = min(most, 64 + (8 * payload_bytes + 64) * 512)
    if member.n > most:
        raise CorruptFileError(f"dataset declares {member.n} symbols; {payload_bytes} coded bytes hold at most {most}")
    need = 8 * member.n
    limits.check("dataset bytes to decode", need, limits.max_total_decoded_bytes)
    decode_memory.check(f"a dataset of {member.n} symbols", need, limits)


def decode(source: str | os.PathLike | bytes, side_info: SideInfo | None = None, *, allow_env_mismatch: bool = False,
           limits: Limits = DEFAULT_LIMITS, progress: Callable[[int], None] | None = None) -> bytes:
    """The data a dataset .nnc file describes, checked against its recorded sha256."""
    with open_nnc(source, limits=limits) as f:
        member, container = read_member(f)
        env.check(member.env, allow_env_mismatch, env.CM_KEYS if is_cm(member.model) else None)
        kind = kind_by_name(member.kind)
        check_spec(member)
        inputs = check_inputs(member, side_info)
        payload = container.read_section(member.section)
        _check_size(member, len(payload), limits)
        model = None
        if member.code == "two-part":
            model = build(member.model, member.seed, limits)
            load_weights(model, {name: f.get_tensor(name) for name in f.keys()})
        elif f.keys():
            raise FormatError("a prequential dataset file holds no model tensors")
    symbols = decode_symbols(member, payload, model, inputs, progress, limits)
    check_alphabet(symbols, member.alphabet)
    data = kind.unparse(symbols)
    verify_hash(member, data)
    return data
