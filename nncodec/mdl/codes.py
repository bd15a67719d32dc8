"""Two-part and prequential codes: one function per code runs in both directions (encode or decode
side), and the file is the model tensors (two-part) plus one `dataset` section."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from .. import decode_memory
from ..errors import BadArgumentError, CorruptFileError
from ..limits import DEFAULT_LIMITS, Limits
from . import env, work
from .cm import CMModel, check_cm_for_data, is_cm
from .cm_driver import code_cm
from .drivers import code_conditional, code_mixture, code_sequence
from .kinds import SideInfo, kind_by_name
from .member import DatasetMember
from .mixture import Mixture
from .models import build
from .schedule import geometric_blocks
from .sides import DecodeSide, EncodeSide
from .train import TrainConfig, optimizer, train_classifier, train_sequence

Progress = Callable[[int], None] | None


@dataclass
class EncodeSettings:
    """What the caller may choose; everything decoding needs ends up in the header."""

    kind: str = "bytes"
    prequential: bool = False
    spec: dict | None = None  # model architecture; None = the kind's default
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    streams: int | None = None  # bytes: lock-step streams; None = automatic
    first_block: int | None = None  # prequential: size of the first block; None = automatic
    block_ratio: float = 2.0  # prequential: each block end is this many times the previous one (then n)


def auto_streams(n: int) -> int:
    """Enough streams to code fast (one forward pass per step serves all), few enough that cold
    starts (each stream begins with no context) cost little: about 8 KiB per stream, at most 128."""
    return int(min(128, max(1, n // 8192)))


def code_block(model, member: DatasetMember, side, start: int, end: int, inputs, progress: Progress = None) -> None:
    """Symbols [start, end) under `model`, in whichever direction `side` goes."""
    with env.deterministic():
        if member.kind == "bytes":
            code_sequence(model, side, start, end, member.streams, progress)
        elif isinstance(model, Mixture):
            code_mixture(model, side, inputs, start, end, progress)
        else:
            code_conditional(model, side, inputs, start, end, progress)


def prepare(model, inputs: np.ndarray | None, limits: Limits = DEFAULT_LIMITS):
    """What the model reads instead of the raw inputs (e.g. features of ALL inputs, computed before
    any symbol is coded, from side information alone); the raw inputs if it has nothing to prepare.
    The features' memory is checked against the limits before they are computed."""
    if inputs is None or not hasattr(model, "prepare"):
        return inputs
    need = model.feature_bytes(len(inputs))
    limits.check("bytes of input features (max_total_decoded_bytes)", need, limits.max_total_decoded_bytes)
    decode_memory.check(f"features of {len(inputs)} inputs", need, limits)
    with env.deterministic():
        return model.prepare(inputs)


def trainee(model, cfg: TrainConfig):
    """The module the optimizer trains: the coding model itself, or, with iterate averaging
    (cfg.average > 0), a copy of it (same initial weights) whose averaged iterates the coding model gets."""
    return copy.deepcopy(model) if cfg.average > 0 else model


def learners(model, cfg: TrainConfig, seed: int) -> list[tuple]:
    """(trained module, optimizer, generator, input slot, coding module) per trained model: one, or one
    per mixture member with parameters (member i: Generator seeded with seed + i)."""
    members = ([(i, m) for i, m in enumerate(model.members) if any(True for _ in m.parameters())]
               if isinstance(model, Mixture) else [(None, model)])
    out = []
    for i, m in members:
        t = trainee(m, cfg)
        out.append((t, optimizer(t, cfg), torch.Generator().manual_seed(seed + (i or 0)), i, m))
    return out


def fit(model, member_kind: str, symbols: np.ndarray, end: int, cfg: TrainConfig, opt, gen,
        inputs: np.ndarray | None, steps: int | None = None, progress: Progress = None, coding=None) -> float:
    """Train on symbols[:end] (the same call replays the training when decoding). With cfg.average > 0,
    `coding` (the model the symbols are coded with) receives the mean of the last iterates."""
    into = coding if cfg.average > 0 and coding is not None else None
    with env.deterministic():
        if member_kind == "bytes":
            return train_sequence(model, opt, symbols, end, cfg, gen, steps, progress, into)
        return train_classifier(model, opt, inputs, symbols, end, cfg, gen, steps, progress, into)


def run_prequential(member: DatasetMember, side, inputs: np.ndarray | None, progress: Progress = None,
                    log: Callable[[str], None] | None = None, limits: Limits = DEFAULT_LIMITS,
                    work_limit: int | None = None) -> int:
    """The prequential code: block k is coded by the model trained on blocks < k. Both directions.
    Returns the estimated work (multiply-adds, work.py), which must not exceed `work_limit` (the
    decoder's budget for its coded bytes): checked before any training or coding."""
    if is_cm(member.model):
        check_cm_for_data(member.model, member.n, limits)  # tables in proportion to the data, before build
    model = build(member.model, member.seed, limits)
    if isinstance(model, CMModel):  # learns online from every coded bit: one pass, no blocks to train between
        before = side.coder.bits() if isinstance(side, EncodeSide) else None
        code_cm(model, side, member.n, member.streams, progress)
        if log is not None and before is not None:
            log(f"cm: {(side.coder.bits() - before) / max(1, member.n):.4f} bits/byte")
        return 0  # its cost per byte is bounded by §21.6's n rule and the table limit instead
    inputs = prepare(model, inputs, limits)
    estimate = work.estimate(member, work.model_costs(model, member.kind, inputs))
    if work_limit is not None and estimate > work_limit:
        work.refuse(estimate, work_limit, limits)
    trained = learners(model, member.train, member.seed)
    start = 0
    for end in member.blocks or []:
        before = side.coder.bits() if isinstance(side, EncodeSide) else None
        code_block(model, member, side, start, end, inputs, progress)
        if log is not None and before is not None:
            log(f"block [{start}, {end}): {(side.coder.bits() - before) / max(1, end - start):.4f} bits/symbol")
        if end < member.n:
            for module, opt, gen, slot, coding in trained:
                fit(module, member.kind, side.symbols, end, member.train, opt, gen,
                    inputs if slot is None else inputs[slot], coding=coding)
        start = end
    return estimate


def auto_cm_streams(n: int) -> int:
    """Lock-step streams of a cm code: the model is shared, so a stream costs only its cold context
    (a few bytes); about 16 KiB per stream, at most 64 (chosen on the New Testament, not the test text)."""
    return int(min(64, max(1, n // 16384)))


def auto_first_block(kind: str, n: int) -> int:
    return max(1, min(n, 8192 if kind == "bytes" else 64))


def prequential_member(settings: EncodeSettings, symbols: np.ndarray, alphabet: int, data: bytes,
                       side_info: SideInfo | None, section: int) -> DatasetMember:
    kind = kind_by_name(settings.kind)
    n = len(symbols)
    spec = settings.spec or kind.default_spec(alphabet, side_info)
    if is_cm(spec):  # one block (the model learns online); its own stream default
        blocks, streams = ([n] if n else []), settings.streams or auto_cm_streams(n)
    else:
        blocks = geometric_blocks(n, settings.first_block or auto_first_block(settings.kind, n), settings.block_ratio)
        streams = settings.streams or auto_streams(n)
    return DatasetMember(section, settings.kind, "prequential", n, alphabet, hashlib.sha256(data).hexdigest(), spec,
                         settings.seed, env.current(), streams,
                         side_info.describe() if side_info else None, settings.train, blocks)


def decode_symbols(member: DatasetMember, payload: bytes | memoryview, model=None, inputs: np.ndarray | None = None,
                   progress: Progress = None, limits: Limits = DEFAULT_LIMITS) -> np.ndarray:
    """The symbols of a dataset section (two-part: under `model`; prequential: replaying training)."""
    side = DecodeSide(payload, member.n, coded=member.n * (8 if is_cm(member.model) else 1))  # cm: 8 bits a byte
    most = work.budget(len(payload), limits)
    if member.code == "prequential":
        run_prequential(member, side, inputs, progress, limits=limits, work_limit=most)
    else:
        inputs = prepare(model, inputs, limits)
        estimate = work.estimate(member, work.model_costs(model, member.kind, inputs))
        if estimate > most:
            work.refuse(estimate, most, limits)
        code_block(model, member, side, 0, member.n, inputs, progress)
    side.coder.finish()
    return side.symbols


def check_inputs(member: DatasetMember, side_info: SideInfo | None) -> np.ndarray | None:
    if member.kind != "labels":
        return None
    if side_info is None:
        raise BadArgumentError("these labels were coded given their inputs: give the same IDX image file "
                               f"(sha256 {member.side['sha256'][:16]}...) with --labels-for")
    if side_info.sha256 != member.side["sha256"]:
        raise BadArgumentError(f"the inputs given (sha256 {side_info.sha256[:16]}...) are not the ones the labels "
                               f"were coded with (sha256 {member.side['sha256'][:16]}...)")
    return side_info.array


def verify_hash(member: DatasetMember, data: bytes) -> None:
    if hashlib.sha256(data).hexdigest() != member.sha256:
        raise CorruptFileError("decoded data does not match the sha256 recorded at encoding "
                               "(the probabilities differed, or the file is damaged)")
