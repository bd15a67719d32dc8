"""Training-aware pruning of your own model with your own data loader, then a .nnc file.

    python examples/prune_your_model.py

`nncodec.compress.training` methods (pmmp, drr, rl1, tamade_prune, layerwise) take a model, any
iterable of (inputs, targets) batches -- a torch DataLoader is fine -- and a mean loss function.
They train with a sparsity-inducing penalty, prune (RGP -> TAMADE -> RGP) and fine-tune with the
mask frozen. `search_steps` then picks quantization steps on validation data, and `save_pruned`
writes the mask plus quantized survivors. Replace the synthetic data and model with your own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

import nncodec
from nncodec.compress.training import drr, save_pruned, search_steps


def make_data(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 64, generator=g)
    y = (x[:, :6].sum(1) > 0).long()  # only 6 of 64 inputs matter: much of the first layer can go
    return TensorDataset(x, y)


def accuracy(model: torch.nn.Module, data: TensorDataset, state: dict | None = None) -> float:
    if state is not None:
        model = type(model)(*model.children())  # a scratch copy holding `state`
        model.load_state_dict(state)
    x, y = data.tensors
    with torch.no_grad():
        return 100.0 * float((model.eval()(x).argmax(1) == y).float().mean())


def main() -> None:
    torch.manual_seed(0)
    train, val, test = make_data(2000, 1), make_data(1000, 2), make_data(1000, 3)
    loader = DataLoader(train, batch_size=100, shuffle=True)  # your own loader

    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2))
    pruned = drr(model, loader, F.cross_entropy, epochs=4, finetune_epochs=1, lr=5e-3, alpha=1e-3, seed=0)
    kept = sum(int((p != 0).sum()) for p in pruned.parameters())
    total = sum(p.numel() for p in pruned.parameters())
    val_acc = accuracy(pruned, val)

    # the coarsest quantization that keeps validation accuracy within 0.5 points of the pruned model
    steps = search_steps(pruned, lambda state: -accuracy(pruned, val, state), -(val_acc - 0.5))
    size = save_pruned(pruned, "pruned.nnc", steps=steps, metadata={"method": "drr"})

    decoded = nncodec.load_file("pruned.nnc")
    print(f"pruned.nnc: {size:,} bytes ({4 * total / size:.0f}x smaller than float32), "
          f"{kept:,} of {total:,} weights kept")
    print(f"validation accuracy {accuracy(pruned, val, decoded):.1f} %, test accuracy (once) "
          f"{accuracy(pruned, test, decoded):.1f} %")


if __name__ == "__main__":
    main()
