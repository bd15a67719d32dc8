"""`nncodec prune`: training-aware pruning of a built-in classifier on an IDX dataset, no code needed."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from nncodec.errors import NNCodecError

METHOD_NAMES = ("pmmp", "drr", "rl1", "tamade", "layerwise", "spike-slab")
ARCH_NAMES = ("lenet300", "lenet5")


class PruneError(click.ClickException):
    """One `error: ...` line on stderr, exit code 1."""

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", file=file or sys.stderr)


def _one_line(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        name = err.filename2 if err.filename2 is not None else err.filename
        return f"{name}: {err.strerror}" if name is not None else err.strerror
    return " ".join(str(err).split()) or type(err).__name__


def _check_output(path: Path, force: bool, what: str) -> None:
    if path.is_dir():
        raise PruneError(f"{path} is a directory; give a {what} file name")
    if not path.parent.exists() and str(path.parent) not in ("", "."):
        raise PruneError(f"{path.parent}: directory does not exist")
    if path.exists() and not force:
        raise PruneError(f"{path} already exists (use --force to overwrite it)")


@click.command("prune")
@click.option("--method", type=click.Choice(METHOD_NAMES), required=True, help="Pruning method.")
@click.option("--arch", type=click.Choice(ARCH_NAMES), required=True, help="Built-in architecture.")
@click.option("--data", "data_dir", type=click.Path(), required=True,
              help="Directory with the IDX files (train-images-idx3-ubyte.gz, t10k-..., as for MNIST).")
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
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--keep-pip", is_flag=True, help="spike-slab: store the inclusion probabilities (the mask is derived from them).")
@click.option("--prior-inclusion", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
              help="spike-slab: prior inclusion probability lambda (architecture default if omitted).")
def prune(method: str, arch: str, data_dir: str, epochs: int, finetune_epochs: int | None, dense_epochs: int | None,
          dense_path: str | None, alpha: float | None, delta: float | None, batch_size: int, seed: int, device: str,
          output: str, report_path: str | None, force: bool, quiet: bool, keep_pip: bool,
          prior_inclusion: float | None) -> None:
    """Train ARCH densely, prune it with METHOD, store it as a .nnc file and report its real size.

    The report holds the dense and compressed test accuracy, the file's bytes, its ratio to float32
    and the paper-style estimate (4 bytes per non-zero weight)."""
    out = Path(output)
    _check_output(out, force, "output")
    if report_path is not None:
        _check_output(Path(report_path), force, "report")
    if not Path(data_dir).is_dir():
        raise PruneError(f"{data_dir}: not a directory")
    try:
        from nncodec.compress.training import recipes

        progress = not quiet

        def say(msg: str) -> None:
            if not quiet:
                click.echo(msg, err=True)

        data = recipes.load_data(data_dir)
        dense = recipes.train_dense(arch, data, dense_epochs or max(epochs, 1), batch_size=batch_size, seed=seed,
                                    device=device, progress=progress, cache=dense_path)
        dense_acc = recipes.accuracy(dense.cpu(), data.test)
        say(f"dense {arch}: test accuracy {dense_acc:.2f}%")
        finetune = finetune_epochs if finetune_epochs is not None else max(1, epochs // 2)
        if method == "spike-slab":
            from nncodec.compress.spike_slab import recipe

            report = recipe.compress_classifier(
                dense, arch, data, out, epochs=epochs, finetune_epochs=finetune, keep_pip=keep_pip, batch_size=batch_size,
                seed=seed, device=device, progress=progress, dense_accuracy=dense_acc,
                overrides={"prior_inclusion": prior_inclusion}, log=say)
            report.pop("model")
        else:
            report = recipes.compress_classifier(
                dense, arch, data, method, out, epochs=epochs, finetune_epochs=finetune,
                batch_size=batch_size, seed=seed, device=device, progress=progress, dense_accuracy=dense_acc,
                overrides={"alpha": alpha, "delta": delta}, log=say)
        report["output"] = os.fspath(out)
        if report_path is not None:
            Path(report_path).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    except NNCodecError as e:
        raise PruneError(_one_line(e)) from None
    except OSError as e:
        raise PruneError(_one_line(e)) from None
    except RuntimeError as e:  # torch failures (out of memory, CUDA errors)
        raise PruneError(_one_line(e)) from None
    except KeyboardInterrupt:
        raise PruneError("interrupted") from None
    click.echo(f"{out}: {report['file_bytes']:,} bytes (x{report['ratio']:.1f} vs float32; paper-style estimate "
               f"{report['paper_estimate_bytes']:,} B = 4 B x {report['nonzero']:,} non-zeros), test accuracy "
               f"{report['compressed_test_accuracy']:.2f}% (dense {report['dense_test_accuracy']:.2f}%)")
