"""`nncodec verify`: every checksum and a full decode."""

from __future__ import annotations

from pathlib import Path

import click

import nncodec

from .common import human_bytes, plural, reading, say

EPILOG = """\b
Examples:
  nncodec verify model.nnc && echo intact
"""


@click.command(epilog=EPILOG, short_help="Check every checksum and decode every tensor.")
@click.argument("file", metavar="FILE.nnc", type=click.Path(dir_okay=True, path_type=Path))
def verify(file: Path) -> None:
    """Check every checksum and decode every tensor; exit status 0 if the file is intact, 1 if not."""
    with reading(file), nncodec.open(file) as f:
        f.verify()
        count, size = len(f), f.info()["file_bytes"]
    say(f"ok: {file}: {plural(count, 'tensor')}, {human_bytes(size)}; every checksum matches and every tensor decodes")
