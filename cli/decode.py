"""`nncodec decode`: a .nnc file back to .safetensors or .pt."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

import nncodec
from nncodec.collection import get_model
from nncodec.container.writer import atomic_write
from nncodec.io import checkpoint_bytes, output_format
from nncodec.safetensors_out import (
    DEFAULT_SHARD_SIZE,
    folder_files,
    nbytes,
    parse_size,
    tensor_spec,
    write_file,
    write_folder,
    write_safetensors,
)

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
)

EPILOG = """\b
Examples:
  nncodec decode model.nnc                     # writes model.safetensors
  nncodec decode model.nnc -o model.pt         # a plain state dict for torch.load
  nncodec decode model.nnc -o restored.safetensors --force
  cat model.nnc | nncodec decode - -o - --format pt > model.pt
  nncodec decode set.nnc --model b -o b.safetensors   # one model of a collection
  nncodec decode model.nnc -o hf-model/ --max-shard-size 2GB   # Hugging Face sharded layout
  nncodec decode model.nnc.index.json -o model.safetensors    # a sharded .nnc checkpoint
"""


@click.command(epilog=EPILOG, short_help="Decode a .nnc file to .safetensors or .pt.")
@click.argument("source", metavar="INPUT.nnc", type=click.Path(dir_okay=True, allow_dash=True, path_type=Path))
@click.option("-o", "--output", type=click.Path(allow_dash=True),
              help="Output file ending in .safetensors or .pt, a folder (DIR/: Hugging Face's sharded layout), "
                   "or - for stdout [default: INPUT with .safetensors].")
@click.option("--format", "fmt", type=click.Choice(("safetensors", "pt")), default=None,
              help="Output format [default: from OUTPUT's extension; safetensors for stdout].")
@click.option("--max-shard-size", "max_shard_size", default=DEFAULT_SHARD_SIZE, show_default=True, metavar="SIZE",
              help="With OUTPUT a folder: the largest shard (5GB = 5*10**9 bytes, 2GiB = 2*2**30).")
@click.option("--threads", type=click.IntRange(min=0), default=0, show_default=True,
              help="Threads decoding the chunks of large tensors (0: every core).")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="Print only errors (no progress, notes or summary).")
@click.option("--model", default=None, help="Decode only this model of a collection (its tensors 'MODEL/...').")
def decode(source: Path, output: str | None, fmt: str | None, max_shard_size: str, threads: int, force: bool,
           as_json: bool, quiet: bool, model: str | None) -> None:
    """Decode every tensor of a .nnc file (or of a sharded checkpoint's NAME.nnc.index.json) and write
    them as .safetensors (with the file's metadata), as a folder of safetensors shards with
    model.safetensors.index.json (OUTPUT ending in / or an existing folder; one model.safetensors
    when everything fits in one shard, as Hugging Face does), or as a .pt state dict (torch.save of a
    dict of tensors; metadata is not kept). Safetensors outputs are written one tensor at a time.
    INPUT '-' reads stdin; OUTPUT '-' writes to stdout."""
    if output is None and str(source) == "-":
        raise CliError("decoding stdin needs -o OUTPUT (a file, or - for stdout)")
    out = Path(output) if output is not None else default_output(source, ".safetensors")
    to_stdout = str(out) == "-"
    to_folder = not to_stdout and (str(output).endswith(("/", os.sep)) or out.is_dir())
    max_bytes = parse_size(max_shard_size)
    if to_stdout:
        fmt = fmt or "safetensors"
        if is_terminal(sys.stdout):
            raise CliError("refusing to write binary data to a terminal; redirect stdout or give -o FILE")
    elif to_folder:
        if fmt == "pt":
            raise CliError("a folder output is written as safetensors shards; drop --format pt")
        fmt = "safetensors"
        if not out.parent.is_dir():
            raise CliError(f"{out.parent}: the output directory does not exist")
    else:
        if fmt is None and not out.suffix:
            raise CliError(f"{out}: choose an output ending in .safetensors or .pt, or a folder (end it in /) "
                           "for a sharded safetensors checkpoint")
        fmt = fmt or output_format(out)
        check_output(out, force, source)
    name = display_name(source)
    framework = "np" if fmt == "safetensors" and model is None else "pt"
    with progress("decode", quiet=quiet) as bar, reading(name), nncodec.open(nnc_source(source), framework, threads=threads) as f:
        if model is not None:
            tensors, metadata = get_model(f, model), f.metadata()
            data = _write(checkpoint_bytes(tensors, fmt, metadata), out, to_stdout, force)
            if not quiet:
                say(f"wrote {'stdout' if to_stdout else out}: model {model!r}, {plural(len(tensors), 'tensor')}, "
                           f"{human_bytes(len(data))}", err=to_stdout)
            return
        sizes = {t: nbytes(tensor_spec(f, t)) for t in f}
        count, metadata = len(f), f.metadata()
        bar.phase(f"decoding {plural(count, 'tensor')} of {name}", total=sum(sizes.values()))

        def step(tname: str) -> None:
            bar.update(sizes.get(tname, 0))

        if to_folder:
            files, _ = folder_files(f, max_bytes)
            clash = [n for n in files if (out / n).exists()] if out.is_dir() and not force else []
            if clash:
                raise CliError(f"{out / clash[0]} already exists (use --force to overwrite it)")
            written = write_folder(f, out, max_bytes, overwrite=force, progress=step)
        elif fmt == "safetensors" and to_stdout:
            written = {"-": write_safetensors(f, list(f), sys.stdout.buffer, metadata, step)}
            sys.stdout.flush()
        elif fmt == "safetensors":
            written = {str(out): write_file(f, out, overwrite=force, progress=step)}
        else:
            f.check_memory()  # every tensor is kept until written: refuse before decoding what cannot fit
            tensors = {}
            for tname in f:
                tensors[tname] = f.get_tensor(tname)
                step(tname)
            bar.phase(f"writing {'stdout' if to_stdout else out}")
            written = {str(out): len(_write(checkpoint_bytes(tensors, fmt, metadata), out, to_stdout, force))}
    if fmt == "pt" and metadata and not quiet:
        note(f"a .pt state dict has no place for metadata: {len(metadata)} entries not written (use .safetensors)")
    where = "stdout" if to_stdout else str(out)
    size = sum(written.values())
    if as_json:
        report = {"output": where, "format": fmt, "tensors": count, "bytes": size}
        if to_folder:
            report["files"] = written
        click.echo(json.dumps(report, indent=2), err=to_stdout)
    elif not quiet:
        files = f" in {plural(len(written), 'file')}" if to_folder else ""
        say(f"wrote {where}: {plural(count, 'tensor')}, {human_bytes(size)}{files}", err=to_stdout)


def _write(data: bytes, out: Path, to_stdout: bool, force: bool) -> bytes:
    """The checkpoint bytes to stdout, or atomically to OUT; returns them."""
    if to_stdout:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        atomic_write(out, data, overwrite=force)
    return data
