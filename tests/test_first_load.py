"""The first load in a process costs what the data costs: the decode path imports nothing on first use.

Why: a checkpoint is usually loaded once per process, so a lazy import on the decode path is paid by every
user on every start. `np.unique` in the `pairs` table check imported numpy.ma on its first call (~10 ms,
two thirds of a first load of a 5.7 MB checkpoint), which a warm benchmark loop never showed.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

CODE = """
import sys, numpy as np, nncodec
rng = np.random.default_rng(0)
tensors = {"w": (rng.standard_normal((256, 256)) * 0.05).astype(np.float32),
           "b": (rng.standard_normal(64) * 0.05).astype(np.float32)}
blob = nncodec.save(tensors, prefer=sys.argv[1])
with nncodec.open(blob, framework="np") as f:
    info = f.info()
methods = {m for t in info["tensors"] for c in t["components"] for m, _ in c.get("params", {}).get("streams", [])}
before = set(sys.modules)
out = nncodec.load(blob, framework="np")
with nncodec.open(blob, framework="np") as f:
    f.get_tensor("w")
    f.get_slice("w")[3:9]
assert all((out[k] == v).all() for k, v in tensors.items())
print(sorted(methods), sorted(set(sys.modules) - before))
"""


@pytest.mark.parametrize("prefer", ["balanced", "size", "speed"])  # pairs; ANS; zstd frames
def test_first_load_imports_no_module(prefer: str) -> None:
    out = subprocess.run([sys.executable, "-c", CODE, prefer], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    methods, imported = out.stdout.strip().split("] [")
    assert "'pairs'" in methods or prefer != "balanced"  # the method whose table check imported numpy.ma
    assert imported == "]", f"the first load imported {imported}"
