"""`nncodec importance`: rank a model's input features by their posterior inclusion probabilities."""

from __future__ import annotations

import json
import math
from pathlib import Path

import click
import torch

import nncodec
from nncodec.compress.spike_slab.elbo import input_feature_pip

from .common import CliError, reading

EPILOG = """\b
Examples:
  nncodec importance model.nnc
  nncodec importance model.nnc --top 20 --json
  nncodec importance model.nnc --png pixels.png     # 28x28 heat map (needs matplotlib)
"""


def first_pip_tensor(f: nncodec.NncFile) -> str | None:
    """The first tensor (in file order) that carries PIPs: the input layer for a sequential model."""
    for name in f.keys():
        if f.get_pip(name) is not None:
            return name
    return None


def _heat_map(values: torch.Tensor, out: Path, title: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CliError("--png needs matplotlib (pip install matplotlib)") from None
    side = math.isqrt(values.numel())
    fig, ax = plt.subplots(figsize=(4, 3.6))
    im = ax.imshow(values.reshape(side, side).numpy(), cmap="viridis", vmin=0, vmax=1)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    fig.colorbar(im, ax=ax, fraction=0.046, label="input PIP")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


@click.command(epilog=EPILOG, short_help="Rank input features by their inclusion probabilities.")
@click.argument("file", metavar="FILE.nnc", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--tensor", "tensor_name", default=None, help="The input layer's weight [default: the first tensor with PIPs].")
@click.option("--top", type=click.IntRange(1), default=10, show_default=True, help="How many of each end to show.")
@click.option("--json", "as_json", is_flag=True, help="Print every feature's PIP as JSON.")
@click.option("--png", "png", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Draw a heat map (square inputs, e.g. 28x28 = 784 features).")
def importance(file: Path, tensor_name: str | None, top: int, as_json: bool, png: Path | None) -> None:
    """Print the most and least important input features of a model stored with PIPs (--keep-pip).

    A feature's PIP is the probability that at least one of its outgoing weights is included,
    1 - prod(1 - phi) over the input layer's outputs (and kernel positions for a convolution)."""
    with reading(file), nncodec.open(file) as f:
        name = tensor_name or first_pip_tensor(f)
        if name is None:
            raise CliError(f"{file}: no tensor has inclusion probabilities (save it with --keep-pip)")
        if name not in f:
            raise CliError(f"{file}: no tensor named {name!r}")
        pip = f.get_pip(name)
        if pip is None:
            raise CliError(f"{file}: tensor {name!r} has no inclusion probabilities")
    if pip.dim() < 2:
        raise CliError(f"tensor {name!r} has shape {list(pip.shape)}; an input layer's weight is (out, in, ...)")
    feat = input_feature_pip(pip)
    order = torch.argsort(feat, descending=True, stable=True)
    selected = int((feat > 0.5).sum())
    if png is not None:
        side = math.isqrt(feat.numel())
        if side * side != feat.numel():
            raise CliError(f"--png needs a square number of input features, not {feat.numel()}")
        _heat_map(feat, png, f"{file.name}: {name}, {selected} of {feat.numel()} inputs with PIP > 0.5")
    if as_json:
        click.echo(json.dumps({"tensor": name, "features": feat.numel(), "selected": selected,
                               "pip": [round(float(v), 6) for v in feat],
                               "ranking": [int(i) for i in order]}, indent=1))
        return
    k = min(top, feat.numel())
    click.echo(f"{file}: {name}, {feat.numel()} input features, {selected} with PIP > 0.5")
    click.echo("most important:  " + ", ".join(f"{int(i)} ({float(feat[i]):.3f})" for i in order[:k]))
    click.echo("least important: " + ", ".join(f"{int(i)} ({float(feat[i]):.3f})" for i in order.flip(0)[:k]))
    if png is not None:
        click.echo(f"heat map written to {png}")
