"""`nncodec decode`: a .nnc file back to .safetensors or .pt."""

from __future__ import annotations

from pathlib import Path

import click

import nncodec
from nncodec.dtypes import DTYPES
from nncodec.io import output_format, write_checkpoint

from .common import check_output, default_output, human_bytes, note, plural, progress_bar, reading, say

EPILOG = """\b
Examples:
  nncodec decode model.nnc                     # writes model.safetensors
  nncodec decode model.nnc -o model.pt         # a plain state dict for torch.load
  nncodec decode model.nnc -o restored.safetensors --force
"""


@click.command(epilog=EPILOG, short_help="Decode a .nnc file to .safetensors or .pt.")
@click.argument("source", metavar="INPUT.nnc", type=click.Path(dir_okay=True, path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Output file ending in .safetensors or .pt [default: INPUT with .safetensors].")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
def decode(source: Path, output: Path | None, force: bool) -> None:
    """Decode every tensor of a .nnc file and write them as .safetensors (with the file's metadata)
    or as a .pt state dict (torch.save of a dict of tensors; metadata is not kept)."""
    out = output or default_output(source, ".safetensors")
    fmt = output_format(out)
    check_output(out, force, source)
    with reading(source), nncodec.open(source) as f:
        f.check_fits_in_memory()  # all tensors are held until written: refuse a terabyte up front
        report = f.info()
        sizes = {t["name"]: t.get("numel", 0) * DTYPES[t["dtype"]].itemsize if "dtype" in t else 0
                 for t in report["tensors"]}
        tensors = {}
        with progress_bar(sum(sizes.values()), "decoding") as bar:
            for name in f:
                tensors[name] = f.get_tensor(name)
                bar.update(sizes.get(name, 0))
        metadata = f.metadata()
    written = write_checkpoint(tensors, out, metadata, overwrite=force, fmt=fmt)
    if fmt == "pt" and metadata:
        note(f"a .pt state dict has no place for metadata: {len(metadata)} entries not written (use .safetensors)")
    say(f"wrote {out}: {plural(len(tensors), 'tensor')}, {human_bytes(written)}")
