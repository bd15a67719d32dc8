"""`nncodec prune`: training-aware pruning of a built-in classifier on an IDX dataset, no code needed,
or of your own model (--model pkg.module:factory, --checkpoint, --data; see user_model.py)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from nncodec.errors import NNCodecError

from .common import CliError, Interrupted, describe_os_error, is_terminal, one_line
from .common import say as echo

METHOD_NAMES = ("pmmp", "drr", "rl1", "tamade", "layerwise", "spike-slab")
ARCH_NAMES = ("lenet300", "lenet5")


PruneError = CliError  # one `error: ...` line on stderr, exit code 1


def _one_line(err: BaseException) -> str:
    return describe_os_error(err) if isinstance(err, OSError) else one_line(err)


def _check_output(path: Path, force: bool, what: str) -> None:
    if path.is_dir():
        raise PruneError(f"{path} is a directory; give a {what} file name")
    if not path.parent.exists() and str(path.parent) not in ("", "."):
        raise PruneError(f"{path.parent}: directory does not exist")
    if path.exists() and not force:
        raise PruneError(f"{path} already exists (use --force to overwrite it)")


EPILOG = """\b
Examples:
  nncodec prune --method drr --arch lenet300 --data fashion-mnist/ -o lenet300-drr.nnc
  nncodec prune --method pmmp --arch lenet5 --data fashion-mnist/ --epochs 20 -o lenet5.nnc --report r.json
  nncodec prune --method tamade --arch lenet300 --data fashion-mnist/ --dense dense.safetensors -o t.nnc
  nncodec prune --method rl1 --arch lenet300 --data mnist/ -o small.nnc --quiet --json > result.json
  nncodec prune --method pmmp --arch lenet300 --data fashion-mnist/ --epochs 30 --qat-epochs 10 -o smaller.nnc
\b
Your own model and data loader: see examples/prune_your_model.py (the Python API).
"""


@click.command("prune", epilog=EPILOG, short_help="Train, prune and store a built-in classifier (real file bytes).")
@click.option("--method", type=click.Choice(METHOD_NAMES), required=True, help="Pruning method.")
@click.option("--arch", type=click.Choice(ARCH_NAMES), default=None, help="Built-in architecture (a preset).")
@click.option("--model", "model_spec", default=None, metavar="PKG.MODULE:FACTORY",
              help="Your model instead of --arch: a function returning the torch.nn.Module.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="With --model: its trained weights (.pt read with weights_only=True, .safetensors, .npz, .nnc).")
@click.option("--loss", type=click.Choice(("cross_entropy", "mse")), default="cross_entropy", show_default=True,
              help="With --model: the training loss.")
@click.option("--quant-tolerance", type=click.FloatRange(0), default=0.01, show_default=True,
              help="With --model: relative validation-loss increase allowed for quantizing the pruned model.")
@click.option("--data", "data_dir", type=str, required=True,
              help="IDX directory (train-images-idx3-ubyte.gz, t10k-..., as for MNIST); with --model also a "
                   ".npz with x/y (x_val/y_val, x_test/y_test), an image folder, or PKG.MODULE:LOADERS.")
@click.option("--epochs", type=click.IntRange(0), default=10, show_default=True,
              help="Regularised training epochs (pmmp, drr, rl1); tamade and layerwise prune the dense model directly.")
@click.option("--finetune-epochs", type=click.IntRange(0), default=None,
              help="Fine-tuning epochs with the mask frozen [default: half of --epochs, at least 1].")
@click.option("--dense-epochs", type=click.IntRange(1), default=None, help="Dense training epochs [default: --epochs].")
@click.option("--dense", "dense_path", type=click.Path(dir_okay=False), default=None,
              help="Dense checkpoint (.safetensors or .nnc) to start from; trained and written there if missing.")
@click.option("--alpha", type=click.FloatRange(0), default=None, help="Penalty strength (method default if omitted).")
@click.option("--delta", type=click.FloatRange(0), default=None, help="TAMADE's tolerated relative loss increase [0.01].")
@click.option("--batch-size", type=click.IntRange(1), default=256, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(("cpu", "cuda")), default="cpu", show_default=True)
@click.option("-o", "--output", type=click.Path(), required=True, help="The .nnc file to write.")
@click.option("--report", "report_path", type=click.Path(), default=None, help="Write a JSON report here.")
@click.option("--force", is_flag=True, help="Overwrite existing output files.")
@click.option("-q", "--quiet", is_flag=True, help="Print only errors (no progress, no phase lines, no summary).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of the summary line.")
@click.option("--qat-epochs", type=click.IntRange(0), default=0, show_default=True,
              help="With --arch (not spike-slab): epochs of quantization-aware fine-tuning at coarser steps; the "
                   "smaller of that file and the plain one is kept, both held to the same validation limit (0: off).")
@click.option("--keep-pip", is_flag=True, help="spike-slab: store the inclusion probabilities (the mask is derived from them).")
@click.option("--prior-inclusion", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
              help="spike-slab: prior inclusion probability lambda (architecture default if omitted).")
@click.option("--kl-weight", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="spike-slab: KL weight of the tempered ELBO (architecture default if omitted).")
def prune(method: str, arch: str | None, model_spec: str | None, checkpoint: str | None, loss: str,
          quant_tolerance: float, data_dir: str, epochs: int, finetune_epochs: int | None, dense_epochs: int | None,
          dense_path: str | None, alpha: float | None, delta: float | None, batch_size: int, seed: int, device: str,
          output: str, report_path: str | None, force: bool, quiet: bool, as_json: bool, qat_epochs: int,
          keep_pip: bool, prior_inclusion: float | None, kl_weight: float | None) -> None:
    """Train ARCH densely (or load your --model and --checkpoint), prune it with METHOD, store it as
    a .nnc file and report its real size.

    The report holds the dense and compressed test accuracy, the file's bytes, its ratio to float32
    and the paper-style estimate (4 bytes per non-zero weight)."""
    out = Path(output)
    _check_output(out, force, "output")
    if report_path is not None:
        _check_output(Path(report_path), force, "report")
    if (arch is None) == (model_spec is None):
        raise PruneError("give either --arch (a built-in preset) or --model PKG.MODULE:FACTORY")
    if qat_epochs and (model_spec is not None or method == "spike-slab"):
        raise PruneError("--qat-epochs goes with --arch and the methods other than spike-slab")
    if model_spec is not None:
        if method == "spike-slab":
            if alpha is not None or delta is not None:
                raise PruneError("--alpha and --delta are not spike-slab options (use --kl-weight, --prior-inclusion)")
            extra = {k: v for k, v in {"prior_inclusion": prior_inclusion, "kl_weight": kl_weight}.items() if v is not None}
        elif keep_pip or prior_inclusion is not None or kl_weight is not None:
            raise PruneError("--keep-pip, --prior-inclusion and --kl-weight go with --method spike-slab")
        else:
            extra = {k: v for k, v in {"alpha": alpha, "delta": delta}.items() if v is not None}
        _guarded(lambda: _prune_user_model(
            method, model_spec, checkpoint, loss, quant_tolerance, data_dir, epochs, finetune_epochs, extra,
            batch_size, seed, device, out, report_path, quiet, as_json, keep_pip))
        return
    if checkpoint is not None:
        raise PruneError("--checkpoint goes with --model; for --arch use --dense")
    if not Path(data_dir).is_dir():
        raise PruneError(f"{data_dir}: not a directory")

    def run() -> dict:
        from nncodec.compress.training import recipes

        from .presets import classifier_runs

        progress = not quiet and is_terminal(sys.stderr)  # tqdm bars only on a terminal, never into pipes

        def say(msg: str) -> None:
            if not quiet:
                echo(f"prune: {msg}", err=True)

        say(f"reading {data_dir}; training {arch} densely" if dense_path is None or not Path(dense_path).exists()
            else f"reading {data_dir}; dense weights from {dense_path}")

        data = classifier_runs.load_data(data_dir)
        dense = classifier_runs.train_dense(arch, data, dense_epochs or max(epochs, 1), batch_size=batch_size,
                                            seed=seed, device=device, progress=progress, cache=dense_path)
        dense_acc = recipes.accuracy(dense.cpu(), data.test)
        say(f"dense {arch}: test accuracy {dense_acc:.2f}%")
        finetune = finetune_epochs if finetune_epochs is not None else max(1, epochs // 2)
        if method == "spike-slab":
            from nncodec.compress.spike_slab import recipe

            report = recipe.compress_classifier(
                dense, arch, data, out, epochs=epochs, finetune_epochs=finetune, keep_pip=keep_pip, batch_size=batch_size,
                seed=seed, device=device, progress=progress, dense_accuracy=dense_acc,
                overrides={"prior_inclusion": prior_inclusion, "kl_weight": kl_weight}, log=say)
            report.pop("model")
        else:
            report = recipes.compress_classifier(
                dense, arch, data, method, out, epochs=epochs, finetune_epochs=finetune,
                batch_size=batch_size, seed=seed, device=device, progress=progress, dense_accuracy=dense_acc,
                overrides={"alpha": alpha, "delta": delta}, log=say, qat_epochs=qat_epochs)
        report["output"] = os.fspath(out)
        if report_path is not None:
            Path(report_path).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        return report

    report = _guarded(run)
    if as_json:
        click.echo(json.dumps(report, indent=2, sort_keys=True))
    elif not quiet:
        echo(f"{out}: {report['file_bytes']:,} bytes (x{report['ratio']:.1f} vs float32; paper-style estimate "
                   f"{report['paper_estimate_bytes']:,} B = 4 B x {report['nonzero']:,} non-zero weights in the file), "
                   f"test accuracy {report['compressed_test_accuracy']:.2f}% (dense {report['dense_test_accuracy']:.2f}%)")


def _guarded(run: Any) -> Any:
    """Run `run()`, turning expected failures into one `error:` line."""
    try:
        return run()
    except NNCodecError as e:
        raise PruneError(_one_line(e)) from None
    except OSError as e:
        raise PruneError(_one_line(e)) from None
    except RuntimeError as e:  # torch failures (shape mismatches, out of memory)
        raise PruneError(_one_line(e)) from None
    except KeyboardInterrupt:
        raise Interrupted() from None


def _prune_user_model(method: str, model_spec: str, checkpoint: str | None, loss: str, quant_tolerance: float,
                      data: str, epochs: int, finetune_epochs: int | None, extra: dict[str, float],
                      batch_size: int, seed: int, device: str, out: Path, report_path: str | None, quiet: bool,
                      as_json: bool = False, keep_pip: bool = False) -> None:
    import functools

    import torch

    from nncodec.compress.training.usermodel import compress_model

    from .user_model import load_data, load_model

    torch.manual_seed(seed)
    model = load_model(model_spec, checkpoint)
    loaders = load_data(data, batch_size, seed)
    options: dict[str, Any] = {"seed": seed, "progress": not quiet and is_terminal(sys.stderr),
                               "finetune_epochs": finetune_epochs if finetune_epochs is not None else max(1, epochs // 2)}
    options["epochs"] = 0 if method in ("tamade", "layerwise") else epochs
    options.update(extra)
    family: dict[str, Any] = {}
    if method == "spike-slab":  # its own family: the method and its writer (PIPs stored with --keep-pip)
        from nncodec.compress.spike_slab import save_spike_slab, spike_slab

        family = {"run": spike_slab, "save": functools.partial(save_spike_slab, keep_pip=keep_pip)}
    report = compress_model(model, loaders.train, loaders.val, loss, method, out, test=loaders.test,
                            quant_tolerance=quant_tolerance, device=device, options=options,
                            log=None if quiet else (lambda m: echo(m, err=True)), **family)
    report.update({"model": model_spec, "output": os.fspath(out)})
    if method == "spike-slab":
        report["keep_pip"] = keep_pip
    if report_path is not None:
        Path(report_path).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    if as_json:
        click.echo(json.dumps(report, indent=2, sort_keys=True))
        return
    if quiet:
        return
    final = report.get("compressed_test", report["compressed_val"])
    dense = report.get("dense_test", report["dense_val"])
    where = "test" if "compressed_test" in report else "validation"
    extra = (f", {where} accuracy {final['accuracy']:.2f}% (dense {dense['accuracy']:.2f}%)" if "accuracy" in final else "")
    echo(f"{out}: {report['file_bytes']:,} bytes (x{report['ratio']:.1f} vs float32), {report['nonzero']:,} of "
               f"{report['parameters']:,} parameters non-zero, {where} loss {final['loss']:.4f} (dense {dense['loss']:.4f})"
               f"{extra}")
