"""fuzz/atheris_cmp.py: atheris' comparison hook keeps every array-valued comparison result alive (the
fuzz harnesses' RSS grew with every input); the wrapper frees them and compares exactly as Python does."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
import torch
from script_modules import load_script

atheris = pytest.importorskip("atheris")  # the dev extra's fuzzing engine (Linux only)

PROBE = """
def eq(a, b):
    return a == b

def lt_const(a):
    return 3 < a

def const_gt(a):
    return a > 3
"""


def _freed(compare) -> bool:
    """Whether the result of `compare()` is gone once the caller drops it."""
    result = compare()
    ref = weakref.ref(result)
    del result
    gc.collect()
    return ref() is None


def test_array_comparisons_in_instrumented_code_are_freed_and_exact(tmp_path, monkeypatch) -> None:
    (tmp_path / "nncodec_cmp_probe.py").write_text(PROBE)
    monkeypatch.syspath_prepend(str(tmp_path))
    with atheris.instrument_imports(include=["nncodec_cmp_probe"]):
        import nncodec_cmp_probe as probe
    monkeypatch.setattr(atheris, "_trace_cmp", atheris._trace_cmp)  # restored after the test
    a = np.arange(10)
    assert not _freed(lambda: probe.eq(a, 3)), "atheris no longer leaks comparison results: drop fuzz/atheris_cmp.py"

    load_script("fuzz/atheris_cmp.py").untrace_array_comparisons()
    load_script("fuzz/atheris_cmp.py").untrace_array_comparisons()  # idempotent: wraps the native hook once
    assert not hasattr(atheris._trace_cmp.native, "native")
    assert _freed(lambda: probe.eq(a, 3)) and _freed(lambda: probe.eq(torch.arange(4), torch.arange(4)))
    assert probe.eq(a, 3).tolist() == (a == 3).tolist()
    assert probe.lt_const(a).tolist() == (a > 3).tolist() and probe.const_gt(a).tolist() == (a > 3).tolist()
    assert probe.eq(2, 2) is True and probe.lt_const(5) is True and probe.const_gt(2) is False  # native path
