"""The search's state: the layers, their components and coded sizes at each rung of the step
ladder, and the evaluation of candidates (with the hard cap on evaluate() calls and the drop bounds)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import codecs
from ..api import load
from ..codecs.base import EncodeOptions
from ..components import QuantTensor, RawTensor, dequantize
from ..compress.calibrate import LayerStats, bias_correction
from ..compress.config import fine_quantize
from ..compress.lossless import lossless
from ..compress.rdoq import quantize_rdoq
from ..compress.uniform import levels_to_quant_tensor
from ..confidence import DEFAULT_CONFIDENCE, half_drops, paired_drop
from ..convert import is_torch_tensor, to_numpy, words_to_numpy, words_to_torch
from ..dtypes import DType
from ..errors import BadArgumentError
from ..tensorwriter import encode_file

# 0.125 .. 16 x std in steps of 2**(1/3). The fine end matters: below 0.5 sd a layer costs ~3-5 bits per
# weight, lossless ~25; without it a layer too sensitive for 0.5 sd had only the lossless rung left.
DEFAULT_REL_STEPS = tuple(float(0.5 * 2 ** (k / 3)) for k in range(-6, 16))
SCAN_START = 0.5  # the scan measures from this step (x std) coarser, and finer only when it already hurts
DEFAULT_LAMBDAS = (0.0, 0.05)


@dataclass(frozen=True)
class Setting:
    rel_step: float  # step = rel_step x the weight's standard deviation (per tensor or per row)
    rd_lambda: float

    def __str__(self) -> str:
        if self.rel_step == 0:
            return "lossless"
        return f"step={self.rel_step:.3g}sd" + (f",lam={self.rd_lambda:g}" if self.rd_lambda else "")


LOSSLESS = Setting(0.0, 0.0)  # a layer kept exactly (the last resort of a very sensitive layer)
LOSSLESS_RUNG = -1


@dataclass
class Layer:
    name: str
    dtype: DType
    values: np.ndarray  # float64
    bias: str | None
    stats: LayerStats | None
    points: dict[int, tuple[int, float]] = field(default_factory=dict)  # rung -> (bytes, drop), measured alone
    damage: dict[int, float] = field(default_factory=dict)  # rung -> measured damage (see Search.steer)


@dataclass
class BudgetResult:
    data: bytes
    score: float
    baseline: float
    threshold: float
    settings: dict[str, str]
    evaluations: int
    history: list[tuple[int, float, bool]]  # (file bytes, score, within budget) of every full candidate
    sensitivity: dict[str, list[tuple[str, int, float]]] = field(default_factory=dict)  # layer -> (setting, bytes, drop)
    choice: dict[str, Setting] = field(default_factory=dict)  # the chosen setting per layer (empty: lossless)
    small_lossless: bool = False  # small tensors stayed lossless (their fine step alone cost too much)
    drop_bound: float = 0.0  # the accepted file's upper drop bound (per-sample) or drop + margin (scalar)
    confidence: float | None = None  # level of the bound (None: scalar evaluator)


class OutOfEvaluations(Exception):
    """Guard of the hard cap: every caller checks `left()` first, so this is never raised in a correct search."""


class Search:
    def __init__(self, tensors: Mapping[str, Any], evaluate: Callable[[dict], float], *,
                 statistics: Mapping[str, LayerStats] | None, rel_steps: Sequence[float], lambdas: Sequence[float],
                 per_channel: bool, small_rel_error: float, options: EncodeOptions, metadata: dict | None,
                 min_layer_numel: int, progress: bool | None, iterations: int, optq: bool = True,
                 max_evals: int = 400, confidence: float = DEFAULT_CONFIDENCE, margin: float = 0.0,
                 confirm: bool = True) -> None:
        self.tensors = tensors
        self.max_evals = max_evals
        self.confidence = confidence
        self.margin = margin
        self.base_samples: np.ndarray | None = None
        self.baseline = 0.0
        self.confirm = confirm
        self.confirm_bounds: dict[tuple, tuple[float, float]] = {}  # rungs -> (odd-half bound, full bound)
        self.optq = optq
        self.evaluate = evaluate
        self.options = options
        self.metadata = metadata
        self.per_channel = per_channel
        self.iterations = iterations
        self.framework = "pt" if any(is_torch_tensor(v) for v in tensors.values()) else "np"
        self.ladder = [Setting(float(r), float(lam)) for lam in lambdas for r in sorted(rel_steps)]
        self.cache: dict[tuple[str, int], tuple[dict, int]] = {}
        self.distortion: dict[tuple[str, int], float] = {}  # (layer, rung) -> weight error (see components)
        self.files: dict[tuple, tuple[bytes, float, float]] = {}  # rungs -> (file, score, drop bound)
        # max_drop -> finer files put to the odd-half confirmation so far: a budget searched again (its
        # first pass found nothing, see entry.search_budgets) continues the count instead of restarting it
        self.reconfirmed: dict[float, int] = {}
        self.evaluations = 0
        stats = dict(statistics or {})
        arrays = {}
        for name, value in tensors.items():
            if not isinstance(name, str):
                raise BadArgumentError(f"tensor names must be strings, got {name!r}")
            arrays[name] = to_numpy(value, name)
        self.layers: list[Layer] = []
        partners = set()
        for name, (dt, arr) in arrays.items():
            if dt.kind != "f" or arr.ndim < 2 or arr.size < min_layer_numel:
                continue
            values = float_values(dt, arr)
            if not np.isfinite(values).all():
                continue
            bias = name[: -len("weight")] + "bias" if name.endswith("weight") else None
            if bias not in arrays or arrays[bias][1].shape != (arr.shape[0],) or arrays[bias][0].kind != "f":
                bias = None
            st = stats.get(name)
            if st is not None and st.fan_in != arr.size // arr.shape[0]:
                raise BadArgumentError(f"statistics for {name!r} have fan-in {st.fan_in}, the weight {arr.size // arr.shape[0]}")
            self.layers.append(Layer(name, dt, values, bias, st))
            if bias:
                partners.add(bias)
        if not self.layers:
            raise BadArgumentError("no float tensor of 2 or more dimensions to compress")
        self.arrays = arrays
        self.fixed: dict[str, Any] = {}  # components of everything that is not a layer
        for name, (dt, arr) in arrays.items():
            if any(layer.name == name for layer in self.layers):
                continue
            if name in partners and any(layer.bias == name and layer.stats is not None for layer in self.layers):
                continue  # corrected per layer setting
            finite = dt.kind == "f" and np.isfinite(float_values(dt, arr)).all()
            self.fixed[name] = fine_quantize(float_values(dt, arr), dt, small_rel_error) if finite and arr.size \
                else lossless(arr, dt)
        self.small_lossless = False  # set when even the fine step on small tensors costs too much score
        self.small_rel_error = small_rel_error
        from tqdm import tqdm

        self.bar = tqdm(desc="budget search", unit="eval", file=sys.stderr, disable=not progress, dynamic_ncols=True)

    # ------------------------------------------------------------------ components and sizes

    def _part_bytes(self, t: QuantTensor | RawTensor) -> int:
        if isinstance(t, RawTensor):
            return len(codecs.raw.encode(t.words.reshape(-1), t.dtype, self.options).payload)
        rows = codecs.levels_ctx.row_counts(t.shape, t.mask)
        n = len(codecs.levels.encode(t.levels, self.options, rows).payload) + 4 * t.quantizer.values.size
        return n + (len(codecs.mask.encode(t.mask, self.options).payload) if t.mask is not None else 0)

    def components(self, layer: Layer, rung: int) -> tuple[dict, int]:
        """{name: component} of a layer (and its corrected bias) at a rung, and their coded bytes."""
        key = (layer.name, rung)
        if key in self.cache:
            return self.cache[key]
        if rung == LOSSLESS_RUNG:
            names = [layer.name] + ([layer.bias] if layer.bias is not None and layer.stats is not None else [])
            comps = {n: lossless(self.arrays[n][1], self.arrays[n][0]) for n in names}
            self.cache[key] = (comps, sum(self._part_bytes(c) for c in comps.values()))
            return self.cache[key]
        s = self.ladder[rung]
        x = layer.values
        rows = x.reshape(x.shape[0], -1)
        if self.per_channel:
            axis = 0
            base = np.sqrt(np.mean(rows * rows, axis=1))
        else:
            axis = None
            base = np.atleast_1d(np.sqrt(np.mean(x * x)))
        base = np.where(base > 0, base, max(float(base.max()), 1e-12))
        steps = (s.rel_step * base).astype(np.float32)
        hessian = layer.stats.cov if layer.stats is not None and self.optq else None
        t = quantize_rdoq(x, layer.dtype, steps, s.rd_lambda, axis=axis, hessian=hessian,
                          iterations=self.iterations, zeros="mask")
        full = np.zeros(t.shape, dtype=np.int64)
        if t.mask is None:
            full.reshape(-1)[:] = t.levels
        else:
            full[t.mask] = t.levels
        variants = [levels_to_quant_tensor(full, t.dtype, t.quantizer.values, t.quantizer.axis, zeros=z)
                    for z in ("mask", "levels")]
        sized = [(self._part_bytes(v), i) for i, v in enumerate(variants)]
        nbytes, best = min(sized)
        comps = {layer.name: variants[best]}
        w_hat = float_values(layer.dtype, words_to_numpy(layer.dtype, t.shape, dequantize(t)))
        err = (x - w_hat).reshape(x.shape[0], -1)
        # the layer's output error: tr(E C E^T) with the input second moments when known, else |E|^2
        self.distortion[key] = float(np.sum((err @ layer.stats.cov) * err)) if layer.stats is not None \
            else float(np.sum(err * err))
        if layer.bias is not None and layer.stats is not None:
            bdt, b = self.arrays[layer.bias]
            corrected = float_values(bdt, b) + bias_correction(x, w_hat, layer.stats.mean)
            bt = fine_quantize(corrected, bdt, 2.0**-20 if self.small_lossless else self.small_rel_error)
            comps[layer.bias] = bt
            nbytes += self._part_bytes(bt)
        self.cache[key] = (comps, nbytes)
        return comps, nbytes

    # ------------------------------------------------------------------ evaluation

    def left(self) -> int:
        return self.max_evals - self.evaluations

    def _evaluate(self, state: dict) -> tuple[float, np.ndarray | None]:
        """(score, per-sample scores or None) of a state dict; never past max_evals."""
        if self.evaluations >= self.max_evals:
            raise OutOfEvaluations
        self.evaluations += 1
        self.bar.update(1)
        out = self.evaluate(state)
        if isinstance(out, (int, float, np.floating, np.integer)) and not isinstance(out, bool):
            return float(out), None
        arr = np.asarray(out, dtype=np.float64) if not is_torch_tensor(out) else out.detach().double().cpu().numpy()
        if arr.ndim == 0:
            return float(arr), None
        if arr.ndim != 1 or arr.size < 2 or not np.isfinite(arr).all():
            raise BadArgumentError("evaluate must return a float or a 1-D array of >= 2 finite per-sample scores, "
                                   f"got shape {arr.shape}")
        if self.base_samples is not None and arr.shape != self.base_samples.shape:
            raise BadArgumentError(f"evaluate returned {arr.size} per-sample scores, the baseline {self.base_samples.size}")
        return float(arr.mean()), arr

    def _score(self, state: dict) -> float:
        return self._evaluate(state)[0]

    def drop_bounds(self, score: float, samples: np.ndarray | None) -> tuple[float, tuple[float, float] | None]:
        """What must stay <= max_drop: the bound the search steers on (upper confidence bound of the
        paired drop on the even samples, or on all without `confirm`; scalar: drop + margin), and
        (bound on the odd samples, bound on all samples) for the final confirmation."""
        if samples is None or self.base_samples is None:
            return self.baseline - score + self.margin, None
        full = paired_drop(self.base_samples, samples, self.confidence).upper
        if not self.confirm or samples.size < 4:
            return full, None
        even, odd = half_drops(self.base_samples, samples, self.confidence)
        return even.upper, (odd.upper, full)

    def _decoded(self, comp: QuantTensor | RawTensor) -> Any:
        words = comp.words if isinstance(comp, RawTensor) else dequantize(comp)
        conv = words_to_torch if self.framework == "pt" else words_to_numpy
        return conv(comp.dtype, comp.shape, words)

    def steer(self, score: float, samples: np.ndarray | None) -> tuple[float, float]:
        """(drop, damage) on the samples the search steers on (the even half when it confirms on the
        odd one, so the scan never looks at the held-out half). Damage is what the allocation adds up
        across layers: for 0/1-valued per-sample scores the squared rate of changed samples (a flip
        rate grows with the amplitude of the output noise, whose square adds over independently
        quantized layers), for other per-sample scores their mean squared change, for a scalar score
        its drop. It is far less noisy than the drop: both directions of change count."""
        if samples is None or self.base_samples is None:
            drop = self.baseline - score
            return drop, max(drop, 0.0)
        b, s = self.base_samples, samples
        if self.confirm and s.size >= 4:
            b, s = b[0::2], s[0::2]
        drop = float(b.mean() - s.mean())
        msd = float(np.mean((b - s) ** 2))
        values = np.unique(self.base_samples)
        if values.size <= 2:  # two-valued scores (correct / wrong): msd / span^2 is the flip rate
            span = float(values[-1] - values[0]) if values.size == 2 else 1.0
            return drop, (msd / (span * span)) ** 2
        return drop, msd

    def score_layer_alone(self, layer: Layer, rung: int) -> tuple[float, float]:
        """(drop, damage) with only this layer (and its bias) replaced by its decoded values: the
        components are dequantized exactly as the decoder does, so no file is needed for the scan."""
        comps, _ = self.components(layer, rung)
        state = dict(self.tensors)
        for name, comp in comps.items():
            state[name] = self._decoded(comp)
        return self.steer(*self._evaluate(state))

    def encode(self, rungs: dict[str, int]) -> bytes:
        comps: dict[str, Any] = {}
        for layer in self.layers:
            comps.update(self.components(layer, rungs[layer.name])[0])
        ordered = {name: comps[name] if name in comps else self.fixed[name] for name in self.tensors}
        return encode_file(ordered, self.metadata, self.options)

    def try_file(self, rungs: dict[str, int], key: tuple) -> tuple[bytes, float, float]:
        data = self.encode(rungs)
        score, samples = self._evaluate(load(data, framework=self.framework))
        bound, extra = self.drop_bounds(score, samples)
        if extra is not None:
            self.confirm_bounds[key] = extra
        return data, score, bound


def float_values(dt: DType, arr: np.ndarray) -> np.ndarray:
    """float64 values of a float tensor (bfloat16 arrives as its uint16 storage words)."""
    if dt.name == "bfloat16":
        return (arr.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return np.asarray(arr, dtype=np.float64)

