"""nncodec: compressed neural-network files whose size is the model's exact description length.

    import nncodec
    nncodec.save_file(model.state_dict(), "model.nnc")
    tensors = nncodec.load_file("model.nnc")
    with nncodec.open("model.nnc") as f:
        w = f.get_tensor("fc1.weight"); report = f.info()
"""

from .api import NncFile, load, load_file, load_into, open, save, save_file
from .budget import compress_to_budget
from .codecs.base import EncodeOptions
from .collection import load_model, model_names
from .components import Quantizer, QuantTensor, RawTensor
from .compress.vae import VaeOptions, vae_compress
from .errors import (
                     BadArgumentError,
                     ClosedFileError,
                     CorruptFileError,
                     FormatError,
                     LimitExceededError,
                     NNCodecError,
                     UnsupportedInputError,
                     UnsupportedVersionError,
)
from .limits import DEFAULT_LIMITS, Limits

__version__ = "0.1.0"

__all__ = [
    "save_file", "load_file", "open", "load_into", "save", "load", "NncFile", "compress_to_budget",
    "EncodeOptions", "Limits", "DEFAULT_LIMITS", "RawTensor", "QuantTensor", "Quantizer",
    "NNCodecError", "FormatError", "CorruptFileError", "UnsupportedVersionError",
    "LimitExceededError", "BadArgumentError", "UnsupportedInputError", "ClosedFileError",
    "vae_compress", "VaeOptions", "load_model", "model_names",
]
