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


def test_shared_calls_run_on_the_same_kept_threads() -> None:
    pool = parallel._pool(2)[0]
    seen = set()
    for _ in range(3):
        seen |= set(parallel.map_ordered(lambda _: threading.get_ident(), range(8), 2, shared=True))
    assert parallel._pool(2)[0] is pool  # one pool for the process
    assert seen <= {t.ident for t in pool._threads} and threading.get_ident() not in seen
