"""The calibration statistics of a torch model: the input mean and covariance of each of its Linear
and Conv2d layers (calibrate.LayerStats), measured with forward hooks on data the caller gives.

They feed OPTQ and bias correction in the calibrated lossy path (`compress_to_budget(statistics=...)`);
any nn.Module works, nothing here knows about a particular architecture or dataset.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import BadArgumentError
from .calibrate import LayerStats


@torch.no_grad()
def layer_statistics(model: nn.Module, inputs: np.ndarray | torch.Tensor, *, max_samples: int = 4096,
                     batch_size: int = 256) -> dict[str, Any]:
    """Input mean and covariance of every Linear and Conv2d layer of the float model, keyed by the
    name of its weight (e.g. "fc1.weight"), measured on up to `max_samples` calibration samples.
    Conv inputs are the unfolded patches (fan-in = C·kh·kw, the weight's flattened order).

    `inputs` is what the model is fed in inference, used as is (a float tensor or array, e.g. the
    normalised images of the CLI's Fashion-MNIST preset); it is never normalised here, so
    already-normalised data is not normalised twice. Anything else (uint8 images, ints) is refused with BadArgumentError."""
    if isinstance(inputs, torch.Tensor):
        if not inputs.is_floating_point():
            raise BadArgumentError(f"layer_statistics takes the model's float input, got {inputs.dtype} "
                                   "(normalise raw images as the model expects first)")
        x_all = inputs[:max_samples]
    else:
        arr = np.asarray(inputs)
        if arr.dtype.kind != "f":
            raise BadArgumentError(f"layer_statistics takes the model's float input, got {arr.dtype} "
                                   "(normalise raw images as the model expects first)")
        x_all = torch.from_numpy(np.ascontiguousarray(arr[:max_samples], dtype=np.float32))
    sums: dict[str, list] = {}
    hooks = []

    def hook_for(name: str, module: nn.Module):
        def hook(mod: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            x = inputs[0]
            if isinstance(mod, nn.Conv2d):
                x = F.unfold(x, mod.kernel_size, mod.dilation, mod.padding, mod.stride)  # [N, C*k*k, L]
                x = x.transpose(1, 2).reshape(-1, x.shape[1])
            x = x.reshape(-1, x.shape[-1]).to(torch.float32)
            acc = sums.setdefault(name, [0, torch.zeros(x.shape[1], dtype=torch.float64),
                                         torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64)])
            acc[0] += x.shape[0]
            acc[1] += x.sum(0, dtype=torch.float64)
            acc[2] += (x.T @ x).to(torch.float64)  # float32 per batch, float64 across batches
        return hook

    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            hooks.append(module.register_forward_hook(hook_for(f"{name}.weight" if name else "weight", module)))
    try:
        model.eval()
        for i in range(0, len(x_all), batch_size):
            model(x_all[i : i + batch_size])
    finally:
        for h in hooks:
            h.remove()
    out = {}
    for name, (n, s1, s2) in sums.items():
        mean = (s1 / n).numpy()
        out[name] = LayerStats(mean, (s2 / n).numpy() - np.outer(mean, mean), int(n))
    return out
