"""Resource limits checked before anything read from a file is allocated.

Defaults are generous enough for a 70B-parameter checkpoint and tight against decompression bombs:
every count in a file is also checked against the file's own size where it implies bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import LimitExceededError


@dataclass(frozen=True)
class Limits:
    max_header_bytes: int = 64 * 2**20
    max_tensors: int = 1_000_000
    max_sections: int = 4_000_000
    max_ndim: int = 16
    max_elements_per_tensor: int = 2**34
    max_total_decoded_bytes: int = 2**40
    max_metadata_bytes: int = 16 * 2**20
    max_json_depth: int = 32
    max_nesting_depth: int = 1
    max_alphabet: int = 2**20
    max_decode_memory_bytes: int = 2**36  # modelled peak of decoding one tensor (decode_memory.py)

    def check(self, what: str, value: int, limit: int) -> None:
        """Raise LimitExceededError when value > limit, naming the limit the user can raise."""
        if value > limit:
            raise LimitExceededError(f"{what} is {value}, over the limit of {limit}")


DEFAULT_LIMITS = Limits()
