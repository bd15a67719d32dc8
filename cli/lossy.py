"""Lossy options of `nncodec encode`, and `nncodec budget` (accuracy-budget search on a built-in model).

The options only gather settings; `nncodec.compress.config` turns them into the per-tensor
compressor, so the command line and the Python API compress identically.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click

from nncodec.compress.config import CONFIGS, SMALL_CHOICES, make_compressor

LOSSY_KEYS = ("config", "step", "bits", "rel_error", "codebook", "sparsity", "global_sparsity", "rd_lambda",
              "per_channel", "small")

LOSSY_OPTIONS: list[Callable[[Callable], Callable]] = [
    click.option("--config", "config", type=click.Choice(sorted(CONFIGS)), default=None,
                 help="A named lossy configuration (other lossy options override its settings)."),
    click.option("--step", type=click.FloatRange(min=0, min_open=True), default=None,
                 help="Lossy: uniform quantization step (absolute) for every weight tensor."),
    click.option("--bits", type=click.IntRange(1, 16), default=None,
                 help="Lossy: signed symmetric grid of this many bits over each tensor's (or channel's) max |w|."),
    click.option("--rel-error", "rel_error", type=click.FloatRange(min=0, min_open=True, max=10), default=None,
                 help="Lossy: step whose rounding noise is this fraction of the weights' RMS (e.g. 0.05)."),
    click.option("--codebook", type=click.IntRange(1, 65536), default=None, metavar="K",
                 help="Lossy: k-means weight sharing with K values per tensor."),
    click.option("--sparsity", type=click.FloatRange(0, 1), default=None,
                 help="Lossy: prune this fraction of each weight tensor by magnitude before quantizing."),
    click.option("--global-sparsity", "global_sparsity", is_flag=True, default=None,
                 help="With --sparsity: one magnitude threshold across all weight tensors."),
    click.option("--rd-lambda", "rd_lambda", type=click.FloatRange(0), default=None,
                 help="Lossy: rate-distortion optimized quantization with this trade-off (step^2 per bit; ~0.02-0.1)."),
    click.option("--per-channel", "per_channel", is_flag=True, default=None,
                 help="Lossy: one step per output channel instead of one per tensor."),
    click.option("--small", type=click.Choice(SMALL_CHOICES), default=None,
                 help="Lossy: biases, norms and tiny tensors get a fine step or stay lossless [fine]."),
]


def lossy_requested(options: Mapping[str, Any]) -> bool:
    return any(options.get(k) not in (None, False) for k in LOSSY_KEYS)


def build_lossy_compressor(options: Mapping[str, Any], tensors: Mapping[str, Any] | None = None):
    """The compressor for the lossy command-line options, or None (lossless) when none is given."""
    if not lossy_requested(options):
        return None
    overrides = {k: options.get(k) for k in LOSSY_KEYS if k != "config"}
    overrides = {k: v for k, v in overrides.items() if v not in (None, False)}
    return make_compressor(options.get("config"), tensors=tensors, **overrides)


# ---------------------------------------------------------------------------------- budget

ARCH_CHOICES = ("lenet300", "lenet5")

BUDGET_EPILOG = """\b
Examples:
  nncodec budget --arch lenet300 --data fashion-mnist/ --max-drop 0.5 -o lenet300.nnc
  nncodec budget --arch lenet5 --data mnist/ --checkpoint lenet5.pt --max-drop 1.0 -o small.nnc
"""


def nncodec_load(data: bytes) -> dict:
    import nncodec

    return nncodec.load(data)


def _load_state(path: Path) -> dict:
    import torch

    if path.suffix == ".nnc":
        import nncodec

        return nncodec.load_file(path)
    from nncodec.io import read_checkpoint

    tensors, _, _ = read_checkpoint(path)
    return {k: torch.as_tensor(v) for k, v in tensors.items()}


@click.command("budget", epilog=BUDGET_EPILOG, short_help="Smallest .nnc of a built-in model within an accuracy budget.")
@click.option("--arch", type=click.Choice(ARCH_CHOICES), default=None,
              help="lenet300 (784-300-100-10) or lenet5 (LeNet-5-Caffe).")
@click.option("--model", "model_spec", default=None, metavar="PKG.MODULE:FACTORY",
              help="Your model instead of --arch (needs --checkpoint); --data forms as in `nncodec prune --help`.")
@click.option("--loss", type=click.Choice(("cross_entropy", "mse")), default="cross_entropy", show_default=True,
              help="With --model: cross_entropy scores accuracy in %, mse scores minus the mean loss.")
@click.option("--data", "data_dir", type=str, required=True,
              help="Directory with the IDX files (train-images-idx3-ubyte.gz, t10k-..., as for MNIST); with "
                   "--model also a .npz, an image folder or PKG.MODULE:LOADERS (scored on test, else validation).")
@click.option("--max-drop", "max_drop", type=click.FloatRange(0), required=True,
              help="Allowed accuracy drop in percentage points, held with --confidence on the validation images.")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="The .nnc file to write.")
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Trained weights (.pt, .safetensors or .nnc); trained from scratch (and saved here) if missing.")
@click.option("--epochs", type=click.IntRange(1), default=None, help="Training epochs when no checkpoint exists [12 / 4].")
@click.option("--calibrate/--no-calibrate", default=True, show_default=True,
              help="Use training-image statistics: OPTQ error feedback and bias correction (no retraining).")
@click.option("--per-channel", "per_channel", is_flag=True, help="One step per output channel.")
@click.option("--lambdas", default="0,0.05", show_default=True, help="RD lambdas to try (comma separated).")
@click.option("--max-evals", "max_evals", type=click.IntRange(1), default=400, show_default=True,
              help="Hard cap on the number of accuracy evaluations of the whole search.")
@click.option("--confidence", type=click.FloatRange(0.5, 1, max_open=True), default=0.95, show_default=True,
              help="A file is accepted when the one-sided upper bound of the paired validation drop at this "
                   "level is within --max-drop.")
@click.option("--validation", type=click.IntRange(1), default=5000, show_default=True,
              help="The last N training images are held out: the search selects on them, never on the test set.")
@click.option("--prefer", type=click.Choice(("size", "balanced", "speed")), default="balanced", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the result (sizes, accuracies, settings) as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="Print only errors (no progress, phase lines or summary).")
def budget(arch: str | None, model_spec: str | None, loss: str, data_dir: str, max_drop: float, output: Path,
           checkpoint: Path | None, epochs: int | None, calibrate: bool, per_channel: bool, lambdas: str, max_evals: int,
           confidence: float, validation: int, prefer: str, seed: int, force: bool, as_json: bool, quiet: bool) -> None:
    """Find the smallest .nnc file of a built-in classifier (or your --model) whose accuracy stays within
    --max-drop points of the uncompressed model (post-training: no retraining).

    The last --validation training images are held out (training from scratch uses only the rest).
    Every candidate file is decoded from its bytes and scored per sample on the validation images; it
    is accepted when the one-sided upper confidence bound of the paired drop is within --max-drop.
    The test set is scored once, for the chosen file, and both drops are printed. Step sizes and RD
    lambdas are allocated per layer by sensitivity. Progress goes to stderr.
    """
    from nncodec.budget import search_budget
    from nncodec.compress.layer_inputs import layer_statistics
    from nncodec.container.writer import atomic_write

    from .common import CliError, check_output, human_bytes, is_terminal
    from .common import say as echo
    from .presets import lenet
    from .presets.fashion_mnist import load_fashion_mnist, preprocess, train_validation_split

    def say(msg: str) -> None:  # a line per phase off a terminal (logs, CI); the search bar on one
        if not quiet:
            echo(f"budget: {msg}", err=True)

    check_output(output, force, data_dir)
    try:
        lams = tuple(float(v) for v in lambdas.split(",") if v.strip())
    except ValueError:
        raise CliError(f"--lambdas must be comma-separated numbers, got {lambdas!r}") from None
    if (arch is None) == (model_spec is None):
        raise CliError("give either --arch (a built-in preset) or --model PKG.MODULE:FACTORY")
    if model_spec is not None:  # your own model: see user_model.py
        from .user_model import user_budget

        user_budget(model_spec, checkpoint, data_dir, loss, max_drop, output, per_channel=per_channel, lambdas=lams,
                    prefer=prefer, max_evals=max_evals, force=force)
        return
    (x_train, y_train), (x_val, y_val) = train_validation_split(*load_fashion_mnist(data_dir, "train"), validation)
    x_test, y_test = load_fashion_mnist(data_dir, "test")
    model = lenet.build(arch)
    if checkpoint is not None and checkpoint.exists():
        state = _load_state(checkpoint)
        try:
            model.load_state_dict(state, strict=True)
        except (RuntimeError, KeyError) as e:
            raise CliError(f"{checkpoint}: not a {arch} checkpoint ({' '.join(str(e).split())[:200]})") from None
    else:
        n_epochs = epochs or (12 if arch == "lenet300" else 4)
        say(f"training {arch} for {n_epochs} epochs")
        lenet.train(model, x_train, y_train, epochs=n_epochs, seed=seed,
                    progress=lambda e, loss: say(f"  epoch {e + 1}: loss {loss:.4f}"))
        if checkpoint is not None:
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(checkpoint))
            say(f"saved the trained weights to {checkpoint}")
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if calibrate:
        say("calibrating: layer statistics from training images")
    stats = layer_statistics(model, preprocess(x_train)) if calibrate else None
    evaluate = lenet.make_evaluator(arch, x_val, y_val, per_sample=True)
    t0 = time.perf_counter()
    bar = not quiet and is_terminal(sys.stderr)
    if not bar:
        say(f"searching: at most {max_evals} evaluations of decoded candidates (this can take minutes)")
    result = search_budget(state, evaluate, max_drop, statistics=stats, per_channel=per_channel, lambdas=lams,
                           prefer=prefer, max_evals=max_evals, confidence=confidence, metadata={"arch": arch},
                           progress=bar)
    seconds = time.perf_counter() - t0
    atomic_write(output, result.data, overwrite=force)
    raw = sum(v.numel() * v.element_size() for v in state.values())
    test_model = lenet.build(arch)
    test_base = lenet.evaluate(test_model, x_test, y_test, state=state)
    test_acc = lenet.evaluate(test_model, x_test, y_test, state=nncodec_load(result.data))
    if as_json:
        import json

        click.echo(json.dumps({"output": str(output), "file_bytes": len(result.data), "float32_bytes": raw,
                               "validation": {"images": len(y_val), "accuracy": result.score,
                                              "baseline_accuracy": result.baseline, "drop_bound": result.drop_bound,
                                              "confidence": confidence},
                               "test": {"images": len(y_test), "accuracy": test_acc, "baseline_accuracy": test_base},
                               "max_drop": max_drop, "evaluations": result.evaluations, "seconds": round(seconds, 1),
                               "settings": {k: str(v) for k, v in result.settings.items()}}, indent=2))
        return
    if quiet:
        return
    echo(f"wrote {output}: {human_bytes(len(result.data))} ({raw / len(result.data):.1f}x smaller than "
         f"float32), {result.evaluations} evaluations in {seconds:.0f} s")
    echo(f"  validation ({len(y_val):,} images, selected on): {result.score:.2f}% (uncompressed "
         f"{result.baseline:.2f}%), drop {result.baseline - result.score:.2f}, "
         f"{confidence:.0%} upper bound {result.drop_bound:.2f} <= {max_drop}")
    echo(f"  test ({len(y_test):,} images, scored once): {test_acc:.2f}% (uncompressed {test_base:.2f}%), "
         f"drop {test_base - test_acc:.2f}")
    for name, setting in result.settings.items():
        echo(f"  {name}: {setting}")
