"""Compressors: turn tensors into components (`RawTensor`, `QuantTensor`). They never write bytes."""

from .calibrate import LayerStats, bias_correction
from .config import CONFIGS, LossyConfig, get_config, make_compressor
from .kmeans import quantize_kmeans
from .lossless import lossless
from .prune import global_masks, magnitude_mask
from .rdoq import quantize_rdoq
from .uniform import quantize_uniform, step_for_bits, step_for_relative_error

__all__ = ["lossless", "quantize_uniform", "step_for_bits", "step_for_relative_error", "quantize_rdoq",
           "quantize_kmeans", "magnitude_mask", "global_masks", "LayerStats", "bias_correction",
           "LossyConfig", "CONFIGS", "get_config", "make_compressor"]
