"""`nncodec encode`: a checkpoint (.pt, .safetensors, sharded index, .npz) to a .nnc file."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

import nncodec
from nncodec import fidelity
from nncodec.api import unique_nbytes
from nncodec.codecs.base import PREFER_CHOICES
from nncodec.container.writer import atomic_write
from nncodec.io import read_checkpoint
from nncodec.sharded import is_index
from nncodec.sharded_write import parse_part

from .common import (
    CliError,
    check_output,
    default_output,
    display_name,
    human_bytes,
    is_terminal,
    note,
    plural,
    progress,
    say,
)
from .encode_stream import checkpoint_file, encode_streaming
from .lossy import LOSSY_KEYS, LOSSY_OPTIONS, build_lossy_compressor, lossy_requested
from .vae import VAE_KEYS, VAE_OPTIONS, encode_vae

Compressor = Callable[[str, Any], Any]

# Options that choose how tensors are compressed. Lossy options (bits, step, sparsity...) are
# appended here as click.option(...) decorators and interpreted in `build_compressor`.
COMPRESSOR_OPTIONS: list[Callable[[Callable], Callable]] = [*LOSSY_OPTIONS, *VAE_OPTIONS]


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
  nncodec encode model.pt                      # lossless: writes model.nnc
  nncodec encode model.safetensors -o small.nnc --prefer size
  nncodec encode model.safetensors.index.json -o model.nnc
  nncodec encode weights.npz -o weights.nnc -m arch=mlp -m dataset=fashion-mnist --force
  nncodec encode model.pt -o model-int8.nnc --config int8     # lossy: prints the error it made
  nncodec encode model.pt -o pruned.nnc --bits 6 --sparsity 0.5
  nncodec encode model.pt -o - | ssh host 'cat > model.nnc'   # to stdout
  curl -s https://example.org/model.safetensors | nncodec encode - -o model.nnc
  nncodec encode --method vae a.pt b.pt c.pt -o set.nnc   # one shared VAE decoder
"""


def lossy_description(options: dict[str, Any]) -> str:
    """The lossy options as given on the command line (`--config balanced --sparsity 0.5`)."""
    parts = []
    for key in LOSSY_KEYS:
        value = options.get(key)
        if value in (None, False):
            continue
        flag = "--" + key.replace("_", "-")
        parts.append(flag if value is True else f"{flag} {value}")
    return " ".join(parts)


def check_nnc_name(out: Path, any_extension: bool) -> None:
    """`encode` writes .nnc bytes: another extension would mislead every tool that trusts it."""
    if str(out) == "-" or any_extension or out.name.lower().endswith(".nnc") or is_index(out):
        return
    hint = " (to write .safetensors or .pt, use `nncodec decode`)" if out.suffix.lower() in (".safetensors", ".pt", ".pth", ".bin") else ""
    raise CliError(f"{out} does not end in .nnc: encode writes .nnc files{hint}; "
                   "pass --any-extension to use this name anyway")


@click.command(epilog=EPILOG, short_help="Compress a checkpoint (.pt, .safetensors, .npz...) into .nnc.")
@click.argument("sources", metavar="INPUT...", nargs=-1, required=True,
                type=click.Path(dir_okay=True, allow_dash=True, path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Output .nnc file, or - for stdout [default: INPUT with .nnc].")
@click.option("--prefer", type=click.Choice(PREFER_CHOICES), default="balanced", show_default=True,
              help="size: smallest file; balanced: entropy coding only when it saves >1/64; speed: fastest decode.")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@click.option("--any-extension", "any_extension", is_flag=True, help="Allow an OUTPUT name not ending in .nnc.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON (sizes, ratio, lossy error).")
@click.option("-q", "--quiet", is_flag=True, help="Print only errors and warnings (no progress, notes or summary).")
@click.option("-m", "--metadata", "metadata", multiple=True, metavar="KEY=VALUE", callback=parse_metadata,
              help="Store a metadata string in the file (repeatable).")
@click.option("--threads", type=click.IntRange(min=0), default=0, show_default=True,
              help="Threads coding tensors and chunks (0: every core); the file is the same for any number.")
@click.option("--shard", "shard", metavar="I/N", default=None,
              help="With OUTPUT NAME.nnc.index.json: encode only input shards I, I+N, I+2N... (1-based), so N "
                   "processes or machines can share the work; together they write exactly what one run writes.")
@_compressor_options
def encode(sources: tuple[Path, ...], output: Path | None, prefer: str, force: bool, any_extension: bool, as_json: bool,
           quiet: bool, metadata: dict[str, str], threads: int, shard: str | None, **compressor_options: Any) -> None:
    """Compress a checkpoint into a .nnc file. Lossless by default: every tensor decodes bit-exactly.
    Any lossy option (--config, --bits, --step, --rel-error, --codebook, --sparsity, --rd-lambda)
    makes it lossy: the output then says so and prints the relative L2 error of the weights, which
    `nncodec info` shows later too.

    INPUT is a .pt/.pth/.bin/.ckpt checkpoint (read only with torch.load(weights_only=True); the state
    dict may sit under 'state_dict' or 'model'), a .safetensors file, a sharded *.safetensors.index.json
    or an .npz archive. Plain values in a checkpoint (epoch, config strings) and the file's own
    metadata are kept as metadata. INPUT '-' reads a checkpoint from stdin (its format is recognised
    from its bytes); OUTPUT '-' writes the .nnc bytes to stdout. With --method vae, several INPUTs make
    one collection file that shares one decoder.
    """
    vae_options = {k: compressor_options.pop(k) for k in VAE_KEYS}
    if vae_options["method"] == "vae":
        given = [k for k, v in compressor_options.items() if v not in (None, False)]
        if given:
            raise click.UsageError(f"--method vae does not combine with lossy options ({', '.join(given)})")
        _encode_vae(sources, output, force, any_extension, metadata, vae_options)
        return
    if len(sources) != 1:
        raise click.UsageError("several INPUTs make a collection: use --method vae")
    source = sources[0]
    if output is None and str(source) == "-":
        raise CliError("encoding stdin needs -o OUTPUT.nnc (or -o - for stdout)")
    out = output or default_output(source, ".nnc")
    to_stdout = str(out) == "-"
    sharded_out = is_index(out)
    part = parse_part(shard) if shard is not None else None
    if part is not None and not sharded_out:
        raise click.UsageError("--shard I/N needs a sharded output: -o NAME.nnc.index.json")
    if sharded_out and lossy_requested(compressor_options):
        raise click.UsageError("a sharded output (NAME.nnc.index.json) is lossless: drop the lossy options")
    check_nnc_name(out, any_extension)
    if to_stdout:
        if is_terminal(sys.stdout):
            raise CliError("refusing to write .nnc bytes to a terminal; redirect stdout or give -o FILE.nnc")
    elif not sharded_out:
        check_output(out, force, source)
    elif not out.parent.is_dir():
        raise CliError(f"{out.parent}: the output directory does not exist")
    lossy = lossy_description(compressor_options)
    if sharded_out or not lossy:
        with progress("encode", quiet=quiet) as bar, checkpoint_file(source) as path:
            written, tensors, raw = encode_streaming(path, out, bar, prefer=prefer, metadata=metadata, force=force,
                                                     part=part, quiet=quiet, to_stdout=to_stdout, threads=threads,
                                                     compressor=build_compressor(compressor_options))
        _report(out, to_stdout, written, tensors, raw, None, lossy, as_json, quiet)
        return
    with progress("encode", quiet=quiet) as bar:
        bar.phase(f"reading {display_name(source)}")
        with checkpoint_file(source) as path:
            tensors, meta, notes = read_checkpoint(path)
        for message in notes if not quiet else ():
            note(message)
        meta.update(metadata)
        compressor = build_compressor({**compressor_options, "tensors": tensors})
        raw = unique_nbytes(tensors)
        sizes = {name: unique_nbytes({name: t}) for name, t in tensors.items()}
        bar.phase(f"quantizing {plural(len(tensors), 'tensor')} ({lossy})", total=raw)
        coding = [False]

        def step(stage: str, name: str) -> None:
            if stage == "code" and not coding[0]:
                coding[0] = True
                bar.phase(f"coding {plural(len(tensors), 'tensor')}")
            bar.update(sizes.get(name, 0) // 2)  # the bar counts input bytes; each stage is half the work

        data = nncodec.save(tensors, meta, prefer=prefer, compressor=compressor, progress=step, threads=threads)
        bar.phase(f"writing {'stdout' if to_stdout else out}")
        if to_stdout:
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
        else:
            atomic_write(out, data, overwrite=force)
    with nncodec.open(data) as f:
        summary = f.error_summary()
    _report(out, to_stdout, {str(out): len(data)}, len(tensors), raw, summary, lossy, as_json, quiet)


def _report(out: Path, to_stdout: bool, written: dict[str, int], tensors: int, raw: int, summary: dict | None,
            lossy: str, as_json: bool, quiet: bool) -> None:
    """The summary of an encode: files written, sizes, ratio, and the lossy error if any."""
    size = sum(written.values())
    warn = fidelity.warning(summary)
    if warn:
        say(f"warning: {warn}", err=True)
    if as_json:
        report = {"output": str(out), "tensors": tensors, "file_bytes": size, "uncompressed_bytes": raw,
                  "fraction": size / raw if raw else None, "lossless": not lossy,
                  "lossy_options": lossy or None, "error": summary}
        if len(written) > 1 or is_index(out):
            report["files"] = written
        click.echo(json.dumps(report, indent=2), err=to_stdout)
        return
    if quiet:
        return
    ratio = f" ({size / raw:.1%} of {human_bytes(raw)} uncompressed)" if raw else ""
    kind = f"lossy: {lossy}" if lossy else "lossless"
    files = f" in {plural(len(written), 'file')} + index" if is_index(out) else ""
    say(f"wrote {out if not to_stdout else 'stdout'} ({kind}): {plural(tensors, 'tensor')}, "
        f"{human_bytes(size)}{files}{ratio}", err=to_stdout)
    if summary:
        click.echo("error of the decoded values against the input:", err=to_stdout)
        for line in fidelity.describe(summary):
            say(f"  {line}", err=to_stdout)


def _encode_vae(sources: tuple[Path, ...], output: Path | None, force: bool, any_extension: bool,
                metadata: dict[str, str], options: dict[str, Any]) -> None:
    """Several checkpoints into one collection file whose models share one VAE decoder."""
    if any(str(s) == "-" for s in sources):
        raise CliError("--method vae reads its INPUTs from files, not stdin")
    out = output or default_output(sources[0], ".nnc")
    check_nnc_name(out, any_extension)
    if str(out) == "-":
        raise CliError("--method vae writes a file: give -o FILE.nnc")
    for source in sources:
        check_output(out, force, source)

    def read(path: Path) -> dict:
        tensors, _, notes = read_checkpoint(path)
        for message in notes:
            note(f"{path}: {message}")
        return tensors

    data, line = encode_vae(sources, read, dict(metadata), options)
    atomic_write(out, data, overwrite=force)
    say(f"wrote {out} (lossy: --method vae): {plural(len(sources), 'model')}, {human_bytes(len(data))}")
    say(line)
