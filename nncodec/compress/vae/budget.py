"""The accuracy budget's per-model choices in `vae_compress`: latent step and residual step.

"Passes" means the decoded model keeps its score within `max_drop` of the original (a per-sample
evaluate: the protocol's confirmed paired bound, `passes_confirmed`). For each candidate latent step
(the reconstruction rule's step x `options.latent_factors`; the decoder is shared and fixed) the
decoder runs on that model's re-quantized latents exactly as a reader does (`decoder.run` on
`Latents(levels, step).values()` of one group), the coarsest passing residual is searched, and the
model keeps the candidate whose latents + residual are the fewest coded bytes: the components are
really coded by the codec layer (`latent.encode`, `encode_entry`; their few dozen header bytes are not
counted). Ties keep the finer latent step, so the reconstruction rule's own step (always a candidate)
is only replaced by one that codes smaller.

evaluate() calls per model, at most: 1 (the original) + per candidate 6 (the VAE alone, the finest
ladder step, 4 bisection steps over the 15-step REL_LADDER) + 27 halvings below the ladder, which only
the reconstruction rule's candidate may use (a coarser candidate needing them is dropped). With the
default 4 candidates: 25, and 52 in the worst case (the reconstruction rule alone: 7 and 34).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ...codecs import DEFAULT_OPTIONS
from ...codecs import decoder as decoder_codec
from ...codecs import latent as latent_codec
from ...components import QuantTensor, dequantize_float32, float32_to_words
from ...confidence import passes_confirmed
from ...convert import words_to_numpy
from ...dtypes import DType
from ...errors import BadArgumentError
from ...tensorfile_vae import float_values
from ...tensorwriter import encode_entry
from ...vae_components import Latents
from ..uniform import quantize_uniform
from .chunks import from_chunks

if TYPE_CHECKING:
    from .compress import VaeOptions, _Model

REL_LADDER = tuple(float(2 ** (k / 2)) for k in range(-6, 9))  # 1/8 .. 16, by sqrt(2)
FINEST_REL = 2.0**-30  # below the ladder the residual step is halved down to this
Evaluate = Callable[[str, dict[str, np.ndarray]], Any]  # a float, or per-sample scores (1-D array)


@dataclass
class Choice:
    """One model's latents and residual step, what they decode to, and its scores."""

    step: float
    levels: np.ndarray
    cut: list[np.ndarray]  # the decoder's output cut to the model's float tensors
    rel: float | None
    scores: tuple[float, float]  # (original, decoded) mean score
    nbytes: int  # coded bytes of the latents + the residuals


def residual_of(v: np.ndarray, dv: np.ndarray, dt: DType, rel: float) -> QuantTensor:
    """true - decoded, quantized with step rel x its sd."""
    r = v - dv.astype(np.float64)
    return quantize_uniform(r, dt, np.float32(rel * (float(np.std(r)) or 1.0)))


def _own(m: _Model, full: str) -> str:
    return full.split("/", 1)[1] if m.name else full


def decoded_state(m: _Model, cut: list[np.ndarray], rel: float | None) -> dict[str, np.ndarray]:
    """A model's tensors as a reader decodes them, keyed by the model's own names."""
    out = {}
    for (full, dt, v), dv in zip(m.floats, cut, strict=True):
        d = np.asarray(dv, dtype=np.float32).reshape(-1)
        if rel is not None:
            d = d + dequantize_float32(residual_of(v, dv, dt, rel))
        out[_own(m, full)] = float_values(dt.name, float32_to_words(d, dt)).reshape(v.shape)
    for full, comp in m.others.items():
        out[_own(m, full)] = words_to_numpy(comp.dtype, comp.shape, comp.words)
    return out


def baseline(m: _Model, evaluate: Evaluate) -> np.ndarray:
    """The original model's score (a 0-d or 1-D per-sample array)."""
    original = {_own(m, f): v for f, _, v in m.floats}
    original.update({_own(m, f): words_to_numpy(c.dtype, c.shape, c.words) for f, c in m.others.items()})
    base = np.asarray(evaluate(m.name, original), dtype=np.float64)
    if base.ndim > 1 or (base.ndim == 1 and base.size < 4):
        raise BadArgumentError("evaluate must return a number or a 1-D array of at least 4 per-sample scores")
    return base


def choose_residual(m: _Model, cut: list[np.ndarray], evaluate: Evaluate, base: np.ndarray, opt: VaeOptions,
                    below_ladder: bool = True) -> tuple[float | None, float] | None:
    """(residual step, decoded mean score): no residual if the decoded model passes; else the coarsest
    step on REL_LADDER that does (bisection, assuming finer steps never score lower); below the ladder
    halved until it passes if `below_ladder`, else None.

    A float evaluate passes at score >= original - max_drop; a per-sample evaluate (1-D array, e.g. 0/100
    correctness per validation sample) must pass the protocol's test, the paired drop's upper bound at
    `opt.confidence` within max_drop on the even AND on the odd samples (passes_confirmed), the
    acceptance rule of search_budget."""
    baseline_mean = float(base.mean())

    def judge(rel: float | None) -> tuple[bool, float]:
        s = np.asarray(evaluate(m.name, decoded_state(m, cut, rel)), dtype=np.float64)
        if s.shape != base.shape:
            raise BadArgumentError(f"evaluate returned shape {s.shape} for a decoded model, {base.shape} for the original")
        if base.ndim == 0:
            return float(s) >= baseline_mean - opt.max_drop, float(s)
        return passes_confirmed(base, s, opt.max_drop, opt.confidence), float(s.mean())

    ok, score = judge(None)
    if ok:
        return None, score
    ok, s0 = judge(REL_LADDER[0])
    if not ok:  # finer than the ladder: halve the step until the budget is met (it always is, eventually)
        if not below_ladder:
            return None
        rel = REL_LADDER[0]
        while not ok and rel > FINEST_REL:
            rel /= 2
            ok, s0 = judge(rel)
        return rel, s0
    lo, hi, best = 0, len(REL_LADDER) - 1, (REL_LADDER[0], s0)  # ascending: lo passes, hi coarse
    while lo < hi:
        mid = (lo + hi + 1) // 2
        ok, s = judge(REL_LADDER[mid])
        if ok:
            lo, best = mid, (REL_LADDER[mid], s)
        else:
            hi = mid - 1
    return best


def part_bytes(m: _Model, levels: np.ndarray, step: float, cut: list[np.ndarray], rel: float | None) -> int:
    """Coded bytes of a model's latents and residuals, coded as the file codes them."""
    sizes = [len(latent_codec.encode(levels, step, DEFAULT_OPTIONS).payload)]

    def add(kind: str, enc: Any) -> dict:
        sizes.append(len(enc.payload))
        return {}

    if rel is not None:
        for (full, dt, v), dv in zip(m.floats, cut, strict=True):
            encode_entry(full, residual_of(v, dv, dt, rel), DEFAULT_OPTIONS, add)
    return sum(sizes)


def choose_latents(m: _Model, mu: np.ndarray, step: float, arch: decoder_codec.Arch, weights: dict[str, np.ndarray],
                   evaluate: Evaluate, opt: VaeOptions) -> Choice:
    """The candidate latent step (`step` x each of opt.latent_factors, and x 1) with its coarsest passing
    residual whose model part codes to the fewest bytes."""
    base = baseline(m, evaluate)
    shapes = [v.shape for _, _, v in m.floats]
    best: Choice | None = None
    for factor in sorted(set(opt.latent_factors) | {1}):
        s = float(np.float32(step * factor))
        levels = np.rint(mu / np.float32(s)).astype(np.int64)
        cut = from_chunks(decoder_codec.run(arch, weights, Latents(levels, s).values()), shapes)  # as a reader
        got = choose_residual(m, cut, evaluate, base, opt, below_ladder=factor == 1)
        if got is None:
            continue
        n = part_bytes(m, levels, s, cut, got[0])
        if best is None or n < best.nbytes:
            best = Choice(s, levels, cut, got[0], (float(base.mean()), got[1]), n)
    assert best is not None  # factor 1 always yields a choice
    return best
