"""nncodec pauses the cyclic garbage collector while it codes or decodes a whole file (gc_pause.py): it must
always be back in the state the caller left it in, also after an error and across threads."""

from __future__ import annotations

import gc

import numpy as np
import pytest
from concurrently import run_concurrently

import nncodec
from nncodec import gc_pause
from nncodec.errors import NNCodecError


def test_the_collector_is_off_inside_and_back_on_after() -> None:
    assert gc.isenabled()
    with gc_pause.paused():
        assert not gc.isenabled()
        with gc_pause.paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_an_error_switches_it_back_on() -> None:
    with pytest.raises(NNCodecError):
        nncodec.load(b"\x89NNC\r\n\x1a\n" + bytes(40))
    assert gc.isenabled()
    with pytest.raises(ZeroDivisionError), gc_pause.paused():
        1 / 0  # noqa: B018
    assert gc.isenabled()


def test_a_caller_who_switched_it_off_keeps_it_off() -> None:
    data = nncodec.save({"w": np.arange(10, dtype=np.float32)})
    gc.disable()
    try:
        nncodec.load(data)
        nncodec.save({"w": np.arange(10, dtype=np.float32)})
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_threads_that_overlap_leave_it_on() -> None:
    data = nncodec.save({f"w{i}": np.arange(100, dtype=np.float32) + i for i in range(200)})

    def work() -> None:
        for _ in range(5):
            assert len(nncodec.load(data)) == 200

    assert not run_concurrently(work) and gc.isenabled()
