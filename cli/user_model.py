"""User models and data for `nncodec prune --model` and `nncodec budget --model`.

--model pkg.module:factory   a Python function (imported from the current directory or sys.path,
                             called without arguments) that returns the torch.nn.Module;
--checkpoint FILE            its weights (.pt/.pth/.bin/.ckpt read with weights_only=True,
                             .safetensors, .npz, or .nnc), loaded with strict=True;
--data SPEC, one of
  DIR with IDX files         train-images-idx3-ubyte(.gz) & co., as MNIST ships them: inputs float32
                             [N, 784] normalised as the built-in models expect (reshape in your
                             model if it wants images), int64 labels; the last 5,000 training
                             images are validation, t10k-* is the test split;
  FILE.npz                   arrays x, y (training) and optionally x_val, y_val and x_test, y_test;
                             without x_val the last 10 % of x are validation; no pickled arrays;
  DIR of class folders       torchvision ImageFolder layout (needs torchvision): DIR/train and
                             DIR/val (and DIR/test) if present, else a fixed 10 % of DIR is validation;
  pkg.module:loaders         a function returning (train, val) or (train, val, test) iterables of
                             (inputs, targets) batches, or a dict with those keys.
Importing --model / --data entry points runs that Python code: it is the user's own code, chosen on
the command line, never anything read from a checkpoint or a .nnc file.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nncodec.errors import BadArgumentError, UnsupportedInputError


def is_entry_point(spec: str) -> bool:
    return ":" in spec and not Path(spec).exists()


def import_entry(spec: str, what: str) -> Any:
    """The object named by 'pkg.module:attr' (the current directory is importable, as with python -m)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise BadArgumentError(f"{what} must look like pkg.module:function, not {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise BadArgumentError(f"{what} {spec}: cannot import {module_name} ({e})") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise BadArgumentError(f"{what} {spec}: {module_name} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise BadArgumentError(f"{what} {spec}: {attr} is not callable")
    return obj


def load_model(spec: str, checkpoint: str | os.PathLike | None) -> nn.Module:
    model = import_entry(spec, "--model")()
    if not isinstance(model, nn.Module):
        raise BadArgumentError(f"--model {spec} returned a {type(model).__name__}, not a torch.nn.Module")
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.is_file():
            raise BadArgumentError(f"{path}: no such checkpoint file")
        state = read_state(path)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise UnsupportedInputError(f"{path}: does not fit the model of {spec} "
                                        f"({' '.join(str(e).split())[:300]})") from None
    return model


def read_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".nnc":
        from nncodec.api import load_file

        return load_file(path)
    from nncodec.io import read_checkpoint

    tensors, _, _ = read_checkpoint(path)
    return {k: torch.as_tensor(v) for k, v in tensors.items()}


@dataclass
class Data:
    train: Iterable
    val: Iterable
    test: Iterable | None = None


def batches_of(x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool, seed: int = 0) -> Iterable:
    """Mini-batches of in-memory tensors (recipes' loader: reshuffled every epoch from a seeded
    generator; evaluation order does not matter, so `shuffle` only documents the intent)."""
    from nncodec.compress.training.recipes import InMemoryLoader, Split

    if len(x) != len(y):
        raise UnsupportedInputError(f"{len(x)} inputs but {len(y)} targets")
    if len(x) == 0:
        raise UnsupportedInputError("no samples")
    return InMemoryLoader(Split(x, y), batch_size, seed)


def _tensor(a: np.ndarray, name: str) -> torch.Tensor:
    if a.dtype.kind == "f":
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    if a.dtype.kind in "iub":
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))
    raise UnsupportedInputError(f"array {name} has dtype {a.dtype}; expected numbers")


def _npz(path: Path, batch_size: int, seed: int) -> Data:
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (ValueError, OSError) as e:
        raise UnsupportedInputError(f"{path}: not a readable .npz of arrays ({e})") from None
    for key in ("x", "y"):
        if key not in arrays:
            raise UnsupportedInputError(f"{path}: needs arrays 'x' and 'y' (has {', '.join(sorted(arrays)) or 'none'})")
    x, y = _tensor(arrays["x"], "x"), _tensor(arrays["y"], "y")
    if "x_val" in arrays and "y_val" in arrays:
        xv, yv = _tensor(arrays["x_val"], "x_val"), _tensor(arrays["y_val"], "y_val")
    else:
        n_val = max(1, len(x) // 10)
        if len(x) - n_val < 1:
            raise UnsupportedInputError(f"{path}: too few samples to hold out validation data")
        x, xv, y, yv = x[:-n_val], x[-n_val:], y[:-n_val], y[-n_val:]
    test = None
    if "x_test" in arrays and "y_test" in arrays:
        test = batches_of(_tensor(arrays["x_test"], "x_test"), _tensor(arrays["y_test"], "y_test"), 1024, False)
    return Data(batches_of(x, y, batch_size, True, seed), batches_of(xv, yv, 1024, False), test)


def _idx(path: Path, batch_size: int, seed: int) -> Data:
    from .presets.classifier_runs import load_data

    d = load_data(path)
    return Data(batches_of(d.train.x, d.train.y, batch_size, True, seed), batches_of(d.val.x, d.val.y, 1024, False),
                batches_of(d.test.x, d.test.y, 1024, False))


def _folder(path: Path, batch_size: int, seed: int) -> Data:
    try:
        from torchvision import datasets, transforms
    except ImportError:
        raise BadArgumentError(f"{path}: image folders need torchvision (pip install torchvision)") from None
    from torch.utils.data import DataLoader, Subset

    tf = transforms.ToTensor()
    g = torch.Generator().manual_seed(seed)
    if (path / "train").is_dir() and (path / "val").is_dir():
        train, val = datasets.ImageFolder(path / "train", tf), datasets.ImageFolder(path / "val", tf)
    else:
        full = datasets.ImageFolder(path, tf)
        order = torch.randperm(len(full), generator=torch.Generator().manual_seed(0)).tolist()
        n_val = max(1, len(full) // 10)
        train, val = Subset(full, order[n_val:]), Subset(full, order[:n_val])
    test = datasets.ImageFolder(path / "test", tf) if (path / "test").is_dir() else None
    return Data(DataLoader(train, batch_size=batch_size, shuffle=True, generator=g), DataLoader(val, batch_size=256),
                DataLoader(test, batch_size=256) if test is not None else None)


def _from_entry(spec: str) -> Data:
    result = import_entry(spec, "--data")()
    if isinstance(result, dict):
        if "train" not in result or "val" not in result:
            raise BadArgumentError(f"--data {spec} must return 'train' and 'val' loaders")
        return Data(result["train"], result["val"], result.get("test"))
    if isinstance(result, (tuple, list)) and len(result) in (2, 3):
        return Data(*result)
    raise BadArgumentError(f"--data {spec} must return (train, val), (train, val, test) or a dict of loaders")


def load_data(spec: str, batch_size: int = 256, seed: int = 0) -> Data:
    """Training, validation (and test) batches from one of the documented --data forms."""
    if is_entry_point(spec):
        return _from_entry(spec)
    path = Path(spec)
    if path.is_file() and path.suffix == ".npz":
        return _npz(path, batch_size, seed)
    if path.is_dir():
        names = [p.name for p in path.iterdir()]
        if any("idx3-ubyte" in n for n in names):
            return _idx(path, batch_size, seed)
        return _folder(path, batch_size, seed)
    if not path.exists():
        raise BadArgumentError(f"{spec}: no such file or directory (nor a pkg.module:loaders entry point)")
    raise UnsupportedInputError(f"{spec}: --data must be an IDX directory, a .npz file, an image folder or "
                                "pkg.module:loaders")


def user_budget(model_spec: str, checkpoint: Path | None, data: str, loss: str, max_drop: float, output: Path, *,
                per_channel: bool, lambdas: tuple[float, ...], prefer: str, max_evals: int, force: bool) -> None:
    """`nncodec budget --model`: the budget search on a user model, selecting on its validation split
    (never on test); the test split, when there is one, is scored once for the chosen file. The score
    is accuracy in % for cross_entropy, minus the mean loss for mse."""
    import sys
    import time

    import click

    from nncodec.budget import search_budget
    from nncodec.compress.training.usermodel import LOSSES, scores
    from nncodec.container.writer import atomic_write

    from .common import human_bytes

    if checkpoint is None:
        raise BadArgumentError("--model needs --checkpoint with its trained weights")
    model = load_model(model_spec, checkpoint)
    loaders = load_data(data)
    val_batches = [(x, y) for x, y in loaders.val]
    classify = loss == "cross_entropy"

    def score_on(batches: list, state: dict) -> float:
        s = scores(model, batches, LOSSES[loss], {k: torch.as_tensor(v) for k, v in state.items()}, accuracy=classify)
        return s["accuracy"] if classify else -s["loss"]

    def evaluate(state: dict) -> float:
        return score_on(val_batches, state)

    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    t0 = time.perf_counter()
    result = search_budget(state, evaluate, max_drop, per_channel=per_channel, lambdas=lambdas, prefer=prefer,
                           max_evals=max_evals, metadata={"model": model_spec}, progress=sys.stderr.isatty())
    atomic_write(output, result.data, overwrite=force)
    raw = sum(v.numel() * v.element_size() for v in state.values())
    what, unit = ("accuracy", "%") if classify else ("minus loss", "")
    click.echo(f"wrote {output}: {human_bytes(len(result.data))} ({raw / len(result.data):.1f}x smaller than float32), "
               f"validation {what} {result.score:.4g}{unit} (uncompressed {result.baseline:.4g}{unit}, drop "
               f"{result.baseline - result.score:.4g} <= {max_drop}), {result.evaluations} evaluations in "
               f"{time.perf_counter() - t0:.0f} s")
    if loaders.test is not None:  # scored once, for the chosen file only
        from nncodec import load as nncodec_load

        test_batches = [(x, y) for x, y in loaders.test]
        base, chosen = score_on(test_batches, state), score_on(test_batches, nncodec_load(result.data))
        click.echo(f"  test (scored once): {what} {chosen:.4g}{unit} (uncompressed {base:.4g}{unit}), "
                   f"drop {base - chosen:.4g}")
