"""Input-feature inclusion probabilities from the PIPs of a chain of layers.

Why not `elbo.input_feature_pip` (1 - prod over a first-layer column of (1 - phi)) for feature
selection: that is the probability that at least one *first-layer* weight of the input is included,
and it counts weights into hidden units that are themselves switched off. Such a weight has no
effect on the likelihood (its slope Delta is 0), so at convergence its posterior is its prior,
phi = lambda, and with H hidden units the column's value tends to 1 - (1 - lambda)^H whatever the
data say (0.88 for lambda = 0.1 and 20 dead units of 32: benchmarks/RESULTS.md, "Feature selection
on fresh seeds (session 5)"). The quantity that says whether the model *uses* an input is the
probability that it is connected to an output by a path of included weights:

    r_out = 1 for every output unit,
    r_i = 1 - prod_j (1 - phi_ji r_j)          (phi_ji: weight from unit i to unit j of the next layer),

applied from the last layer back to the first. Under the mean-field posterior (independent z) this
is exact for one hidden layer (the paths of input i through different hidden units share no weight);
with more hidden layers paths share weights and the recursion treats them as independent (an
approximation). Kernel positions of a Conv weight count as parallel edges between two channels.

Why `complementary_halves` / `selection_frequency`: even with the path PIP, one fit on all the data
can include a noise input correlated with a true one through a single weight with phi ~ 1 (a small
in-sample gain found among ~1,600 candidate weights, or a proxy for a true input the sparse fit
under-models); which noise input that is changes from fit to fit. Stability selection over
complementary pairs of half-samples (Meinshausen & Buehlmann 2010; Shah & Samworth 2013) keeps an
input only if the fits on most half-samples use it: the mean of the per-fit feature PIPs > 0.5.
"""


from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from ...errors import BadArgumentError


def _edges(pip: torch.Tensor) -> torch.Tensor:
    """(out, in, *kernel) -> (out, in, positions) in float64, clamped to [0, 1]."""
    p = pip.detach().double().clamp(0, 1)
    if p.dim() < 2:
        raise BadArgumentError(f"a layer's PIPs need shape (out, in, ...), not {tuple(p.shape)}")
    return p.reshape(p.shape[0], p.shape[1], -1)


def path_feature_pip(chain: Sequence[torch.Tensor]) -> torch.Tensor:
    """P(input i reaches an output through included weights) for the PIPs of a chain of layers, first
    layer first (each of shape (out, in, *kernel); one layer's `out` must be the next one's `in`)."""
    if not chain:
        raise BadArgumentError("path_feature_pip needs the PIPs of at least one layer")
    edges = [_edges(p) for p in chain]
    for a, b in zip(edges, edges[1:], strict=False):
        if a.shape[0] != b.shape[1]:
            raise BadArgumentError(f"layers do not chain: {a.shape[0]} outputs feed {b.shape[1]} inputs")
    reach = torch.ones(edges[-1].shape[0], dtype=torch.float64)
    for p in reversed(edges):
        # log(1 - phi_ji r_j) summed over j and kernel positions; log1p keeps small phi accurate
        reach = -torch.expm1(torch.log1p(-(p * reach[:, None, None]).clamp(max=1 - 1e-15)).sum(dim=(0, 2)))
    return reach.float()


def model_feature_pip(pips: Mapping[str, torch.Tensor], order: Sequence[str]) -> torch.Tensor:
    """`path_feature_pip` of `pips` (e.g. `model.spike_slab_pips`) taken in the layer order `order`
    (the names of the weights from the input to the output)."""
    missing = [n for n in order if n not in pips]
    if missing:
        raise BadArgumentError(f"no PIPs for {', '.join(missing)}")
    return path_feature_pip([pips[n] for n in order])


def select_features(feature_pip: torch.Tensor, threshold: float = 0.5) -> list[int]:
    """The inputs whose feature PIP exceeds `threshold` (0.5: the median-probability rule on the
    event "the input is used"), in increasing order."""
    return [int(i) for i in torch.nonzero(feature_pip > threshold).reshape(-1)]


def complementary_halves(n: int, pairs: int, seed: int = 0) -> list[torch.Tensor]:
    """`2 * pairs` index sets: each pair splits a random permutation of range(n) into two disjoint
    halves (complementary pairs: every example is in exactly half of the subsamples)."""
    if n < 2 or pairs < 1:
        raise BadArgumentError("need n >= 2 examples and pairs >= 1")
    out = []
    for b in range(pairs):
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + b))
        out += [perm[: n // 2].sort().values, perm[n // 2 :].sort().values]
    return out


def selection_frequency(feature_pips: Sequence[torch.Tensor]) -> torch.Tensor:
    """The mean of per-fit feature PIPs (with 0/1 PIPs: the fraction of fits that use each input)."""
    if not feature_pips:
        raise BadArgumentError("selection_frequency needs at least one fit")
    return torch.stack([p.float() for p in feature_pips]).mean(dim=0)
