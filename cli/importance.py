"""`nncodec importance`: rank a model's input features by their posterior inclusion probabilities."""

from __future__ import annotations

import json
import math
from pathlib import Path

import click
import torch

import nncodec
from nncodec.compress.spike_slab.features import path_feature_pip

from .common import CliError, reading

EPILOG = """\b
Examples:
  nncodec importance model.nnc
  nncodec importance model.nnc --top 20 --json
  nncodec importance model.nnc --png pixels.png     # 28x28 heat map (needs matplotlib)
  nncodec importance model.nnc --rule any           # first-layer rule (no chain)
"""


def first_pip_tensor(f: nncodec.NncFile) -> str | None:
    """The first tensor (in file order) that carries PIPs: the input layer for a sequential model."""
    for name in f.keys():
        if f.get_pip(name) is not None:
            return name
    return None


def pip_chain(f: nncodec.NncFile, first: str, pip: torch.Tensor) -> dict[str, torch.Tensor]:
    """name -> PIPs of the weights, in file order from `first` (whose PIPs are `pip`), that chain: each
    one's inputs (dim 1) are the previous one's outputs (dim 0). One-dimensional PIPs (biases) are skipped;
    the chain ends at the first weight that does not fit (e.g. a flatten between a convolution and a
    linear layer)."""
    names = list(f.keys())
    chain = {first: pip}
    for name in names[names.index(first) + 1:]:
        nxt = f.get_pip(name)
        if nxt is None or nxt.dim() < 2:
            continue
        if nxt.shape[1] != pip.shape[0]:
            break
        chain[name] = pip = nxt
    return chain


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
@click.option("--rule", type=click.Choice(["path", "any"]), default="path", show_default=True,
              help="path: P(a path of included weights joins the input to an output); any: P(at least one "
                   "first-layer weight of the input is included).")
def importance(file: Path, tensor_name: str | None, top: int, as_json: bool, png: Path | None, rule: str) -> None:
    """Print the most and least important input features of a model stored with PIPs (--keep-pip).

    A feature's PIP (--rule path, the default) is the probability that the input is joined to an output
    by a path of included weights, through the chain of stored weights from the input layer on
    (r = 1 - prod_j (1 - phi_ji r_j), last layer first; exact for one hidden layer). --rule any is the
    probability that at least one of its first-layer weights is included, 1 - prod(1 - phi): it also
    counts weights into hidden units that are switched off, whose PIPs stay at the prior, so it
    saturates on converged models (benchmarks/RESULTS.md, "Feature selection on fresh seeds")."""
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
        # the first-layer rule is the path rule over the first layer alone: 1 - prod(1 - phi)
        chain = pip_chain(f, name, pip) if rule == "path" else {name: pip}
    feat = path_feature_pip(list(chain.values()))
    through = " -> ".join(chain)
    order = torch.argsort(feat, descending=True, stable=True)
    selected = int((feat > 0.5).sum())
    if png is not None:
        side = math.isqrt(feat.numel())
        if side * side != feat.numel():
            raise CliError(f"--png needs a square number of input features, not {feat.numel()}")
        _heat_map(feat, png, f"{file.name}: {name}, {selected} of {feat.numel()} inputs with PIP > 0.5")
    if as_json:
        click.echo(json.dumps({"tensor": name, "rule": rule, "chain": list(chain), "features": feat.numel(), "selected": selected,
                               "pip": [round(float(v), 6) for v in feat],
                               "ranking": [int(i) for i in order]}, indent=1))
        return
    k = min(top, feat.numel())
    click.echo(f"{file}: {name}, {feat.numel()} input features, {selected} with PIP > 0.5 (rule {rule}: {through})")
    click.echo("most important:  " + ", ".join(f"{int(i)} ({float(feat[i]):.3f})" for i in order[:k]))
    click.echo("least important: " + ", ".join(f"{int(i)} ({float(feat[i]):.3f})" for i in order.flip(0)[:k]))
    if png is not None:
        click.echo(f"heat map written to {png}")
