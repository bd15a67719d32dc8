"""Shared helpers for the benchmarks: timing medians, a machine description, checkpoint loading.

Data and models come from the CLI's presets (nncodec_cli.presets: fashion_mnist, lenet).
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

MB = 1e6  # throughput is reported in MB = 10**6 bytes of raw tensor data


def median_seconds(fn: Callable[[Any], Any], repeats: int = 5, setup: Callable[[], Any] | None = None,
                   min_total: float = 0.5, max_repeats: int = 100) -> tuple[float, Any]:
    """Median wall time of `fn(setup())` (setup not timed) and the last result.

    At least `repeats` runs, more (up to `max_repeats`) until `min_total` seconds have been timed, so
    fast methods get enough samples. Medians, not means: other processes share this machine and
    produce occasional slow outliers.
    """
    times: list[float] = []
    result = None
    while len(times) < repeats or (sum(times) < min_total and len(times) < max_repeats):
        arg = setup() if setup is not None else None
        t0 = time.perf_counter()
        result = fn(arg)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, CPU only, Python {platform.python_version()}, {platform.system()}"


def load_average() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The tensors of a checkpoint, read by nncodec's own reader (torch.load(weights_only=True) or safetensors)."""
    from nncodec.io import read_checkpoint

    tensors, _meta, _notes = read_checkpoint(path)
    return tensors
