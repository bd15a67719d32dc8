"""What every command shares: one-line errors, output-file rules, the progress bar."""

from __future__ import annotations

import io
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from nncodec.container.atomic import track, untrack
from nncodec.errors import NNCodecError
from nncodec.io import INDEX_SUFFIX

PROGRESS_DELAY_S = 2.0  # the bar appears only when the work takes longer than this
TICK_S = 0.5  # how often a shown bar is redrawn while one step runs (elapsed time keeps moving)
INTERRUPTED_EXIT = 130  # 128 + SIGINT, the shell convention for Ctrl-C


_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def shown(text: object) -> str:
    """`text` safe for a terminal: every non-printable character (ESC, BEL, newlines, C1 controls,
    bidi overrides, other format and separator characters) written as a backslash escape, so that
    names and metadata from a file can neither drive the terminal nor forge output lines.
    Human output only: JSON output stays exact (json.dumps escapes what JSON requires)."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def _escape(ch: str) -> str:
    code = ord(ch)
    if ch in _NAMED:
        return _NAMED[ch]
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def say(message: object, err: bool = False) -> None:
    """One line of human output, escaped (see `shown`)."""
    click.echo(shown(message), err=err)


class CliError(click.ClickException):
    """A user-facing failure: printed as one `error: ...` line on stderr, exit code 1."""

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {shown(self.format_message())}", file=file or sys.stderr)


class Interrupted(CliError):
    """Ctrl-C: `error: interrupted` and exit status 130, as shells expect (not click's "Aborted!", 1)."""

    exit_code = INTERRUPTED_EXIT

    def __init__(self) -> None:
        super().__init__("interrupted")


def one_line(err: BaseException | str) -> str:
    """The message of `err` on a single line (some libraries put paragraphs in their messages)."""
    text = re.sub(r"\s*\n\s*", " ", str(err)).strip()
    return text or type(err).__name__


def about(path: str | os.PathLike, err: BaseException) -> str:
    """The one-line message of `err`, naming `path` unless the message already starts with it."""
    text, name = one_line(err), os.fspath(path)
    return text if text.startswith(name) else f"{name}: {text}"


@contextmanager
def reading(path: str | os.PathLike) -> Iterator[None]:
    """Name the file in nncodec's errors about it (`error: model.nnc: file is truncated ...`)."""
    try:
        yield
    except NNCodecError as e:
        raise CliError(about(path, e)) from None


def nnc_source(path: Path) -> Any:
    """What nncodec.open takes for a command-line FILE: the path, or stdin's bytes for `-`."""
    if str(path) == "-":
        if is_terminal(sys.stdin):
            raise CliError("'-' reads a .nnc file from stdin, but stdin is a terminal; pipe a file in")
        return sys.stdin.buffer.read()
    return path


@contextmanager
def stdin_checkpoint() -> Iterator[Path]:
    """stdin's checkpoint bytes as a temporary file named by what they are (.safetensors, .npz, .pt):
    checkpoint readers need a path and an extension; the file is removed afterwards."""
    import tempfile
    import zipfile

    if is_terminal(sys.stdin):
        raise CliError("'-' reads a checkpoint from stdin, but stdin is a terminal; pipe a file in")
    data = sys.stdin.buffer.read()
    if len(data) >= 9 and data[8:9] == b"{" and int.from_bytes(data[:8], "little") < len(data):
        suffix = ".safetensors"
    elif data[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                suffix = ".npz" if all(n.endswith(".npy") for n in z.namelist()) else ".pt"
        except zipfile.BadZipFile:
            raise CliError("stdin looks like a ZIP archive but is not a valid one") from None
    elif data[:1] == b"\x80":
        suffix = ".pt"
    else:
        raise CliError("cannot tell the checkpoint format of stdin (safetensors, torch.save or .npz expected)")
    with tempfile.TemporaryDirectory(prefix="nncodec-stdin-") as d:
        track(d)  # removed on cancellation too (cli/cancel.py)
        try:
            path = Path(d) / f"stdin{suffix}"
            path.write_bytes(data)
            yield path
        finally:
            untrack(d)


def display_name(path: Path) -> str:
    return "stdin" if str(path) == "-" else os.fspath(path)


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def describe_os_error(err: OSError) -> str:
    """'PATH: reason' for an OSError, naming the file the user gave rather than a temporary one."""
    name = err.filename2 if err.filename2 is not None else err.filename
    if isinstance(err, FileExistsError):
        target = name if name is not None else (err.args[0] if err.args else "the output")
        return f"{target} already exists (use --force to overwrite it)"
    reason = err.strerror or one_line(err)
    return f"{name}: {reason}" if name is not None else reason


def note(message: str) -> None:
    say(f"note: {message}", err=True)


def default_output(source: str | os.PathLike, suffix: str) -> Path:
    """INPUT with its checkpoint extension replaced by `suffix` (model.pt -> model.nnc)."""
    p = Path(source)
    if p.name.lower().endswith(INDEX_SUFFIX):
        return p.with_name(p.name[: -len(INDEX_SUFFIX)] + suffix)
    return p.with_suffix(suffix)


def check_output(output: str | os.PathLike, force: bool, source: str | os.PathLike) -> None:
    """Fail early, before any work, when the output cannot or must not be written."""
    out = Path(output)
    if out.is_dir():
        raise CliError(f"{out} is a directory; give an output file name")
    if out.exists():
        if not force:
            raise CliError(f"{out} already exists (use --force to overwrite it)")
        if os.path.exists(source) and os.path.samefile(out, source):
            raise CliError(f"{out} is also the input; choose another output file")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise CliError(f"{parent}: the output directory does not exist")


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n:,.1f} TB"  # pragma: no cover


def is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class Progress:
    """The one progress policy of every command.

    On a terminal: a byte-weighted bar on stderr for work that takes longer than `delay` seconds. It
    appears as soon as the delay has passed, even in the middle of one long step (a ticker thread
    redraws it), and it is drawn at 100 % before it is cleared. Not on a terminal (pipes, logs, CI):
    one line per phase, `COMMAND: PHASE`. With `quiet`: nothing. The library itself never prints.
    """

    def __init__(self, command: str, *, quiet: bool = False, stream: Any = None, delay: float = PROGRESS_DELAY_S,
                 unit: str = "B") -> None:
        self.command = command
        self.stream = stream if stream is not None else sys.stderr
        self.lines = not quiet and not is_terminal(self.stream)
        self.start = time.monotonic()
        self.delay = delay
        self.bar: tqdm | None = None
        self._stop = threading.Event()
        if not quiet and not self.lines:
            self.bar = tqdm(total=None, desc=command, unit=unit, unit_scale=unit == "B", file=self.stream,
                            leave=False, delay=delay, dynamic_ncols=True)
            threading.Thread(target=self._tick, daemon=True).start()

    def _tick(self) -> None:
        if self._stop.wait(self.delay):
            return
        while not self._stop.is_set():
            bar = self.bar
            if bar is not None:
                bar.refresh()
            self._stop.wait(TICK_S)

    def phase(self, text: str, total: int | None = None) -> None:
        """Start a phase: a line off a terminal, the bar's label on one; `total` sets the bar's total."""
        if self.lines:
            click.echo(f"{self.command}: {shown(text)}", file=self.stream)
        if self.bar is not None:
            self.bar.set_description_str(text, refresh=False)
            if total is not None:
                self.bar.total = total

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        """Stop the ticker; a bar that was shown is drawn full (100 %) and then cleared."""
        self._stop.set()
        bar, self.bar = self.bar, None
        if bar is None:
            return
        if time.monotonic() - self.start >= self.delay:
            if bar.total is not None:
                bar.n = bar.total
            bar.refresh()
        bar.close()


@contextmanager
def progress(command: str, *, quiet: bool = False, **kwargs: Any) -> Iterator[Progress]:
    p = Progress(command, quiet=quiet, **kwargs)
    try:
        yield p
    finally:
        p.close()
