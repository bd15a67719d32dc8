"""VAE compression of parameter chunks (arXiv 2408.14513), decoder and residual counted in the file."""

from .chunks import from_chunks, to_chunks
from .compress import VaeOptions, VaeResult, vae_compress

__all__ = ["vae_compress", "VaeOptions", "VaeResult", "to_chunks", "from_chunks"]
