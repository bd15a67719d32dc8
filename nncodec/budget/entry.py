"""The public entry points: search_budgets / search_budget / compress_to_budget, and
encode_with_settings to reproduce a search's file from its choice."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..api import _check_metadata
from ..codecs.base import EncodeOptions
from ..compress.calibrate import LayerStats
from ..compress.lossless import lossless
from ..confidence import DEFAULT_CONFIDENCE, z_value
from ..errors import BadArgumentError
from ..tensorwriter import encode_file
from .accept import best_of_all
from .allocate import allocate
from .scan import scan
from .search import DEFAULT_LAMBDAS, DEFAULT_REL_STEPS, LOSSLESS, LOSSLESS_RUNG, BudgetResult, Search, Setting


def validate_options(max_drops: Sequence[float], rel_steps: Sequence[float], lambdas: Sequence[float], max_evals: int,
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
    whole search: about half go to the sensitivity scan, the rest is shared by the budgets; a budget
    that found nothing gets what the others left unused, see `reallocate`),
    iterations (RDOQ passes), optq (False: with statistics, only the bias correction, no error
    feedback), confidence (level of the one-sided bound when evaluate returns per-sample scores),
    margin (scalar evaluators: points added to the observed drop), confirm (per-sample evaluators:
    steer on the even samples, confirm the answer on the odd ones; see the module doc), progress (True: a tqdm bar on
    stderr; None/False: silent, the library default).
    """
    drops = [float(d) for d in max_drops]
    validate_options(drops, rel_steps, lambdas, max_evals, confidence, margin)
    if not drops:
        return []
    options = EncodeOptions(prefer=prefer, contexts=contexts)
    search = Search(tensors, evaluate, statistics=statistics, rel_steps=rel_steps, lambdas=lambdas,
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
            scan(search, max(2.0 * max(drops), max(drops) + 1.0), min(drops) / 4, scan_limit)
        results = []
        for i, d in enumerate(drops):
            allowance = search.left() // (len(drops) - i)  # the budgets share what the scan left
            results.append(allocate(search, baseline, d, per_layer, allowance, lossless_data))
        return reallocate(search, baseline, drops, results, per_layer, lossless_data)
    finally:
        search.bar.close()


def reallocate(search: Search, baseline: float, drops: Sequence[float], results: list[BudgetResult],
               per_layer: bool, lossless_data: bytes) -> list[BudgetResult]:
    """The final answer per budget; a budget that found nothing gets the evaluations the others left.

    The first pass gives each budget an equal share of what the scan left, and a budget that finished
    early passes its rest on only to the budgets searched after it. So a budget searched early (e.g.
    the tightest one) could end with the lossless file, its share spent, while a later one finished
    with evaluations unused. Here every budget whose answer is still lossless (nothing lossy accepted
    and confirmed, counting files scored for the other budgets) is searched again with an equal share
    of what is left; `allocate` continues where it stopped, so nothing is paid twice. Repeated while
    such a budget remains and the last round spent an evaluation; `max_evals` stays a hard cap,
    because every share comes out of search.left()."""
    # a file scored for one budget may be the smallest that meets another: pick from all of them
    final = [best_of_all(search, r, lossless_data) for r in results]
    while search.left() > 0:
        empty = [i for i, r in enumerate(final) if not r.choice]
        spent = search.evaluations
        for j, i in enumerate(empty):
            allowance = search.left() // (len(empty) - j)
            if allowance > 0:
                results[i] = allocate(search, baseline, drops[i], per_layer, allowance, lossless_data)
        final = [best_of_all(search, r, lossless_data) for r in results]
        if search.evaluations == spent:  # nothing left to try (or no budget needs it)
            break
    return final


def search_budget(tensors: Mapping[str, Any], evaluate: Callable[[dict], float], max_drop: float,
                  **options: Any) -> BudgetResult:
    """Like `compress_to_budget`, returning the search's record as well (see BudgetResult)."""
    return search_budgets(tensors, evaluate, [max_drop], **options)[0]

def encode_with_settings(tensors: Mapping[str, Any], choice: Mapping[str, Setting], *,
                         statistics: Mapping[str, LayerStats] | None = None, per_channel: bool = False,
                         small_rel_error: float = 2.0**-6, small_lossless: bool = False, prefer: str = "balanced",
                         contexts: bool = True, metadata: Mapping[str, str] | None = None,
                         min_layer_numel: int = 256, iterations: int = 2, optq: bool = True) -> bytes:
    """Encode `tensors` with a per-layer choice found by the search (BudgetResult.choice): the same
    options give the same bytes, so a search's result can be reproduced (and timed) without it."""
    settings = sorted(set(choice.values()) - {LOSSLESS}, key=lambda s: (s.rd_lambda, s.rel_step)) or [Setting(1.0, 0.0)]
    search = Search(tensors, lambda state: 0.0, statistics=statistics,
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
    statistics (weight name -> LayerStats from nncodec.compress.layer_inputs.layer_statistics: OPTQ error
    feedback and bias correction), rel_steps, lambdas, per_channel, per_layer, small_rel_error,
    prefer, contexts, metadata, max_evals, confidence, margin, confirm, progress (default: no progress bar).
    If no lossy file keeps the score, the lossless file is returned.
    """
    return search_budget(tensors, evaluate, max_drop, **options).data
