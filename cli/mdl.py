"""`nncodec mdl`: a data set's description length as a file that decodes back to the data.

`encode` writes one .nnc file holding the model (two-part code) and the data range-coded under it,
or only the coded data (prequential: the decoder retrains as it decodes); `decode` turns it back
into the original bytes, checked against the sha256 recorded at encoding.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from tqdm import tqdm

from nncodec.container.writer import atomic_write

from .common import check_output, human_bytes, note

EPILOG_ENCODE = """\b
Examples:
  nncodec mdl encode book.txt -o book.nnc                  # two-part: model + data
  nncodec mdl encode book.txt -o book.nnc --prequential    # no stored model
  nncodec mdl encode book.txt -o book.nnc --prequential --arch cm    # context mixing, learns online
  nncodec mdl encode train-labels-idx1-ubyte -o labels.nnc --prequential \\
      --labels-for train-images-idx3-ubyte.gz
  # the average of two heads on patch-PCA features of all the images (FORMAT.md §21.5), iterate
  # averaging and blocks growing by sqrt(2) (session 6's choice on the development set):
  nncodec mdl encode train-labels-idx1-ubyte -o labels.nnc --prequential \\
      --labels-for train-images-idx3-ubyte.gz --lr 5e-4 --weight-decay 1e-2 --batch 64 --epochs 4 \\
      --average 0.5 --first-block 32 --block-ratio 1.4142135623730951 --arch '{"arch": "mix", "temps": ["1"], "share": "1", "members": [
        {"arch": "patchpca", "shape": [28, 28], "kernel": 5, "filters": 16, "pool": 4, "hidden": [64],
         "classes": 10}, {"arch": "patchpca", "shape": [28, 28], "kernel": 5, "filters": 16, "pool": 4,
         "hidden": [64], "classes": 10}]}'
"""


def _bar(total: int | None, desc: str) -> tqdm:
    return tqdm(total=total, desc=desc, unit="sym", unit_scale=True, file=sys.stderr, leave=False, delay=2.0,
                disable=not sys.stderr.isatty())


@click.group(short_help="Dataset description length: code data under a model, decode it back.")
def mdl() -> None:
    """Minimum description length of a data set: two-part and prequential codes in one .nnc file."""


@mdl.command(epilog=EPILOG_ENCODE, short_help="Code DATA (bytes, or labels given inputs) into a .nnc file.")
@click.argument("data", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Output .nnc file.")
@click.option("--prequential", is_flag=True, help="Prequential code: no stored model, the decoder retrains.")
@click.option("--labels-for", "labels_for", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="DATA is an IDX label file; code it given these IDX inputs (needed again to decode).")
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Two-part: use this trained state dict (.pt/.safetensors) instead of training one; "
              "a .nnc model file becomes the model part as it is (no level search).")
@click.option("--arch", help='Model spec as JSON, e.g. \'{"arch":"lstm","alphabet":256,"emb":16,"hidden":128}\', '
              'or `cm` (bytes, --prequential): the default context-mixing model (FORMAT.md §21.7).')
@click.option("--epochs", type=float, default=None, help="Training passes (prequential: per block, over all data so far).")
@click.option("--lr", type=float, default=None, help="Adam learning rate.")
@click.option("--batch", type=int, default=None, help="Training batch size.")
@click.option("--seqlen", type=int, default=None, help="Sequence models: training window length.")
@click.option("--weight-decay", type=float, default=None, help="Adam weight decay.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the initialisation and of training.")
@click.option("--streams", type=int, default=None, help="Byte data: lock-step streams [default: ~8 KiB each, at most 128; cm: ~16 KiB, at most 64].")
@click.option("--first-block", type=int, default=None, help="Prequential: symbols in the first block (then doubling).")
@click.option("--block-ratio", type=click.FloatRange(1.0, 1e6, min_open=True), default=2.0, show_default=True,
              help="Prequential: each block end is this many times the previous one (2 = doubling).")
@click.option("--average", type=click.FloatRange(0.0, 1.0), default=None,
              help="Code with the mean of the iterates of the last AVERAGE fraction of each training's steps (0 = off).")
@click.option("--levels", default=None, help="Two-part: comma-separated model compression levels to try "
              "(lossless, 1/4, 1/8 ... = uniform step std/k) [default: all].")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@click.option("-v", "--verbose", is_flag=True, help="Print the MDL curve or the per-block code lengths.")
def encode(data: Path, output: Path, prequential: bool, labels_for: Path | None, model_path: Path | None,
           arch: str | None, epochs: float | None, lr: float | None, batch: int | None, seqlen: int | None,
           weight_decay: float | None, seed: int, streams: int | None, first_block: int | None, block_ratio: float,
           average: float | None, levels: str | None, force: bool, verbose: bool) -> None:
    """Code DATA into one .nnc file whose size is its description length (checked by decoding)."""
    from dataclasses import replace

    from nncodec import BadArgumentError
    from nncodec import mdl as api
    from nncodec.io import read_checkpoint
    from nncodec.mdl.kinds import SideInfo

    check_output(output, force, data)
    settings = api.EncodeSettings(kind="labels" if labels_for else "bytes", prequential=prequential, seed=seed,
                                  streams=streams, first_block=first_block, block_ratio=block_ratio)
    if arch == "cm":  # the default context-mixing spec (bytes, prequential), tables sized to the data
        from nncodec.mdl.cm import default_cm_spec

        settings.spec = default_cm_spec(data.stat().st_size)
    elif arch:
        try:
            settings.spec = json.loads(arch)
        except json.JSONDecodeError as e:
            raise BadArgumentError(f"--arch is not JSON: {e}") from None
    changes = {k: v for k, v in dict(epochs=epochs, lr=lr, batch=batch, seqlen=seqlen, weight_decay=weight_decay,
                                     average=average).items()
               if v is not None}
    settings.train = replace(settings.train, **changes)
    side = SideInfo.from_path(labels_for) if labels_for else None
    model_file = model_path.read_bytes() if model_path and model_path.suffix.lower() == ".nnc" else None
    tensors = read_checkpoint(model_path)[0] if model_path and model_file is None else None
    chosen = tuple(x.strip() for x in levels.split(",")) if levels else api.LEVELS
    for level in chosen:
        if level != "lossless" and not (level.startswith("1/") and level[2:].isdigit() and int(level[2:]) > 0):
            raise BadArgumentError(f"unknown level {level!r}: use lossless or 1/K")
    raw = data.read_bytes()
    log = (lambda m: note(m)) if verbose else None
    with _bar(None, "coding") as bar:
        out, report = api.encode(raw, settings, side, tensors, chosen, progress=bar.update, log=log,
                                 model_file=model_file)
    atomic_write(output, out, overwrite=force)
    extra = f", model compression {report.level}" if report.level else ""
    click.echo(f"wrote {output}: {report.code} code of {report.n:,} symbols in {human_bytes(report.file_bytes)} "
               f"({report.bits_per_symbol:.4f} bits/symbol; data {report.data_bytes:,} B, rest {report.model_bytes:,} B"
               f"{extra})")


@mdl.command(short_help="Decode a dataset .nnc file back to the original bytes.")
@click.argument("file", metavar="FILE.nnc", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Where to write the data.")
@click.option("--labels-for", "labels_for", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The IDX inputs the labels were coded given.")
@click.option("--allow-env-mismatch", is_flag=True,
              help="Try even if torch/constriction/platform/CPU kernels differ from the encoder's (the result is still checked).")
@click.option("--max-work-per-byte", type=click.IntRange(1), default=None,
              help="Multiply-adds of decoding allowed per coded byte [default: 2^33]; a file that asks for more "
                   "is refused before any training (FORMAT §21.6).")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
def decode(file: Path, output: Path, labels_for: Path | None, allow_env_mismatch: bool, max_work_per_byte: int | None,
           force: bool) -> None:
    """Decode FILE.nnc to OUTPUT, byte for byte the data that was encoded (sha256-checked)."""
    from dataclasses import replace

    from nncodec import mdl as api
    from nncodec.limits import DEFAULT_LIMITS
    from nncodec.mdl.kinds import SideInfo

    from .common import reading

    check_output(output, force, file)
    side = SideInfo.from_path(labels_for) if labels_for else None
    limits = DEFAULT_LIMITS if max_work_per_byte is None else replace(DEFAULT_LIMITS, max_dataset_work_per_byte=max_work_per_byte)
    with reading(file), _bar(None, "decoding") as bar:
        data = api.decode(file, side, allow_env_mismatch=allow_env_mismatch, progress=bar.update, limits=limits)
    atomic_write(output, data, overwrite=force)
    click.echo(f"wrote {output}: {len(data):,} bytes (sha256 verified)")
