"""`nncodec info`: where every byte of a .nnc file goes."""

from __future__ import annotations

import json
from pathlib import Path

import click

import nncodec
from nncodec.errors import NNCodecError

from .common import CliError, about, describe_os_error, display_name, nnc_source, plural, say
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
    """Show the bytes and bits per parameter of every tensor and component of each FILE ('-': stdin;
    a sharded checkpoint's NAME.nnc.index.json shows each shard).

    The preamble, header and padding have their own rows, so the total is the file size exactly:
    the model's description length. Quantized tensors also show their step and sparsity (their parts are
    decoded for that); raw tensors are not decoded. A lossy file shows the relative L2 error of its
    weights, measured when it was encoded.
    """
    reports: list[dict] = []
    failed = False
    for i, file in enumerate(files):
        name = display_name(file)
        try:
            with nncodec.open(nnc_source(file)) as f:
                report = f.info()
        except (NNCodecError, OSError) as e:
            if len(files) == 1:
                raise CliError(describe_os_error(e) if isinstance(e, OSError) else about(name, e)) from None
            failed = True  # like verify: report it, go on with the other files, exit 1 at the end
            message = describe_os_error(e) if isinstance(e, OSError) else about(name, e)
            reports.append({"file": name, "error": message})
            if not as_json:
                say(f"error: {message}", err=True)
            continue
        if as_json:
            reports.append({"file": name, **report} if len(files) > 1 else report)
            continue
        if i:
            click.echo()
        if "files" in report:  # a sharded checkpoint's index: each shard's table, then the total
            say(f"{name}: sharded .nnc checkpoint, {plural(len(report['files']), 'shard')}, "
                f"{report['file_bytes']:,} bytes in the shards + {report['index_bytes']:,} in the index")
            for shard in report["files"]:
                click.echo()
                say(f"{shard['file']}: .nnc version {shard['version']}, {plural(len(shard['tensors']), 'tensor')}")
                click.echo(format_report(shard))
            continue
        say(f"{name}: .nnc version {report['version']}, {plural(len(report['tensors']), 'tensor')}")
        click.echo(format_report(report))
    if as_json:
        click.echo(json.dumps(reports if len(files) > 1 else reports[0], indent=2))
    if failed:
        raise click.exceptions.Exit(1)
