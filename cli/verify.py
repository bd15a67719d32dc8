"""`nncodec verify`: every checksum and a full decode."""

from __future__ import annotations

import json
from pathlib import Path

import click

import nncodec
from nncodec.errors import NNCodecError

from .common import about, describe_os_error, display_name, human_bytes, nnc_source, plural, say

EPILOG = """\b
Examples:
  nncodec verify model.nnc && echo intact
  nncodec verify *.nnc --quiet || echo "some file is damaged"
  nncodec verify a.nnc b.nnc --json
"""


@click.command(epilog=EPILOG, short_help="Check every checksum and decode every tensor.")
@click.argument("files", metavar="FILE.nnc...", nargs=-1, required=True,
                type=click.Path(dir_okay=True, allow_dash=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one result per file as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the errors; the exit status says the rest.")
def verify(files: tuple[Path, ...], as_json: bool, quiet: bool) -> None:
    """Check every checksum and decode every tensor of each FILE ('-': stdin); exit status 0 if every
    file is intact, 1 if any is not (each damaged file gets an `error:` line, and the others are still checked)."""
    results = []
    for file in files:
        name = display_name(file)
        try:
            with nncodec.open(nnc_source(file)) as f:
                f.verify()
                count, size = len(f), f.info()["file_bytes"]
        except (NNCodecError, OSError) as e:
            message = describe_os_error(e) if isinstance(e, OSError) else about(name, e)
            results.append({"file": name, "ok": False, "error": message})
            if not as_json:
                say(f"error: {message}", err=True)
            continue
        results.append({"file": name, "ok": True, "tensors": count, "file_bytes": size})
        if not as_json and not quiet:
            say(f"ok: {name}: {plural(count, 'tensor')}, {human_bytes(size)}; "
                       "every checksum matches and every tensor decodes")
    if as_json:
        click.echo(json.dumps(results if len(files) > 1 else results[0], indent=2))
    if not all(r["ok"] for r in results):
        raise click.exceptions.Exit(1)
