"""`nncodec info`: where every byte of a .nnc file goes."""

from __future__ import annotations

import json
from pathlib import Path

import click

import nncodec

from .common import display_name, nnc_source, plural, reading
from .report import format_report

EPILOG = """\b
Examples:
  nncodec info model.nnc
  nncodec info model.nnc --json > report.json
  nncodec info a.nnc b.nnc                     # several files, one after the other
  curl -s https://example.org/model.nnc | nncodec info -
"""


@click.command(epilog=EPILOG, short_help="Show where every byte of a .nnc file goes.")
@click.argument("files", metavar="FILE.nnc...", nargs=-1, required=True,
                type=click.Path(dir_okay=True, allow_dash=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True,
              help="Print the full byte report as JSON (a list of reports, each with its 'file', for several files).")
def info(files: tuple[Path, ...], as_json: bool) -> None:
    """Show the bytes and bits per parameter of every tensor and component of each FILE ('-': stdin).

    The preamble, header and padding have their own rows, so the total is the file size exactly:
    the model's description length. Quantized tensors also show their step and sparsity (their parts are
    decoded for that); raw tensors are not decoded. A lossy file shows the relative L2 error of its
    weights, measured when it was encoded.
    """
    reports = []
    for file in files:
        name = display_name(file)
        with reading(name), nncodec.open(nnc_source(file)) as f:
            report = f.info()
        if as_json:
            reports.append({"file": name, **report} if len(files) > 1 else report)
            continue
        if len(reports) or file != files[0]:
            click.echo()
        reports.append(report)
        click.echo(f"{name}: .nnc version {report['version']}, {plural(len(report['tensors']), 'tensor')}")
        click.echo(format_report(report))
    if as_json:
        click.echo(json.dumps(reports if len(files) > 1 else reports[0], indent=2))
