"""`nncodec demo`: encode the small trained model shipped in the package, no download needed."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import click
import numpy as np

import nncodec
from nncodec.container.writer import atomic_write
from nncodec.convert import to_numpy
from nncodec.io import read_checkpoint

from .common import CliError, check_output, say
from .report import format_report

DEMO_CHECKPOINT = "demo_mlp.safetensors"

EPILOG = """\b
Examples:
  nncodec demo
  nncodec demo -o demo.nnc && nncodec info demo.nnc
"""


def bit_exact(a: object, b: object) -> bool:
    """Same dtype, shape and bits (so NaN payloads and -0.0 count)."""
    (da, xa), (db, xb) = to_numpy(a), to_numpy(b)
    return da == db and xa.shape == xb.shape and np.array_equal(xa.view(np.uint8), xb.view(np.uint8))


@click.command(epilog=EPILOG, short_help="Encode a bundled trained model (no download).")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Also write the .nnc file here.")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the byte report as JSON (with the round-trip result).")
def demo(output: Path | None, force: bool, as_json: bool) -> None:
    """Losslessly encode a small MLP trained on Fashion-MNIST (shipped inside the package), print the
    byte table and the size against float32, and check that decoding gives back the exact bits."""
    if output is not None:
        check_output(output, force, output)
    source = resources.files("nncodec") / "data" / DEMO_CHECKPOINT
    with resources.as_file(source) as path:
        tensors, meta, _ = read_checkpoint(path)
    data = nncodec.save(tensors, meta)
    with nncodec.open(data) as f:
        report = f.info()
        decoded = {name: f.get_tensor(name) for name in f}
    bad = [n for n in tensors if n not in decoded or not bit_exact(tensors[n], decoded[n])]
    if bad or len(decoded) != len(tensors):
        raise CliError(f"round trip differs for {', '.join(bad) or 'the tensor list'}")
    if output is not None:
        atomic_write(output, data, overwrite=force)
    if as_json:
        click.echo(json.dumps({"source": DEMO_CHECKPOINT, "round_trip": "bit-exact", "output": output and str(output),
                               **report}, indent=2))
        return
    say(f"{DEMO_CHECKPOINT} -> .nnc (lossless)")
    click.echo(format_report(report))
    f32 = 4 * report["parameters"]
    say(f"\n{len(data):,} bytes vs {f32:,} bytes as float32: {len(data) / f32:.1%} "
               f"({1 - len(data) / f32:.1%} smaller)")
    say(f"round trip: all {len(tensors)} tensors decode bit-exactly")
    if output is not None:
        say(f"wrote {output}")
