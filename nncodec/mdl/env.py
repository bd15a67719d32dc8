"""Determinism: what decoding depends on besides the file, recorded at encoding and checked at decoding.

The model's probabilities are computed in float arithmetic by torch, so bit-identical tables on
both sides need the same code path (one function computes them for the encoder and the decoder),
the same thread count (1, set while coding and training), the same library versions, the same
platform and the same CPU kernel family: torch, oneDNN and MKL pick their float kernels by the CPU's
instruction set (and MKL by its vendor), and an AVX2 and an AVX-512 machine round differently, so a
file coded on one does not decode on the other. The encoder records them in the header; the decoder
compares before doing any work and stops with EnvironmentMismatchError on a difference, unless told to try anyway (then a wrong
table still cannot pass silently: the stream check and the data hash catch it).
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

from ..errors import NNCodecError

THREADS = 1
# A cm model (cm.py) computes in integers: only constriction's quantisation of its float64
# probabilities (p / 4096, exact) depends on the environment, so only its version is compared.
CM_KEYS = ("constriction",)
# Keys added after files were first written: a file that lacks one is compared on the others (the
# exact-end and sha256 checks still refuse a wrong table), so older files keep decoding where they did.
LATER_KEYS = ("cpu",)
# Variables that override the kernel choice of torch (ATen), oneDNN and MKL: part of the kernel family.
ISA_OVERRIDES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS",
                 "MKL_DEBUG_CPU_TYPE")


class EnvironmentMismatchError(NNCodecError):
    """The file was coded where torch/constriction/platform/threads differ from this reader's."""


def current() -> dict[str, str]:
    import constriction
    import numpy
    import torch

    return {
        "torch": torch.__version__,
        "constriction": _version("constriction", constriction),
        "numpy": numpy.__version__,
        "platform": f"{platform.system()}-{platform.machine()}",
        "threads": str(THREADS),
        "cpu": cpu_kernels(),
    }


def cpu_kernels() -> str:
    """The CPU kernel family float results depend on: torch's dispatch level (e.g. `avx2`, `avx512`), the
    CPU vendor (MKL takes vendor-specific paths) and any variable that overrides either choice."""
    import torch

    parts = [torch.backends.cpu.get_cpu_capability().lower(), _cpu_vendor()]
    parts += [f"{k}={os.environ[k]}" for k in ISA_OVERRIDES if k in os.environ]
    return "-".join(p for p in parts if p)


VENDORS = {"GenuineIntel": "intel", "AuthenticAMD": "amd"}  # short names: every dataset header carries one


@cache
def _cpu_vendor() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(("vendor_id", "CPU implementer")):
                    vendor = line.split(":", 1)[1].strip()
                    return VENDORS.get(vendor, vendor)
    except OSError:
        pass
    return platform.processor()


def _version(name: str, module: object) -> str:
    v = getattr(module, "__version__", None)
    if v:
        return str(v)
    from importlib.metadata import version

    return version(name)


def differences(recorded: dict[str, str], keys: tuple[str, ...] | None = None) -> list[str]:
    """What differs between `recorded` and this environment in `keys` (default all); a key added after a
    file was written (LATER_KEYS) is compared only when the file has it."""
    here = current()
    compared = [k for k in (keys or here) if k in recorded or k not in LATER_KEYS]
    return [f"{k}: file {recorded.get(k)!r}, here {here[k]!r}" for k in compared if recorded.get(k) != here[k]]


def check(recorded: object, override: bool = False, keys: tuple[str, ...] | None = None) -> list[str]:
    """The differences between `recorded` and this environment (in `keys`: default all); raises unless `override`."""
    from ..errors import FormatError

    if not isinstance(recorded, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in recorded.items()):
        raise FormatError("dataset env must map strings to strings")
    diffs = differences(recorded, keys)
    if diffs and not override:
        raise EnvironmentMismatchError("decoding needs the environment the data was coded in (" + "; ".join(diffs)
                                       + "); pass --allow-env-mismatch to try anyway")
    return diffs


@contextmanager
def deterministic() -> Iterator[None]:
    """One thread and deterministic torch kernels while probabilities are computed or a model trains."""
    import torch

    threads = torch.get_num_threads()
    was = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(was)
