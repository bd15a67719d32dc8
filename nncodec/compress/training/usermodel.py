"""Prune any user model (not only the built-in LeNets): method, quantization search on validation, file.

Shared by `nncodec prune --model ...`; the built-in classifiers keep their presets in recipes.py.
Validation data decide everything (TAMADE's loss, quantization steps); test data, when given, are
scored once for the report.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...api import load_file
from ...errors import BadArgumentError, UnsupportedInputError
from .export import quantized_state_dict, save_pruned, search_steps
from .loop import Batch, LossFn, cache_batches
from .procedure import METHODS

LOSSES: dict[str, LossFn] = {"cross_entropy": F.cross_entropy, "mse": F.mse_loss}


@torch.no_grad()
def scores(model: nn.Module, batches: Sequence[Batch], loss_fn: LossFn, state: Mapping[str, torch.Tensor] | None = None,
           accuracy: bool = False) -> dict[str, float]:
    """Mean loss (and accuracy in % when `accuracy`) over `batches`, optionally with `state` loaded
    into the model (its own weights are restored afterwards)."""
    saved = None
    if state is not None:
        saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict({k: v.to(saved[k].device) for k, v in state.items()})
    was = model.training
    model.eval()
    try:
        total, correct, count = 0.0, 0, 0
        for x, y in batches:
            out = model(x)
            total += float(loss_fn(out, y)) * len(x)
            if accuracy:
                correct += int((out.argmax(1) == y).sum())
            count += len(x)
    finally:
        model.train(was)
        if saved is not None:
            model.load_state_dict(saved)
    result = {"loss": total / max(count, 1)}
    if accuracy:
        result["accuracy"] = 100.0 * correct / max(count, 1)
    return result


Save = Callable[..., int]  # save(model, path, *, steps=, targets=, metadata=) -> bytes, as save_pruned


def compress_model(model: nn.Module, train: Iterable, val: Iterable, loss: str, method: str,
                   output: str | os.PathLike, *, test: Iterable | None = None, quant_tolerance: float = 0.01,
                   device: str = "cpu", options: Mapping[str, Any] | None = None,
                   log: Callable[[str], None] | None = None, run: Callable[..., Any] | None = None,
                   save: Save = save_pruned) -> dict[str, Any]:
    """Prune `model` in place with `method` on `train`, quantize every parameter tensor as coarsely as
    keeps the validation loss within (1 + quant_tolerance) of the pruned model's, write `output`,
    check that it decodes to the quantized model, and report sizes and scores.

    `run` and `save` are the method and the writer of another compressor family with the same shapes
    (`spike_slab`, `save_spike_slab`; the caller passes them, this package does not import them);
    by default `method` names one of this package's METHODS and the file is `save_pruned`'s."""
    if loss not in LOSSES:
        raise BadArgumentError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
    if run is None and method not in METHODS:
        raise BadArgumentError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    say = log or (lambda _m: None)
    loss_fn, classify = LOSSES[loss], loss == "cross_entropy"
    val_batches = cache_batches(val, None, torch.device("cpu"))
    test_batches = cache_batches(test, None, torch.device("cpu")) if test is not None else None
    model = model.cpu()
    dense = scores(model, val_batches, loss_fn, accuracy=classify)
    dense_test = scores(model, test_batches, loss_fn, accuracy=classify) if test_batches else None
    say(f"dense model: validation loss {dense['loss']:.4f}")
    start = time.perf_counter()
    (run or METHODS[method])(model, train, loss_fn, device=device, **dict(options or {}))
    model = model.cpu().eval()
    seconds = time.perf_counter() - start
    pruned = scores(model, val_batches, loss_fn, accuracy=classify)
    say(f"{method}: validation loss {pruned['loss']:.4f}; searching quantization steps")
    names = [n for n, _ in model.named_parameters()]
    targets = (options or {}).get("targets")
    steps = search_steps(model, lambda s: scores(model, val_batches, loss_fn, s)["loss"],
                         pruned["loss"] + quant_tolerance * abs(pruned["loss"]), names=names, targets=targets)
    nbytes = save(model, output, steps=steps, targets=targets, metadata={"method": method, "nncodec.training": "pruned"})
    decoded, expected = load_file(output), quantized_state_dict(model, steps, targets)
    if any(not torch.equal(decoded[k], expected[k]) for k in expected):  # pragma: no cover
        raise UnsupportedInputError(f"{output}: decoded weights differ from the quantized model")
    params = sum(p.numel() for p in model.parameters())
    nonzero = sum(int(torch.count_nonzero(decoded[n])) for n in names)
    report: dict[str, Any] = {
        "method": method, "loss": loss, "file_bytes": nbytes, "float32_bytes": 4 * params, "ratio": 4 * params / nbytes,
        "parameters": params, "nonzero": nonzero, "dense_val": dense, "pruned_val": pruned,
        "compressed_val": scores(model, val_batches, loss_fn, decoded, accuracy=classify),
        "train_seconds": round(seconds, 1), "steps": steps,
    }
    if test_batches:
        report["dense_test"] = dense_test
        report["compressed_test"] = scores(model, test_batches, loss_fn, decoded, accuracy=classify)
    return report
