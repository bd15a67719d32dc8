"""One module per component kind; each encodes with several models and keeps the smallest."""

from . import chunks, levels, levels_ctx, mask, mask_ctx, pairs, pip, quantizer, raw
from .base import DEFAULT_OPTIONS, PREFER_CHOICES, DecodeContext, Encoded, EncodeOptions

COMPONENT_KINDS = ("raw", "mask", "levels", "quantizer", "pip")

__all__ = ["raw", "chunks", "pairs", "mask", "levels", "quantizer", "pip", "mask_ctx", "levels_ctx", "Encoded", "EncodeOptions", "DecodeContext",
           "DEFAULT_OPTIONS", "PREFER_CHOICES", "COMPONENT_KINDS"]
