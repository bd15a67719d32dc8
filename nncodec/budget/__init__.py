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
number of evaluate() calls of the whole search (baseline and scan included). With several budgets
(`search_budgets`) each gets an equal share of what the scan left; a budget that ends with nothing
found then gets the evaluations the others left unused (the search continues where it stopped).

How it allocates (per layer, by sensitivity, not one global setting):
  1. Sensitivity scan: each large weight tensor ("layer") is quantized alone on a ladder of step
     sizes (0.125 to 16 times its standard deviation) and RD lambdas while all others stay exact,
     and its drop, damage (the squared rate of changed samples; see Search.steer) and coded size
     are measured on the samples the search steers on: first every other step (lambda 0) from
     0.5 sd coarser until the drop is far over budget (and finer while 0.5 sd already hurts), then
     the rungs in between and the other lambdas where they matter. Keeping a layer exact is a rung
     too (it costs no score).
  2. Allocation: per layer, a monotone fit of the measured damage against the layer's weight (or,
     with statistics, output) error predicts the damage of EVERY rung, measured or not (model.py);
     the rungs on the size/damage Pareto front enter a Lagrangian sweep (minimise size + mu *
     damage per layer, damage adds over layers), which gives one combination per mu, and a binary
     search over those finds the smallest combination that really keeps the score.
  3. Refinement: greedily move single layers one or two rungs coarser while the real score stays
     in budget, cheapest predicted damage per byte saved first. A file scored for one budget counts
     for every budget it meets.
Small tensors (biases, norms) get a fine step; with calibration `statistics` (see
nncodec.compress.layer_inputs.layer_statistics) weights are quantized with OPTQ and the biases corrected.
"""

from __future__ import annotations

from .accept import RECONFIRMATIONS
from .entry import compress_to_budget, encode_with_settings, search_budget, search_budgets
from .search import DEFAULT_LAMBDAS, DEFAULT_REL_STEPS, LOSSLESS, BudgetResult, Setting

__all__ = ["DEFAULT_LAMBDAS", "DEFAULT_REL_STEPS", "LOSSLESS", "RECONFIRMATIONS", "BudgetResult", "Setting",
           "compress_to_budget", "encode_with_settings", "search_budget", "search_budgets"]
