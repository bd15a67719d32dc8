"""Lossy compression settings, a registry of named configurations, and the per-tensor callback.

`LossyConfig` says how to compress one weight tensor (step from --step / --bits / --rel-error,
sparsity, RD lambda, per-channel steps, codebook); `make_compressor(config)` turns it into the
`compressor(name, tensor)` callback that `nncodec.save_file(..., compressor=...)` takes. Named
configurations live in `CONFIGS` (CompressAI style): `make_compressor("int8")`.

Which tensors are compressed how:
  * non-float tensors (ints, bool) stay lossless;
  * "small" tensors -- fewer than 2 dimensions (biases, normalization scales) or fewer than
    `small_numel` elements -- get a fine step (relative error `small_rel_error`) or, with
    small="lossless", stay lossless: they are cheap to store and errors in them hurt most;
  * everything else is quantized as the config says.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from ..components import QuantTensor, RawTensor
from ..convert import to_numpy
from ..dtypes import DType
from ..errors import BadArgumentError
from .calibrate import LayerStats
from .kmeans import quantize_kmeans
from .prune import global_masks, magnitude_mask
from .rdoq import quantize_rdoq
from .uniform import default_axis, levels_to_quant_tensor, step_for_bits, step_for_relative_error

SMALL_CHOICES = ("fine", "lossless")
ZEROS_CHOICES = ("auto", "mask", "levels")


@dataclass(frozen=True)
class LossyConfig:
    """How to compress each large float tensor. Exactly one of step / bits / rel_error / codebook
    sets the resolution; without any, rel_error=0.05 is used."""

    step: float | None = None  # absolute step size
    bits: int | None = None  # signed symmetric grid of this many bits over max|w|
    rel_error: float | None = None  # rounding noise (step/sqrt(12)) relative to the weights' RMS
    codebook: int | None = None  # k-means weight sharing with this many values
    sparsity: float = 0.0  # fraction of weights pruned by magnitude before quantization
    global_sparsity: bool = False  # one magnitude threshold across all large tensors
    rd_lambda: float = 0.0  # RDOQ trade-off, in step**2 per bit (0 = plain rounding)
    per_channel: bool = False  # one step per output channel (axis 0)
    small: str = "fine"  # "fine" or "lossless" for small tensors
    small_numel: int = 256
    small_rel_error: float = 2.0**-6
    zeros: str = "auto"  # zero levels as a mask, inside the levels, or whichever is smaller
    iterations: int = 3  # RDOQ passes (table -> levels -> table)

    def __post_init__(self) -> None:
        given = [k for k in ("step", "bits", "rel_error", "codebook") if getattr(self, k) is not None]
        if len(given) > 1:
            raise BadArgumentError(f"choose one of --step, --bits, --rel-error, --codebook (got {', '.join(given)})")
        if self.step is not None and not (np.isfinite(self.step) and self.step > 0):
            raise BadArgumentError(f"step must be positive, got {self.step!r}")
        if self.bits is not None and not (isinstance(self.bits, int) and 1 <= self.bits <= 16):
            raise BadArgumentError(f"bits must be an integer in [1, 16], got {self.bits!r}")
        if self.rel_error is not None and not 0 < self.rel_error < 10:
            raise BadArgumentError(f"relative error must be in (0, 10), got {self.rel_error!r}")
        if self.codebook is not None and not (isinstance(self.codebook, int) and 1 <= self.codebook <= 65536):
            raise BadArgumentError(f"codebook size must be in [1, 65536], got {self.codebook!r}")
        if not 0.0 <= self.sparsity <= 1.0:
            raise BadArgumentError(f"sparsity must be in [0, 1], got {self.sparsity!r}")
        if not (np.isfinite(self.rd_lambda) and self.rd_lambda >= 0):
            raise BadArgumentError(f"RD lambda must be >= 0, got {self.rd_lambda!r}")
        if self.small not in SMALL_CHOICES:
            raise BadArgumentError(f"small must be one of {SMALL_CHOICES}, got {self.small!r}")
        if self.zeros not in ZEROS_CHOICES:
            raise BadArgumentError(f"zeros must be one of {ZEROS_CHOICES}, got {self.zeros!r}")
        if not 0 < self.small_rel_error < 10:
            raise BadArgumentError(f"small_rel_error must be in (0, 10), got {self.small_rel_error!r}")

    def describe(self) -> dict:
        """The settings that differ from the defaults (for metadata and reports)."""
        default = LossyConfig()
        return {k: v for k, v in asdict(self).items() if v != getattr(default, k)}


CONFIGS: dict[str, LossyConfig] = {
    "int8": LossyConfig(bits=8, per_channel=True),
    "int6": LossyConfig(bits=6, per_channel=True),
    "int4": LossyConfig(bits=4, per_channel=True, rd_lambda=0.02),
    "fine": LossyConfig(rel_error=0.02),
    "balanced": LossyConfig(rel_error=0.1, rd_lambda=0.02),
    "small": LossyConfig(rel_error=0.3, rd_lambda=0.05),
    "pruned": LossyConfig(rel_error=0.15, sparsity=0.7, rd_lambda=0.02),
    "codebook16": LossyConfig(codebook=16),
}
DEFAULT_CONFIG = LossyConfig()


def get_config(config: str | LossyConfig | None = None, **overrides: Any) -> LossyConfig:
    """A config from a registry name (or a LossyConfig), with keyword overrides (None = keep)."""
    if config is None:
        base = DEFAULT_CONFIG
    elif isinstance(config, LossyConfig):
        base = config
    elif config in CONFIGS:
        base = CONFIGS[config]
    else:
        raise BadArgumentError(f"unknown configuration {config!r}; choose one of {', '.join(CONFIGS)}")
    changes = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(changes) - set(LossyConfig.__dataclass_fields__)
    if unknown:
        raise BadArgumentError(f"unknown lossy options {sorted(unknown)}")
    resolution = {"step", "bits", "rel_error", "codebook"}
    if resolution & set(changes):  # a resolution given explicitly replaces the config's own
        changes = {**{k: None for k in resolution}, **changes}
    return replace(base, **changes)


def is_small(shape: tuple[int, ...], config: LossyConfig) -> bool:
    numel = int(np.prod(shape, dtype=np.int64)) if shape else 1
    return len(shape) < 2 or numel < config.small_numel


def fine_quantize(values: np.ndarray, dtype: DType, rel_error: float) -> QuantTensor:
    """Small tensors (biases, norm scales): a fine per-tensor step, every level stored."""
    x = np.asarray(values, dtype=np.float64)
    step = step_for_relative_error(x.reshape(-1), rel_error) if x.size else np.ones(1, np.float32)
    return quantize_rdoq(x, dtype, step, 0.0, zeros="levels")


def smaller_representation(t: QuantTensor) -> QuantTensor:
    """Zeros as a mask or inside the levels, whichever encodes to fewer bytes (exact, via the codecs)."""
    from .. import codecs

    if t.quantizer.mode != "uniform":
        return t
    full = np.zeros(t.shape, dtype=np.int64)
    if t.mask is None:
        full.reshape(-1)[:] = t.levels
    else:
        full[t.mask] = t.levels
    options = codecs.DEFAULT_OPTIONS
    variants = [levels_to_quant_tensor(full, t.dtype, t.quantizer.values, t.quantizer.axis, zeros=z)
                for z in ("mask", "levels")]

    def size(v: QuantTensor) -> int:
        rows = codecs.levels_ctx.row_counts(v.shape, v.mask)
        n = len(codecs.levels.encode(v.levels, options, rows).payload)
        return n + (len(codecs.mask.encode(v.mask, options).payload) if v.mask is not None else 0)

    return min(variants, key=size)


def _steps(x: np.ndarray, config: LossyConfig, axis: int | None) -> np.ndarray:
    if config.step is not None:
        return np.full(1 if axis is None else x.shape[axis], config.step, dtype=np.float32)
    if config.bits is not None:
        return step_for_bits(x, config.bits, axis)
    return step_for_relative_error(x, 0.05 if config.rel_error is None else config.rel_error, axis)


def quantize_weight(values: np.ndarray, dtype: DType, config: LossyConfig, *, mask: np.ndarray | None = None,
                    stats: LayerStats | None = None) -> QuantTensor:
    """Compress one large float tensor as `config` says (mask: survivors chosen beforehand)."""
    x = np.asarray(values, dtype=np.float64)
    if mask is None and config.sparsity > 0 and not config.global_sparsity:
        mask = magnitude_mask(x, config.sparsity)
    if config.codebook is not None:
        return quantize_kmeans(x, dtype, config.codebook, mask=mask)
    axis = default_axis(x.shape) if config.per_channel else None
    steps = _steps(x, config, axis)
    hessian = None
    if stats is not None and x.ndim >= 2 and stats.fan_in == x.size // x.shape[0]:
        hessian = stats.cov
    zeros = "mask" if config.zeros == "auto" else config.zeros
    t = quantize_rdoq(x, dtype, steps, config.rd_lambda, axis=axis, mask=mask, hessian=hessian,
                      iterations=config.iterations, zeros=zeros)
    return smaller_representation(t) if config.zeros == "auto" else t


Compressor = Callable[[str, Any], "RawTensor | QuantTensor | None"]


@dataclass
class _Callback:
    config: LossyConfig
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    statistics: Mapping[str, LayerStats] = field(default_factory=dict)

    def __call__(self, name: str, tensor: Any) -> RawTensor | QuantTensor | None:
        dt, arr = to_numpy(tensor, name)
        if dt.kind != "f":
            return None
        if dt.name == "bfloat16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)  # storage words -> values
        if not np.isfinite(arr).all():
            return None  # NaN/inf weights are kept exactly
        if is_small(arr.shape, self.config):
            return None if self.config.small == "lossless" else fine_quantize(arr, dt, self.config.small_rel_error)
        return quantize_weight(arr, dt, self.config, mask=self.masks.get(name), stats=self.statistics.get(name))


def make_compressor(config: str | LossyConfig | None = None, *, tensors: Mapping[str, Any] | None = None,
                    statistics: Mapping[str, LayerStats] | None = None, **overrides: Any) -> Compressor:
    """The per-tensor callback for `nncodec.save_file(..., compressor=...)`.

    `config` is a registry name or a LossyConfig; keyword overrides (step=, bits=, sparsity=,
    rd_lambda=, per_channel=, codebook=, ...) change it. `tensors` is needed for global sparsity
    (one threshold over all large tensors); `statistics` (weight name -> LayerStats) turns on OPTQ.
    """
    cfg = get_config(config, **overrides)
    masks: dict[str, np.ndarray] = {}
    if cfg.global_sparsity and cfg.sparsity > 0:
        if tensors is None:
            raise BadArgumentError("global sparsity needs all tensors: pass tensors= to make_compressor")
        large = {}
        for name, value in tensors.items():
            dt, arr = to_numpy(value, name)
            if dt.kind == "f" and dt.name != "bfloat16" and not is_small(arr.shape, cfg):
                large[name] = arr
        masks = global_masks(large, cfg.sparsity)
    return _Callback(cfg, masks, dict(statistics or {}))
