"""Work spread over threads: the chunks of a tensor are coded independently, so they run in a thread
pool. zstd (python-zstandard) and numpy's large-array operations release the GIL, which is what lets
threads use every core; constriction's ANS coder holds it (the default `balanced` mode seldom uses ANS
on large float tensors, spec §16.1). Results come back in input order, so the bytes written never depend
on the number of threads.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

MIN_BYTES = 256 * 2**10  # a tensor smaller than this is not worth a thread: spreading a file's tensors over
# threads pays only when at least two are this large (tiny tasks mostly fight over the GIL)
T = TypeVar("T")
R = TypeVar("R")


def cores() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def resolve(threads: int | None) -> int:
    """None or 0 means every core."""
    return threads if threads else cores()


def map_sized(fn: Callable[[T], R], items: Sequence[T], sizes: Sequence[int], threads: int | None) -> list[R]:
    """[fn(x) for x in items], in order, where sizes[i] is item i's bytes: the items of at least MIN_BYTES
    go to up to `threads` threads while the calling thread does the small ones (tiny tasks in a pool
    mostly fight over the GIL: on a file of 470 mostly tiny tensors, pooling all of them made 2 threads
    ~1.4x slower than 1). With fewer than two large items everything runs in the calling thread."""
    large = [i for i, n in enumerate(sizes) if n >= MIN_BYTES]
    workers = min(resolve(threads), len(large))
    if workers <= 1:
        return [fn(x) for x in items]
    out: list = [None] * len(items)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nncodec")
    try:
        futures = {i: pool.submit(fn, items[i]) for i in large}
        for i, x in enumerate(items):
            if i not in futures:
                out[i] = fn(x)
        for i, f in futures.items():
            out[i] = f.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return out


def map_ordered(fn: Callable[[T], R], items: Sequence[T], threads: int | None) -> list[R]:
    """[fn(x) for x in items], on up to `threads` threads. The first exception is re-raised; queued work
    is dropped at once (a Ctrl-C waits only for the items already running, each a few milliseconds)."""
    workers = min(resolve(threads), len(items))
    if workers <= 1:
        return [fn(x) for x in items]
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nncodec")
    try:
        return list(pool.map(fn, items))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
