"""`nncodec info`: where every byte of a .nnc file goes."""

from __future__ import annotations

import json
from pathlib import Path

import click

import nncodec

from .common import plural, reading, say
from .report import format_report

EPILOG = """\b
Examples:
  nncodec info model.nnc
  nncodec info model.nnc --json > report.json
"""


@click.command(epilog=EPILOG, short_help="Show where every byte of a .nnc file goes.")
@click.argument("file", metavar="FILE.nnc", type=click.Path(dir_okay=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the full byte report as JSON.")
def info(file: Path, as_json: bool) -> None:
    """Show the bytes and bits per parameter of every tensor and component.

    The preamble, header and padding have their own rows, so the total is the file size exactly:
    the model's description length. Quantized tensors also show their step and sparsity (their parts are
    decoded for that); raw tensors are not decoded.
    """
    with reading(file), nncodec.open(file) as f:
        report = f.info()
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        say(f"{file}: .nnc version {report['version']}, {plural(len(report['tensors']), 'tensor')}")
        click.echo(format_report(report))
