"""`nncodec decode`: a .nnc file back to .safetensors or .pt."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

import nncodec
from nncodec.collection import get_model
from nncodec.container.writer import atomic_write
from nncodec.io import checkpoint_bytes, output_format

from .common import (
    CliError,
    check_output,
    default_output,
    display_name,
    human_bytes,
    is_terminal,
    nnc_source,
    note,
    plural,
    progress,
    reading,
    say,
    threads_option,
)
from .report import raw_bytes

EPILOG = """\b
Examples:
  nncodec decode model.nnc                     # writes model.safetensors
  nncodec decode model.nnc -o model.pt         # a plain state dict for torch.load
  nncodec decode model.nnc -o restored.safetensors --force
  cat model.nnc | nncodec decode - -o - --format pt > model.pt
  nncodec decode set.nnc --model b -o b.safetensors   # one model of a collection
"""


@click.command(epilog=EPILOG, short_help="Decode a .nnc file to .safetensors or .pt.")
@click.argument("source", metavar="INPUT.nnc", type=click.Path(dir_okay=True, allow_dash=True, path_type=Path))
@click.option("-o", "--output", type=click.Path(allow_dash=True, path_type=Path),
              help="Output file ending in .safetensors or .pt, or - for stdout [default: INPUT with .safetensors].")
@click.option("--format", "fmt", type=click.Choice(("safetensors", "pt")), default=None,
              help="Output format [default: from OUTPUT's extension; safetensors for stdout].")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="Print only errors (no progress, notes or summary).")
@click.option("--model", default=None, help="Decode only this model of a collection (its tensors 'MODEL/...').")
@threads_option
def decode(source: Path, output: Path | None, fmt: str | None, force: bool, as_json: bool, quiet: bool,
           model: str | None, threads: int) -> None:
    """Decode every tensor of a .nnc file and write them as .safetensors (with the file's metadata)
    or as a .pt state dict (torch.save of a dict of tensors; metadata is not kept). INPUT '-' reads
    stdin; OUTPUT '-' writes to stdout."""
    if output is None and str(source) == "-":
        raise CliError("decoding stdin needs -o OUTPUT (a file, or - for stdout)")
    out = output or default_output(source, ".safetensors")
    to_stdout = str(out) == "-"
    if to_stdout:
        fmt = fmt or "safetensors"
        if is_terminal(sys.stdout):
            raise CliError("refusing to write binary data to a terminal; redirect stdout or give -o FILE")
    else:
        fmt = fmt or output_format(out)
        check_output(out, force, source)
    name = display_name(source)
    with progress("decode", quiet=quiet) as bar, reading(name), nncodec.open(nnc_source(source), threads=threads) as f:
        if model is not None:
            tensors, metadata = get_model(f, model), f.metadata()
            data = _write(checkpoint_bytes(tensors, fmt, metadata), out, to_stdout, force)
            if not quiet:
                say(f"wrote {'stdout' if to_stdout else out}: model {model!r}, {plural(len(tensors), 'tensor')}, "
                           f"{human_bytes(len(data))}", err=to_stdout)
            return
        report = f.info()
        sizes = {t["name"]: raw_bytes({"tensors": [t]}) for t in report["tensors"]}
        bar.phase(f"decoding {plural(len(f), 'tensor')} of {name}", total=raw_bytes(report))
        f.check_memory()  # every tensor is kept until written: refuse before decoding what cannot fit
        tensors = {}
        for tname in f:
            tensors[tname] = f.get_tensor(tname)
            bar.update(sizes.get(tname, 0))
        metadata = f.metadata()
        bar.phase(f"writing {'stdout' if to_stdout else out}")
        data = _write(checkpoint_bytes(tensors, fmt, metadata), out, to_stdout, force)
    if fmt == "pt" and metadata and not quiet:
        note(f"a .pt state dict has no place for metadata: {len(metadata)} entries not written (use .safetensors)")
    where = "stdout" if to_stdout else str(out)
    if as_json:
        click.echo(json.dumps({"output": where, "format": fmt, "tensors": len(tensors), "bytes": len(data)}, indent=2),
                   err=to_stdout)
    elif not quiet:
        say(f"wrote {where}: {plural(len(tensors), 'tensor')}, {human_bytes(len(data))}", err=to_stdout)


def _write(data: bytes, out: Path, to_stdout: bool, force: bool) -> bytes:
    """The checkpoint bytes to stdout, or atomically to OUT; returns them."""
    if to_stdout:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        atomic_write(out, data, overwrite=force)
    return data
