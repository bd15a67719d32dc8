"""Run one test body in several threads at once and hand back what any of them raised (asserting inside a
thread only prints; the test must see the failure)."""

from __future__ import annotations

import threading
from collections.abc import Callable


def run_concurrently(work: Callable[[], None], threads: int = 4) -> list[BaseException]:
    """Start `threads` threads on `work`, wait for all; the exceptions they raised, in no particular order."""
    errors: list[BaseException] = []

    def guarded() -> None:
        try:
            work()
        except BaseException as e:  # noqa: BLE001 - returned to the test
            errors.append(e)

    pool = [threading.Thread(target=guarded) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return errors
