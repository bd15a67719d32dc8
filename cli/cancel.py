"""Ctrl-C and SIGTERM take effect at once, even in the middle of a long coder call.

Python runs signal handlers in the main thread, between bytecodes: a 20-second zstd call on the
main thread would delay Ctrl-C by 20 seconds. So the commands that convert files run in a worker
thread while the main thread only waits; the coders release the GIL (zstd) or hold it for tens of
milliseconds at a time (constriction, numpy), so the main thread sees the signal within a fraction
of a second. It then removes every temporary file still being written (nncodec.container.atomic)
and ends the process at once (exit 130 and `error: interrupted` for Ctrl-C, 143 for SIGTERM); the
worker, a daemon thread, ends with it. Spool files are unnamed and vanish with the process.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

import click

from nncodec.container.atomic import remove_pending

from .common import INTERRUPTED_EXIT, Interrupted

POLL_S = 0.05  # how often the waiting main thread wakes up (signals interrupt the wait anyway)


def run_cancellable(fn: Callable[[], Any]) -> Any:
    """fn() in a worker thread; its result, or its exception re-raised here."""
    if threading.current_thread() is not threading.main_thread():
        return fn()  # (only the main thread receives signals)
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the main thread as it is
            outcome["error"] = e

    worker = threading.Thread(target=work, name="nncodec-command", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(POLL_S)
    except (KeyboardInterrupt, SystemExit) as e:
        remove_pending()  # the worker may be stuck in a coder call: clean up without it
        _exit_now(e)
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def _exit_now(signal_exc: BaseException) -> None:
    """End the process at once: interpreter shutdown would wait for the worker's coder call and
    tear down torch (seconds). Everything written is either committed or removed by now."""
    if isinstance(signal_exc, KeyboardInterrupt):
        Interrupted().show()
        code = INTERRUPTED_EXIT
    else:
        code = signal_exc.code if isinstance(signal_exc.code, int) else 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def cancellable(command: click.Command) -> click.Command:
    """`command` with its callback run by run_cancellable (the click context goes with it)."""
    callback = command.callback
    if callback is None:
        return command

    @functools.wraps(callback)
    def run(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()

        def call() -> Any:
            with ctx.scope(cleanup=False):
                return callback(*args, **kwargs)

        return run_cancellable(call)

    command.callback = run
    return command
