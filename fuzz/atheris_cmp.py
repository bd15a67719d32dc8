"""Work around a leak in atheris 3.0's comparison hook, so that a long fuzzing run stays within its memory.

atheris rewrites every `a OP b` in instrumented code into `atheris._trace_cmp(a, b, op, counter, is_const)`,
which compares and reports the operands to libFuzzer. The native hook keeps a reference to each result
that is not a plain bool, so every `array == x` of numpy (or torch) in nncodec leaked its whole result
array: `fuzz_container` grew ~5 kB per input (strict_json.nesting_depth's masks, mostly), hence
peak RSS in proportion to the inputs run (869 and 1,379 MB in two 60 s runs), while the same inputs
replayed without instrumentation keep the RSS flat. Comparisons with an array or tensor operand are
made here in Python instead (their values give libFuzzer no useful hint anyway); all others still go
through the native hook.

This module is never instrumented itself (the harnesses instrument only nncodec and common).
"""

from __future__ import annotations

import dis
import operator

_BY_SYMBOL = {"<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne, ">": operator.gt,
              ">=": operator.ge}


def untrace_array_comparisons() -> None:
    """Replace atheris._trace_cmp by a wrapper that compares arrays and tensors without the native hook.
    Idempotent and cheap when the wrapper is in place, so it can run before every input: atheris.Fuzz()
    installs its libFuzzer-connected hook after Setup, over any earlier replacement."""
    import atheris

    if hasattr(atheris._trace_cmp, "native"):
        return
    import numpy as np

    native = atheris._trace_cmp
    try:
        from atheris.version_dependent import CMP_OP_SHIFT_AMOUNT as shift
    except ImportError:  # pragma: no cover - older atheris: the plain opcode argument
        shift = 0
    ops = tuple(_BY_SYMBOL[symbol] for symbol in dis.cmp_op)
    arrays: tuple[type, ...] = (np.ndarray,)
    try:
        import torch

        arrays += (torch.Tensor,)
    except ImportError:  # pragma: no cover
        pass

    def trace_cmp(left, right, op: int, counter: int, is_const: bool):
        if isinstance(left, arrays) or isinstance(right, arrays):
            return ops[op >> shift](left, right)
        return native(left, right, op, counter, is_const)

    trace_cmp.native = native
    atheris._trace_cmp = trace_cmp
