"""Work spread over threads: the chunks of a tensor are coded independently, so they run in a thread
pool. zstd (python-zstandard) and numpy's large-array operations release the GIL, which is what lets
threads use every core; constriction's ANS coder holds it (the default `balanced` mode seldom uses ANS
on large float tensors, spec §16.1). Results come back in input order, so the bytes written never depend
on the number of threads.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TypeVar

MIN_BYTES = 256 * 2**10  # a tensor smaller than this is not worth a thread: spreading a file's tensors over
# threads pays only when at least two are this large (tiny tasks mostly fight over the GIL)
# Decoding whole tensors on threads did not pay below a chunk (4 MiB, §23; larger tensors are chunked and their
# chunks decoded on threads anyway): the 2-thread load of rapidocr fp32 (12 tensors of 256 kB-3.2 MB) took 33 ms
# with them on threads, 21 ms without, 20 ms on one thread; resemblyzer fp32 (6 of ~1 MB) 10.2 / 6.8 / 6.9 ms
# (one process, alternating, 21 rounds, load 3.4; sessions 4 and 6 saw 2 threads lose in quiet slots too)
DECODE_MIN_BYTES = 4 * 2**20
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


_pools: dict[int, ThreadPoolExecutor] = {}
_pools_pid = os.getpid()
_pools_lock = threading.Lock()
_worker = threading.local()  # .busy: this thread is one of the shared pools' workers


def _mark_worker() -> None:
    _worker.busy = True


def _pool(workers: int, shared: bool = True) -> tuple[ThreadPoolExecutor, bool]:
    """(a pool of `workers` threads, whether the caller must shut it down). The pools are kept for the
    process's life, so their threads keep their thread-local state from call to call (zstd contexts, scratch
    buffers: a fresh thread re-creates them, and a fresh scratch page-faults), except for a call made from
    inside one of the shared pools' own workers: it gets a pool of its own, since waiting on the shared pool
    from one of its workers could leave no worker to do the waited-for work (map_sized's per-call pools are
    not shared, so their workers may use the shared pools). A
    forked child does not inherit the pools' threads, so it makes its own."""
    global _pools_pid
    if not shared or getattr(_worker, "busy", False):
        return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nncodec"), True
    with _pools_lock:
        if _pools_pid != os.getpid():
            _pools.clear()
            _pools_pid = os.getpid()
        pool = _pools.get(workers)
        if pool is None:
            pool = _pools[workers] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nncodec",
                                                        initializer=_mark_worker)
    return pool, False


def _finish(futures: Sequence[Future], pool: ThreadPoolExecutor, own: bool) -> None:
    """Drop the work not started yet (a Ctrl-C or an error waits only for the items already running)."""
    for f in futures:
        f.cancel()
    if own:
        pool.shutdown(wait=True, cancel_futures=True)
    else:
        wait(futures)


def map_sized(fn: Callable[[T], R], items: Sequence[T], sizes: Sequence[int], threads: int | None,
              shared: bool = False, min_bytes: int = MIN_BYTES) -> list[R]:
    """[fn(x) for x in items], in order, where sizes[i] is item i's bytes: the items of at least `min_bytes`
    are spread over up to `threads` threads, the small ones run in the calling thread (tiny tasks in a pool
    mostly fight over the GIL: on a file of 470 mostly tiny tensors, pooling all of them made 2 threads
    ~1.4x slower than 1). With fewer than two large items everything runs in the calling thread.
    `shared`: on the process's kept pool (_pool), as the decoders of a whole file do (a fresh pool per call
    starts its threads and their zstd contexts and scratch buffers anew: resemblyzer's 2-thread load took
    2.4x its 1-thread time); the encoders keep a pool per call (the shared pools made rapidocr's 2-thread
    encode slower: 366 -> 418 ms).
    The calling thread is one of the `threads`: the pool has one thread fewer (so `threads` threads run, not
    `threads` + 1 on as many cores). The caller does the small items first and only then submits the large
    ones, taking its share of them (those no pool thread has started, last first): a thread coding a large item
    (mostly C that releases the GIL) beside one running Python (the small items) waits up to the 5 ms switch
    interval each time it needs the GIL back. Measured in one process, alternating, 41 rounds, load ~3: rapidocr
    fp32 2-thread save 161 -> 136 ms wall against submitting the large items first; loads alike (33 ms)."""
    large = [i for i, n in enumerate(sizes) if n >= min_bytes]
    workers = min(resolve(threads), len(large))
    if workers <= 1:
        return [fn(x) for x in items]
    out: list = [None] * len(items)
    pool, own = _pool(workers - 1, shared)
    futures: dict[int, Future] = {}
    try:
        big = set(large)
        for i, x in enumerate(items):
            if i not in big:
                out[i] = fn(x)
        futures = {i: pool.submit(fn, items[i]) for i in large}
        mine = set()
        for i in reversed(large):
            if futures[i].cancel():  # (True only for an item no pool thread has started)
                mine.add(i)
                out[i] = fn(items[i])
        for i, f in futures.items():
            if i not in mine:
                out[i] = f.result()
    finally:
        _finish(list(futures.values()), pool, own)
    return out


def map_ordered(fn: Callable[[T], R], items: Sequence[T], threads: int | None, shared: bool = False) -> list[R]:
    """[fn(x) for x in items], on up to `threads` threads. The first exception is re-raised; queued work
    is dropped at once (a Ctrl-C waits only for the items already running, each a few milliseconds).
    `shared`: on the process's kept pool (_pool), as the chunk decoders do (rapidocr_x4 2-thread load
    71 -> 60 ms wall, same-run A/B at load ~2); encoders keep a pool per call."""
    workers = min(resolve(threads), len(items))
    if workers <= 1:
        return [fn(x) for x in items]
    pool, own = _pool(workers, shared)
    futures: list[Future] = []
    try:
        futures = [pool.submit(fn, x) for x in items]
        return [f.result() for f in futures]
    finally:
        _finish(futures, pool, own)
