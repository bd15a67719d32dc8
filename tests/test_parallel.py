"""parallel.map_ordered on the process's kept pool (shared=True): results in order, nested calls from a
pool worker do not wait on the pool they run in (no deadlock), an error drops the queued work and leaves
the pool usable, and the workers' thread-local state survives from call to call."""

from __future__ import annotations

import threading
import time

import pytest

from nncodec import parallel


def test_nested_shared_calls_finish_in_order() -> None:
    got = parallel.map_ordered(lambda i: parallel.map_ordered(lambda j: 10 * i + j, range(5), 2, shared=True),
                               range(6), 2, shared=True)
    assert got == [[10 * i + j for j in range(5)] for i in range(6)]


def test_an_error_drops_the_rest_and_the_pool_still_works() -> None:
    ran = []

    def f(i: int) -> int:
        if i == 1:
            raise ValueError("boom")
        time.sleep(0.002)
        ran.append(i)
        return i

    with pytest.raises(ValueError, match="boom"):
        parallel.map_ordered(f, range(200), 2, shared=True)
    assert len(ran) < 100  # queued items were cancelled
    assert parallel.map_ordered(lambda i: i * i, range(10), 2, shared=True) == [i * i for i in range(10)]


def test_shared_workers_keep_their_thread_local_state() -> None:
    local = threading.local()

    def f(_: int) -> int:
        local.n = getattr(local, "n", 0) + 1
        return threading.get_ident()

    first = set(parallel.map_ordered(f, range(8), 2, shared=True))
    second = set(parallel.map_ordered(f, range(8), 2, shared=True))
    assert first == second and threading.get_ident() not in first  # the same two kept threads
