"""`nncodec encode`: a checkpoint (.pt, .safetensors, sharded index, .npz) to a .nnc file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

import nncodec
from nncodec.codecs.base import PREFER_CHOICES
from nncodec.container.writer import atomic_write
from nncodec.io import read_checkpoint

from .common import check_output, default_output, human_bytes, note, plural, progress_bar, say, tensor_nbytes
from .lossy import LOSSY_OPTIONS, build_lossy_compressor

Compressor = Callable[[str, Any], Any]

# Options that choose how tensors are compressed. Lossy options (bits, step, sparsity...) are
# appended here as click.option(...) decorators and interpreted in `build_compressor`.
COMPRESSOR_OPTIONS: list[Callable[[Callable], Callable]] = [*LOSSY_OPTIONS]


def build_compressor(options: dict[str, Any]) -> Compressor | None:
    """The per-tensor compressor for the command-line `options` (those of COMPRESSOR_OPTIONS, plus
    "tensors": all input tensors, which global sparsity needs); None means lossless, bit-exact
    coding of every tensor."""
    return build_lossy_compressor(options, options.get("tensors"))


def parse_metadata(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", ctx=ctx, param=param)
        out[key] = value
    return out


def _compressor_options(f: Callable) -> Callable:
    for option in reversed(COMPRESSOR_OPTIONS):
        f = option(f)
    return f


EPILOG = """\b
Examples:
  nncodec encode model.pt                      # writes model.nnc
  nncodec encode model.safetensors -o small.nnc --prefer size
  nncodec encode model.safetensors.index.json -o model.nnc
  nncodec encode weights.npz -o weights.nnc -m arch=mlp -m dataset=fashion-mnist --force
"""


@click.command(epilog=EPILOG, short_help="Compress a checkpoint (.pt, .safetensors, .npz...) into .nnc.")
@click.argument("source", metavar="INPUT", type=click.Path(dir_okay=True, path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Output .nnc file [default: INPUT with .nnc].")
@click.option("--prefer", type=click.Choice(PREFER_CHOICES), default="balanced", show_default=True,
              help="size: smallest file; balanced: entropy coding only when it saves >1/64; speed: fastest decode.")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@click.option("-m", "--metadata", "metadata", multiple=True, metavar="KEY=VALUE", callback=parse_metadata,
              help="Store a metadata string in the file (repeatable).")
@_compressor_options
def encode(source: Path, output: Path | None, prefer: str, force: bool, metadata: dict[str, str],
           **compressor_options: Any) -> None:
    """Compress a checkpoint into a .nnc file (lossless: every tensor decodes bit-exactly).

    INPUT is a .pt/.pth/.bin/.ckpt checkpoint (read only with torch.load(weights_only=True); the state
    dict may sit under 'state_dict' or 'model'), a .safetensors file, a sharded *.safetensors.index.json
    or an .npz archive. Plain values in a checkpoint (epoch, config strings) and the file's own
    metadata are kept as metadata.
    """
    out = output or default_output(source, ".nnc")
    check_output(out, force, source)
    tensors, meta, notes = read_checkpoint(source)
    for message in notes:
        note(message)
    meta.update(metadata)
    compressor = build_compressor({**compressor_options, "tensors": tensors})
    sizes = {name: tensor_nbytes(t) for name, t in tensors.items()}
    with progress_bar(sum(sizes.values()), "encoding") as bar:
        data = nncodec.save(tensors, meta, prefer=prefer, compressor=compressor,
                            progress=lambda name: bar.update(sizes.get(name, 0)))
    atomic_write(out, data, overwrite=force)
    raw = sum(sizes.values())
    ratio = f" ({len(data) / raw:.1%} of {human_bytes(raw)})" if raw else ""
    say(f"wrote {out}: {plural(len(tensors), 'tensor')}, {human_bytes(len(data))}{ratio}")
