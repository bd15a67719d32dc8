"""A switching mixture of conditional models (Blier & Ollivier 2018, §3.2 "switching"; fixed-share).

Predictors are (member, temperature) pairs: member i's float64 softmax of its logits divided by
the temperature (a `uniform` member counts once). Each label is coded under Σ_j w_j p_j; after it,
every weight is multiplied by the probability its predictor gave the coded label, renormalised,
then mixed with the uniform weights: w ← (1 − share)·w + share / J. So the weights depend on the
labels already coded only (both directions compute them identically, in float64), the code is at
most log2(J) bits (plus the switching cost) longer than that of the best sequence of predictors,
and the early blocks, where a fresh model is worse than uniform, cost little.

Each member trains on its own: initialised with seed + i, its own Adam and its own Generator
seeded with seed + i, on the same labels and schedule (the header's `train`).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from ..errors import FormatError
from ..limits import Limits
from .models import UniformModel, build, probabilities


class Mixture:
    kind = "conditional"

    def __init__(self, members: list, temps: list[float], share: float) -> None:
        self.members = members
        self.alphabet = members[0].alphabet
        self.share = share
        self.predictors = [(i, t) for i, m in enumerate(members)
                           for t in ([1.0] if isinstance(m, UniformModel) else temps)]
        self.weights = np.full(len(self.predictors), 1.0 / len(self.predictors))

    def _featurisers(self) -> dict:
        return {m.featuriser(): m for m in self.members if hasattr(m, "featuriser")}

    def feature_bytes(self, n: int) -> int:
        return sum(m.feature_bytes(n) for m in self._featurisers().values())

    def prepare(self, inputs: np.ndarray) -> list[np.ndarray]:
        """Each member's inputs: its features (computed once per distinct featuriser) or the inputs."""
        done = {key: m.prepare(inputs) for key, m in self._featurisers().items()}
        return [done[m.featuriser()] if hasattr(m, "featuriser") else inputs for m in self.members]

    def tables(self, inputs: list[np.ndarray], idx: np.ndarray) -> np.ndarray:
        """[J, batch, K] float64 probability tables of every predictor for inputs idx."""
        logits = [m.logits(torch.from_numpy(np.ascontiguousarray(x[idx]))).detach().to(torch.float64)
                  for m, x in zip(self.members, inputs, strict=True)]
        return np.stack([probabilities(logits[i] / t) for i, t in self.predictors])

    def table(self, tables: np.ndarray, t: int) -> np.ndarray:
        """The mixture's [1, K] table for symbol t of a batch."""
        return (self.weights @ tables[:, t, :])[None, :]

    def observe(self, likelihoods: np.ndarray) -> None:
        """Bayes update by each predictor's probability of the coded symbol, then fixed share."""
        w = self.weights * likelihoods
        total = w.sum()
        w = w / total if total > 0 else np.full(len(w), 1.0 / len(w))
        self.weights = (1.0 - self.share) * w + self.share / len(w)


MAX_MEMBERS = 8
MAX_TEMPS = 8
MEMBER_ARCHS = ("mlp", "cnn", "patchpca", "uniform")


def _decimal(v: object, what: str, lo: float, hi: float) -> float:
    try:
        x = float(v) if isinstance(v, str) else float("nan")
    except ValueError:
        x = float("nan")
    if not lo <= x <= hi:  # also false for nan
        raise FormatError(f"mix {what} must be a decimal string in [{lo}, {hi}], got {v!r}")
    return x


def build_mix(spec: dict, seed: int, limits: Limits) -> Mixture:
    """The mixture a `mix` spec describes; member i built from seed + i. The members' parameters
    together stay within `limits.max_dataset_model_parameters` (checked member by member, before
    allocation, against what is left)."""
    if set(spec) != {"arch", "members", "temps", "share"}:
        raise FormatError(f"mix spec needs exactly members, temps and share, got {sorted(spec)}")
    members, temps = spec["members"], spec["temps"]
    if not isinstance(members, list) or not 1 <= len(members) <= MAX_MEMBERS:
        raise FormatError(f"mix members must be a list of 1 to {MAX_MEMBERS} model specs")
    if not isinstance(temps, list) or not 1 <= len(temps) <= MAX_TEMPS:
        raise FormatError(f"mix temps must be a list of 1 to {MAX_TEMPS} decimal strings")
    ts = [_decimal(t, "temperature", 0.05, 20.0) for t in temps]
    share = _decimal(spec["share"], "share", 0.0, 1.0)
    for m in members:
        if not isinstance(m, dict) or m.get("arch") not in MEMBER_ARCHS:
            raise FormatError(f"mix members must be specs of arch {', '.join(MEMBER_ARCHS)}")
    left, built = limits.max_dataset_model_parameters, []
    for i, m in enumerate(members):
        model = build(m, seed + i, replace(limits, max_dataset_model_parameters=left))
        left -= sum(p.numel() for p in model.parameters())
        built.append(model)
    if len({m.alphabet for m in built}) != 1:
        raise FormatError("mix members must have the same classes")
    return Mixture(built, ts, share)
