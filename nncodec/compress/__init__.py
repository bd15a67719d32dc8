"""Compressors: turn tensors into components (`RawTensor`, `QuantTensor`). They never write bytes."""

from .lossless import lossless
from .uniform import quantize_uniform

__all__ = ["lossless", "quantize_uniform"]
