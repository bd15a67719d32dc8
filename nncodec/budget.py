"""The smallest .nnc file whose decoded tensors still score within a budget of the original.

    data = nncodec.compress_to_budget(model.state_dict(), evaluate, max_drop=0.5)

`evaluate(state_dict)` scores decoded tensors (higher is better, e.g. accuracy in %), on data the
caller chooses: the search SELECTS on it, so it must be held-out validation data, never the test set
that the result is reported on (benchmarks/PROTOCOL.md). It returns either
  * a 1-D array of per-sample scores (e.g. 0/100 correctness per validation sample; the score is its
    mean). A file is then accepted only when the one-sided upper confidence bound of the paired drop
    (normal bound on the per-sample differences against the original model, i.e. the normal form of
    McNemar's test for 0/1 scores; `nncodec.confidence`) is <= max_drop, at `confidence` (default
    95 %). With `confirm=True` (default) the search steers on the even-numbered samples only and the
    answer must pass the same test on the odd-numbered ones too, which it never steered on: a search
    tries many files, and the smallest that passes one test has usually passed it by luck. When the
    answer fails there, at most RECONFIRMATIONS (3) finer files are put to that test, each predicted
    larger than the refused one, before the search gives up and returns the lossless file.
  * a float: a file is accepted when baseline - score + margin <= max_drop (`margin`, default 0,
    is the caller's allowance for the noise of that number).
The search never trusts an estimate for the final answer: every candidate file is encoded,
decoded from its bytes and scored, and its size is len(bytes). `max_evals` is a hard cap on the
number of evaluate() calls of the whole search (baseline and scan included).

How it allocates (per layer, by sensitivity, not one global setting):
  1. Sensitivity scan: each large weight tensor ("layer") is quantized alone on a ladder of step
     sizes (multiples of its standard deviation) and RD lambdas while all others stay exact, and
     its score drop and coded size are measured: first every other step (lambda 0), fine to
     coarse, until the drop is far over budget, then the rungs in between and the other lambdas
     where they matter. Keeping a layer exact is a rung too (it costs no score).
  2. Allocation: per layer, the rungs on the size/drop Pareto front; a Lagrangian sweep
     (minimise size + mu * drop per layer) gives one combination per mu, and a binary search
     over those finds the smallest combination that really keeps the score.
  3. Refinement: greedily move single layers one or two rungs coarser while the real score stays
     in budget, cheapest predicted damage per byte saved first. A file scored for one budget counts
     for every budget it meets.
Small tensors (biases, norms) get a fine step; with calibration `statistics` (see
nncodec.models.layer_statistics) weights are quantized with OPTQ and the biases corrected.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import codecs
from .api import _check_metadata, load
from .codecs.base import EncodeOptions
from .components import QuantTensor, RawTensor, dequantize
from .compress.calibrate import LayerStats, bias_correction
from .compress.config import fine_quantize
from .compress.lossless import lossless
from .compress.rdoq import quantize_rdoq
from .compress.uniform import levels_to_quant_tensor
from .confidence import DEFAULT_CONFIDENCE, paired_drop, z_value
from .convert import is_torch_tensor, to_numpy, words_to_numpy, words_to_torch
from .dtypes import DType
from .errors import BadArgumentError
from .tensorwriter import encode_file

DEFAULT_REL_STEPS = tuple(float(0.5 * 2 ** (k / 3)) for k in range(0, 16))  # 0.5 .. 16 x std
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
class _Layer:
    name: str
    dtype: DType
    values: np.ndarray  # float64
    bias: str | None
    stats: LayerStats | None
    points: dict[int, tuple[int, float]] = field(default_factory=dict)  # rung -> (bytes, drop)


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


class _OutOfEvaluations(Exception):
    """Guard of the hard cap: every caller checks `left()` first, so this is never raised in a correct search."""


class _Search:
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
        self.files: dict[tuple, tuple[bytes, float, float]] = {}  # rungs -> (file, score, drop bound)
        self.evaluations = 0
        stats = dict(statistics or {})
        arrays = {}
        for name, value in tensors.items():
            if not isinstance(name, str):
                raise BadArgumentError(f"tensor names must be strings, got {name!r}")
            arrays[name] = to_numpy(value, name)
        self.layers: list[_Layer] = []
        partners = set()
        for name, (dt, arr) in arrays.items():
            if dt.kind != "f" or arr.ndim < 2 or arr.size < min_layer_numel:
                continue
            values = _float_values(dt, arr)
            if not np.isfinite(values).all():
                continue
            bias = name[: -len("weight")] + "bias" if name.endswith("weight") else None
            if bias not in arrays or arrays[bias][1].shape != (arr.shape[0],) or arrays[bias][0].kind != "f":
                bias = None
            st = stats.get(name)
            if st is not None and st.fan_in != arr.size // arr.shape[0]:
                raise BadArgumentError(f"statistics for {name!r} have fan-in {st.fan_in}, the weight {arr.size // arr.shape[0]}")
            self.layers.append(_Layer(name, dt, values, bias, st))
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
            finite = dt.kind == "f" and np.isfinite(_float_values(dt, arr)).all()
            self.fixed[name] = fine_quantize(_float_values(dt, arr), dt, small_rel_error) if finite and arr.size \
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

    def components(self, layer: _Layer, rung: int) -> tuple[dict, int]:
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
        if layer.bias is not None and layer.stats is not None:
            w_hat = _float_values(layer.dtype, words_to_numpy(layer.dtype, t.shape, dequantize(t)))
            bdt, b = self.arrays[layer.bias]
            corrected = _float_values(bdt, b) + bias_correction(x, w_hat, layer.stats.mean)
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
            raise _OutOfEvaluations
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
        b = self.base_samples
        even = paired_drop(b[0::2], samples[0::2], self.confidence).upper
        return even, (paired_drop(b[1::2], samples[1::2], self.confidence).upper, full)

    def _decoded(self, comp: QuantTensor | RawTensor) -> Any:
        words = comp.words if isinstance(comp, RawTensor) else dequantize(comp)
        conv = words_to_torch if self.framework == "pt" else words_to_numpy
        return conv(comp.dtype, comp.shape, words)

    def score_layer_alone(self, layer: _Layer, rung: int) -> float:
        """Score with only this layer (and its bias) replaced by its decoded values: the components
        are dequantized exactly as the decoder does, so no file is needed for the scan."""
        comps, _ = self.components(layer, rung)
        state = dict(self.tensors)
        for name, comp in comps.items():
            state[name] = self._decoded(comp)
        return self._score(state)

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


_EPS = 1e-9  # float slack of the budget comparison


def _within(bound: float, max_drop: float) -> bool:
    return bound <= max_drop + _EPS


def _float_values(dt: DType, arr: np.ndarray) -> np.ndarray:
    """float64 values of a float tensor (bfloat16 arrives as its uint16 storage words)."""
    if dt.name == "bfloat16":
        return (arr.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return np.asarray(arr, dtype=np.float64)


_MIN_LOSSY_DROP = 1e-3


def _front(points: dict[int, tuple[int, float]]) -> list[tuple[int, float, int]]:
    """Rungs on the Pareto front of (bytes, drop), sorted by bytes: each larger one drops less.
    A measured drop of a lossy rung counts as at least _MIN_LOSSY_DROP (lucky gains and zeros are
    noise), so the exact lossless rung (drop 0) stays on the front as the last resort."""
    pts = sorted(((b, d if r == LOSSLESS_RUNG else max(d, _MIN_LOSSY_DROP), r) for r, (b, d) in points.items()),
                 key=lambda p: (p[0], p[1]))
    front: list[tuple[int, float, int]] = []
    for b, d, r in pts:
        if not front or d < front[-1][1]:
            front.append((b, d, r))
    return front


def _validate(max_drops: Sequence[float], rel_steps: Sequence[float], lambdas: Sequence[float], max_evals: int,
              confidence: float, margin: float) -> None:
    if isinstance(max_evals, bool) or not isinstance(max_evals, (int, np.integer)) or max_evals < 1:
        raise BadArgumentError(f"max_evals must be an integer >= 1, got {max_evals!r}")
    z_value(confidence)
    if not (isinstance(margin, (int, float)) and np.isfinite(margin) and margin >= 0):
        raise BadArgumentError(f"margin must be a finite number >= 0, got {margin!r}")
    for max_drop in max_drops:
        if isinstance(max_drop, bool) or not (isinstance(max_drop, (int, float)) and np.isfinite(max_drop) and max_drop >= 0):
            raise BadArgumentError(f"max_drop must be a finite number >= 0, got {max_drop!r}")
    if not rel_steps or any(not (np.isfinite(r) and r > 0) for r in rel_steps):
        raise BadArgumentError("rel_steps must be positive numbers")
    if not lambdas or any(not (np.isfinite(lam) and lam >= 0) for lam in lambdas):
        raise BadArgumentError("lambdas must be numbers >= 0")


def search_budgets(tensors: Mapping[str, Any], evaluate: Callable[[dict], float], max_drops: Sequence[float], *,
                   statistics: Mapping[str, LayerStats] | None = None,
                   rel_steps: Sequence[float] = DEFAULT_REL_STEPS, lambdas: Sequence[float] = DEFAULT_LAMBDAS,
                   per_channel: bool = False, per_layer: bool = True, small_rel_error: float = 2.0**-6,
                   prefer: str = "balanced", contexts: bool = True, metadata: Mapping[str, str] | None = None,
                   min_layer_numel: int = 256, max_evals: int = 400, iterations: int = 2, optq: bool = True,
                   confidence: float = DEFAULT_CONFIDENCE, margin: float = 0.0, confirm: bool = True,
                   progress: bool | None = None) -> list[BudgetResult]:
    """`search_budget` for several budgets at once: the sensitivity scan is shared.

    Options: statistics (weight name -> LayerStats: OPTQ + bias correction), rel_steps (the step
    ladder in standard deviations of each weight), lambdas (RD lambdas), per_channel (a step per
    output row), per_layer (False: one setting for all layers, for comparison), small_rel_error
    (step of biases and other small tensors), prefer / contexts (codec choices), metadata,
    min_layer_numel (smaller tensors count as small), max_evals (a hard cap on evaluate() calls of the
    whole search: about half go to the sensitivity scan, the rest is shared by the budgets),
    iterations (RDOQ passes), optq (False: with statistics, only the bias correction, no error
    feedback), confidence (level of the one-sided bound when evaluate returns per-sample scores),
    margin (scalar evaluators: points added to the observed drop), confirm (per-sample evaluators:
    steer on the even samples, confirm the answer on the odd ones; see the module doc), progress (True: a tqdm bar on
    stderr; None/False: silent, the library default).
    """
    drops = [float(d) for d in max_drops]
    _validate(drops, rel_steps, lambdas, max_evals, confidence, margin)
    if not drops:
        return []
    options = EncodeOptions(prefer=prefer, contexts=contexts)
    search = _Search(tensors, evaluate, statistics=statistics, rel_steps=rel_steps, lambdas=lambdas,
                     per_channel=per_channel, small_rel_error=small_rel_error, options=options,
                     metadata=_check_metadata(metadata), min_layer_numel=min_layer_numel, progress=progress,
                     iterations=iterations, optq=optq, max_evals=int(max_evals), confidence=float(confidence),
                     margin=float(margin), confirm=bool(confirm))
    try:
        baseline, search.base_samples = search._evaluate(dict(search.tensors))
        search.baseline = baseline
        lossless_data = encode_file({n: lossless(a, dt) for n, (dt, a) in search.arrays.items()}, search.metadata,
                                    search.options)
        # small tensors (biases, norms) take a fine step unless that alone spends much of the budget
        state = dict(search.tensors)
        for name, comp in search.fixed.items():
            state[name] = search._decoded(comp)
        if search.fixed and search.left() > 0 and baseline - search._score(state) > min(drops) / 4:
            search.small_lossless = True
            search.fixed = {n: lossless(search.arrays[n][1], search.arrays[n][0]) for n in search.fixed}
        if per_layer:
            scan_limit = search.evaluations + search.left() // 2
            _scan(search, baseline, max(2.0 * max(drops), max(drops) + 1.0), min(drops) / 4, scan_limit)
        results = []
        for i, d in enumerate(drops):
            allowance = search.left() // (len(drops) - i)  # the budgets share what the scan left
            results.append(_allocate(search, baseline, d, per_layer, allowance, lossless_data))
        # a file scored for one budget may be the smallest that meets another: pick from all of them
        return [_best_of_all(search, r, lossless_data) for r in results]
    finally:
        search.bar.close()


def search_budget(tensors: Mapping[str, Any], evaluate: Callable[[dict], float], max_drop: float,
                  **options: Any) -> BudgetResult:
    """Like `compress_to_budget`, returning the search's record as well (see BudgetResult)."""
    return search_budgets(tensors, evaluate, [max_drop], **options)[0]


def _ladder_order(search: _Search) -> list[int]:
    return sorted(range(len(search.ladder)), key=lambda r: (search.ladder[r].rel_step, search.ladder[r].rd_lambda))


def _scan(search: _Search, baseline: float, stop_drop: float, low_drop: float, limit: int) -> None:
    """Sensitivity of each layer alone. Pass 1: every other step size (lambda 0), fine to coarse,
    until two rungs in a row drop more than `stop_drop`. Pass 2, while evaluations remain: the
    other rungs (the steps in between, the other lambdas) in the range that matters, from the last
    coarse rung that dropped at most `low_drop` up to where pass 1 stopped."""
    rels = sorted({s.rel_step for s in search.ladder})
    lams = sorted({s.rd_lambda for s in search.ladder})
    rung = {(s.rel_step, s.rd_lambda): i for i, s in enumerate(search.ladder)}
    coarse = rels[::2] if rels[-1] in rels[::2] else rels[::2] + [rels[-1]]
    ranges = {}
    for layer in search.layers:
        over, lo, hi = 0, rels[0], rels[-1]
        for rel in coarse:
            if search.evaluations >= limit:
                return
            r = rung[(rel, lams[0])]
            drop = baseline - search.score_layer_alone(layer, r)
            layer.points[r] = (search.components(layer, r)[1], drop)
            if drop <= low_drop:
                lo = rel
            over = over + 1 if drop > stop_drop else 0
            if over >= 2:
                hi = rel
                break
        ranges[layer.name] = (lo, hi)
    for layer in search.layers:
        lo, hi = ranges[layer.name]
        for rel in rels:
            for lam in lams:
                r = rung[(rel, lam)]
                if not lo <= rel <= hi or r in layer.points:
                    continue
                if search.evaluations >= limit:
                    return
                layer.points[r] = (search.components(layer, r)[1], baseline - search.score_layer_alone(layer, r))


def _allocate(search: _Search, baseline: float, max_drop: float, per_layer: bool, allowance: int,
              lossless_data: bytes) -> BudgetResult:
    threshold = baseline - max_drop
    start = search.evaluations
    history: list[tuple[int, float, bool]] = []
    best: tuple[bytes, float, dict[str, int], float] | None = None
    for key, (data, score, bound) in search.files.items():  # files already scored for other budgets
        if _within(bound, max_drop) and (best is None or len(data) < len(best[0])):
            best = (data, score, {layer.name: r for layer, r in zip(search.layers, key, strict=True)}, bound)

    def budget_left() -> bool:
        return search.evaluations - start < allowance and search.left() > 0

    def consider(rungs: dict[str, int]) -> bool:
        nonlocal best
        key = tuple(rungs[layer.name] for layer in search.layers)
        if key in search.files:  # the same file again: same bytes, same score
            data, score, bound = search.files[key]
        else:
            data, score, bound = search.try_file(rungs, key)
            search.files[key] = (data, score, bound)
        ok = _within(bound, max_drop)
        history.append((len(data), score, ok))
        if ok and (best is None or len(data) < len(best[0])):
            best = (data, score, dict(rungs), bound)
            search.bar.set_postfix(budget=max_drop, best_bytes=len(data), score=f"{score:.2f}")
        return ok

    if not per_layer:  # one setting for every layer (for comparison): per lambda, binary search over the steps
        for lam in sorted({s.rd_lambda for s in search.ladder}):
            order = [r for r in _ladder_order(search) if search.ladder[r].rd_lambda == lam]
            lo, hi = 0, len(order) - 1
            while lo <= hi and budget_left():
                mid = (lo + hi) // 2
                if consider({layer.name: order[mid] for layer in search.layers}):
                    lo = mid + 1
                else:
                    hi = mid - 1
        return _result(search, best, lossless_data, baseline, threshold, history)

    for layer in search.layers:  # keeping a layer exact is always possible, and costs no score
        layer.points[LOSSLESS_RUNG] = (search.components(layer, LOSSLESS_RUNG)[1], 0.0)
    fronts = {layer.name: _front(layer.points) for layer in search.layers}

    # Lagrangian allocation: one combination per mu, then a binary search on the real score
    combos: dict[tuple, int] = {}
    for mu in np.geomspace(1e0, 1e9, 91):
        pick = tuple(min(fronts[layer.name], key=lambda p: p[0] + mu * p[1])[2] for layer in search.layers)
        combos[pick] = _predicted_bytes(search, {layer.name: r for layer, r in zip(search.layers, pick, strict=True)})
    ranked = sorted(combos, key=lambda k: combos[k])  # smallest predicted file first
    lo, hi = 0, len(ranked) - 1
    while lo <= hi and budget_left():
        mid = (lo + hi) // 2
        if consider({layer.name: r for layer, r in zip(search.layers, ranked[mid], strict=True)}):
            hi = mid - 1
        else:
            lo = mid + 1
    if best is None and budget_left():  # even the finest combination failed: the finest rung everywhere
        consider({layer.name: fronts[layer.name][-1][2] for layer in search.layers})

    # greedy refinement: one layer one or two rungs coarser at a time, while the real score holds
    failed: set[tuple[str, int]] = set()
    while best is not None and budget_left():
        current = best[2]
        moves = []
        for layer in search.layers:
            front = fronts[layer.name]
            pos = next((i for i, p in enumerate(front) if p[2] == current[layer.name]), None)
            for ahead in (1, 2):
                if pos is None or pos - ahead < 0 or (layer.name, front[pos - ahead][2]) in failed:
                    continue
                (b1, d1, r1), (b0, d0, _) = front[pos - ahead], front[pos]
                moves.append(((d1 - d0) / max(b0 - b1, 1), layer.name, r1))
        improved = False
        for _, name, r1 in sorted(moves):
            if not budget_left():
                break
            size_before = len(best[0])
            if consider({**best[2], name: r1}) and len(best[0]) < size_before:
                improved = True
                break
            failed.add((name, r1))
        if not improved:
            break

    if best is not None and not _confirmed(search, best[2], max_drop):
        # the held-out odd half refused the smallest file: try finer combinations, each predicted
        # larger than the refused one, instead of ending with the lossless file and evaluations unused.
        # At most RECONFIRMATIONS of them reach the odd half, so it is consulted a bounded number of times.
        floor = _predicted_bytes(search, best[2])
        confirmations = 0
        for key in ranked:
            if confirmations >= RECONFIRMATIONS or not budget_left():
                break
            rungs = {layer.name: r for layer, r in zip(search.layers, key, strict=True)}
            if combos[key] <= floor or key in search.files:
                continue
            if consider(rungs):
                confirmations += 1
                if _confirmed(search, rungs, max_drop):
                    break
    return _result(search, best, lossless_data, baseline, threshold, history)


RECONFIRMATIONS = 3  # finer files put to the odd-half confirmation after the chosen one failed it


def _confirmed(search: _Search, rungs: dict[str, int], max_drop: float) -> bool:
    """Whether a scored file passes the confirmation on the odd samples (always, without one)."""
    key = tuple(rungs[layer.name] for layer in search.layers)
    return key not in search.confirm_bounds or _within(search.confirm_bounds[key][0], max_drop)


def _predicted_bytes(search: _Search, rungs: dict[str, int]) -> int:
    """The file's size as the scan's per-layer coded sizes add up (no file is encoded)."""
    return sum(search.components(layer, rungs[layer.name])[1] for layer in search.layers)


def _best_of_all(search: _Search, result: BudgetResult, lossless_data: bytes) -> BudgetResult:
    """The smallest file scored for any budget that meets this one; with confirmation, it must also
    pass the test on the held-out odd samples (and its reported bound is that of all samples)."""
    best = None
    max_drop = result.baseline - result.threshold
    for key, (data, score, bound) in search.files.items():
        if not _within(bound, max_drop) or (best is not None and len(data) >= len(best[0])):
            continue
        if key in search.confirm_bounds:
            odd, full = search.confirm_bounds[key]
            if not _within(odd, max_drop):
                continue
            bound = full
        best = (data, score, {layer.name: r for layer, r in zip(search.layers, key, strict=True)}, bound)
    again = _result(search, best, lossless_data, result.baseline, result.threshold, result.history)
    again.evaluations = result.evaluations
    return again


def _result(search: _Search, best, lossless_data: bytes, baseline: float, threshold: float,
            history: list[tuple[int, float, bool]]) -> BudgetResult:
    sens = {layer.name: [(str(search.ladder[r]), b, d) for r, (b, d) in sorted(layer.points.items()) if r >= 0]
            for layer in search.layers}
    conf = search.confidence if search.base_samples is not None else None
    if best is None or len(lossless_data) <= len(best[0]):
        return BudgetResult(lossless_data, baseline, baseline, threshold, {layer.name: "lossless" for layer in search.layers},
                            search.evaluations, history, sens, confidence=conf)
    data, score, rungs, bound = best
    choice = {layer.name: search.ladder[r] if (r := rungs[layer.name]) >= 0 else LOSSLESS for layer in search.layers}
    return BudgetResult(data, score, baseline, threshold, {k: str(v) for k, v in choice.items()}, search.evaluations,
                        history, sens, choice, search.small_lossless, bound, conf)


def encode_with_settings(tensors: Mapping[str, Any], choice: Mapping[str, Setting], *,
                         statistics: Mapping[str, LayerStats] | None = None, per_channel: bool = False,
                         small_rel_error: float = 2.0**-6, small_lossless: bool = False, prefer: str = "balanced",
                         contexts: bool = True, metadata: Mapping[str, str] | None = None,
                         min_layer_numel: int = 256, iterations: int = 2, optq: bool = True) -> bytes:
    """Encode `tensors` with a per-layer choice found by the search (BudgetResult.choice): the same
    options give the same bytes, so a search's result can be reproduced (and timed) without it."""
    settings = sorted(set(choice.values()) - {LOSSLESS}, key=lambda s: (s.rd_lambda, s.rel_step)) or [Setting(1.0, 0.0)]
    search = _Search(tensors, lambda state: 0.0, statistics=statistics,
                     rel_steps=[s.rel_step for s in settings], lambdas=[0.0], per_channel=per_channel,
                     small_rel_error=small_rel_error, options=EncodeOptions(prefer=prefer, contexts=contexts),
                     metadata=_check_metadata(metadata), min_layer_numel=min_layer_numel, progress=False,
                     iterations=iterations, optq=optq)
    search.ladder = settings
    if small_lossless:
        search.small_lossless = True
        search.fixed = {n: lossless(search.arrays[n][1], search.arrays[n][0]) for n in search.fixed}
    missing = [layer.name for layer in search.layers if layer.name not in choice]
    if missing:
        raise BadArgumentError(f"no setting for {', '.join(missing)}")
    try:
        return search.encode({layer.name: LOSSLESS_RUNG if choice[layer.name] == LOSSLESS else
                              settings.index(choice[layer.name]) for layer in search.layers})
    finally:
        search.bar.close()


def compress_to_budget(tensors: Mapping[str, Any], evaluate: Callable[[dict], float], max_drop: float,
                       **options: Any) -> bytes:
    """The bytes of the smallest .nnc file found whose decoded tensors score at least
    evaluate(tensors) - max_drop.

    `tensors` is a state dict (torch tensors or numpy arrays); `evaluate(decoded) -> float` scores a
    decoded state dict of the same kind (higher is better), computed on held-out validation data, never
    on the test set; returning per-sample scores makes the search accept a file only when the upper
    confidence bound of the paired drop is within max_drop (see the module doc). Options (see `search_budgets`):
    statistics (weight name -> LayerStats from nncodec.models.layer_statistics: OPTQ error
    feedback and bias correction), rel_steps, lambdas, per_channel, per_layer, small_rel_error,
    prefer, contexts, metadata, max_evals, confidence, margin, confirm, progress (default: no progress bar).
    If no lossy file keeps the score, the lossless file is returned.
    """
    return search_budget(tensors, evaluate, max_drop, **options).data
