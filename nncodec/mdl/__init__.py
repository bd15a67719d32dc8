"""Dataset description length: data coded under a model, in one .nnc file that decodes back to it.

Pieces other data kinds reuse: `models` (a probability table per symbol from a declarative
spec), `coder` (constriction's range coder with an exact-end check), `schedule` (streams and
prequential blocks), `drivers`/`sides` (one code path for both directions), `train`
(deterministic, replayable training) and `env` (what decoding depends on, recorded and checked).
"""

from .codes import EncodeSettings
from .dataset_file import LEVELS, EncodeReport, decode, encode
from .env import EnvironmentMismatchError
from .kinds import SideInfo
from .train import TrainConfig

__all__ = ["encode", "decode", "EncodeSettings", "EncodeReport", "TrainConfig", "SideInfo",
           "EnvironmentMismatchError", "LEVELS"]
