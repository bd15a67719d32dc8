"""What every command shares: one-line errors, output-file rules, the progress bar."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from nncodec.errors import NNCodecError
from nncodec.io import INDEX_SUFFIX

PROGRESS_DELAY_S = 2.0  # the bar appears only when the work takes longer than this


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


def tensor_nbytes(value: Any) -> int:
    """Bytes of a torch tensor or numpy array, for progress bars and ratios."""
    if hasattr(value, "element_size"):
        return int(value.numel()) * int(value.element_size())
    return int(getattr(value, "nbytes", 0))


@contextmanager
def progress_bar(total_bytes: int, desc: str) -> Iterator[tqdm]:
    """A byte-weighted bar on stderr; silent when stderr is not a terminal or the job is short."""
    bar = tqdm(total=total_bytes, desc=desc, unit="B", unit_scale=True, file=sys.stderr, leave=False,
               delay=PROGRESS_DELAY_S, disable=not sys.stderr.isatty())
    try:
        yield bar
    finally:
        bar.close()
