"""Files that appear complete or not at all: written to a temporary file beside the destination,
then moved into place in one step. Temporary files in progress are listed in `PENDING`, so that a
command cancelled from another thread (cli/cancel.py) can remove them without waiting for the writer."""

from __future__ import annotations

import os
import tempfile
import threading
from typing import BinaryIO

PENDING: set[str] = set()  # temporary files being written by this process
_PENDING_LOCK = threading.Lock()


def remove_pending() -> None:
    """Remove every temporary file still being written (on cancellation)."""
    with _PENDING_LOCK:
        paths = list(PENDING)
        PENDING.clear()
    for path in paths:
        _remove(path)


def _remove(path: str) -> None:
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            for name in os.listdir(path):
                os.unlink(os.path.join(path, name))
            os.rmdir(path)
        else:
            os.unlink(path)
    except OSError:
        pass


def track(path: str) -> None:
    with _PENDING_LOCK:
        PENDING.add(path)


def untrack(path: str) -> None:
    with _PENDING_LOCK:
        PENDING.discard(path)


class AtomicFile:
    """`with AtomicFile(path) as f: f.write(...); ...commit()`: the file appears at `path` only at
    `commit()`. Without `overwrite` an existing file is never replaced (FileExistsError), even in a
    race. Leaving the block without committing (an error, a signal) leaves no partial file behind."""

    def __init__(self, path: str | os.PathLike, *, overwrite: bool = False, suffix: str = ".tmp") -> None:
        self.path = os.fspath(path)
        self.overwrite = overwrite
        directory = os.path.dirname(os.path.abspath(self.path))
        fd, self.tmp = tempfile.mkstemp(prefix=".nncodec-", suffix=suffix, dir=directory)
        track(self.tmp)
        self.file: BinaryIO = os.fdopen(fd, "w+b")
        if hasattr(os, "fchmod"):  # mkstemp makes 0600 files; give the usual 0666 minus umask
            os.fchmod(fd, 0o666 & ~_umask())
        self.committed = False

    def __enter__(self) -> BinaryIO:
        return self.file

    def __exit__(self, *exc: object) -> None:
        if not self.committed:
            self.discard()

    def commit(self) -> None:
        f = self.file
        f.flush()
        os.fsync(f.fileno())
        f.close()
        if self.overwrite:
            os.replace(self.tmp, self.path)
        else:
            _move_no_clobber(self.tmp, self.path)
        untrack(self.tmp)
        self.committed = True

    def discard(self) -> None:
        if self.committed:
            return
        self.file.close()
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)
        untrack(self.tmp)


def atomic_write(path: str | os.PathLike, data: bytes, *, overwrite: bool = False) -> None:
    """Write `data` to a temporary file beside `path`, then move it into place in one step.

    Without `overwrite` an existing file is never replaced (FileExistsError), even in a race.
    A failure at any point leaves no partial file behind.
    """
    out = AtomicFile(path, overwrite=overwrite)
    try:
        out.file.write(data)
        out.commit()
    finally:
        out.discard()


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def _move_no_clobber(tmp: str, path: str) -> None:
    try:
        os.link(tmp, path)  # fails if path exists: no check-then-write race
    except FileExistsError:
        raise
    except OSError:  # no hard links on this filesystem
        if os.path.exists(path):
            raise FileExistsError(path) from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


class StagingDir:
    """Files that appear in `folder` together: they are written into `self.path`, a temporary folder
    beside it, which `commit()` renames to `folder` (when absent) or whose files it moves in (names
    ending in `.json`, the indexes, last). Leaving without `commit()` removes everything written."""

    def __init__(self, folder: str | os.PathLike, *, overwrite: bool = False) -> None:
        self.folder = os.path.abspath(os.fspath(folder))
        self.overwrite = overwrite
        self.path = tempfile.mkdtemp(prefix=".nncodec-", suffix=".tmpdir", dir=os.path.dirname(self.folder))
        track(self.path)
        self.committed = False

    def __enter__(self) -> StagingDir:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.committed:
            remove_pending_path(self.path)

    def commit(self) -> None:
        names = sorted(os.listdir(self.path), key=lambda n: (n.endswith(".json"), n))
        for name in names:
            fd = os.open(os.path.join(self.path, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        if not os.path.exists(self.folder):
            os.chmod(self.path, 0o777 & ~_umask())
            os.rename(self.path, self.folder)
        else:
            for name in names:
                src, dst = os.path.join(self.path, name), os.path.join(self.folder, name)
                if self.overwrite:
                    os.replace(src, dst)
                else:
                    _move_no_clobber(src, dst)
            os.rmdir(self.path)
        untrack(self.path)
        self.committed = True


def remove_pending_path(path: str) -> None:
    """Remove one tracked temporary file or folder (and stop tracking it)."""
    untrack(path)
    _remove(path)
