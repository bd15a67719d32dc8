"""Compress a model as far as your own accuracy budget allows, judged by your own evaluation function.

    python examples/compress_to_budget.py

`nncodec.compress_to_budget(state_dict, evaluate, max_drop)` tries per-layer quantization steps,
decodes every candidate file and calls `evaluate(decoded_state_dict) -> score` (higher is better);
it returns the bytes of the smallest file whose score is at most `max_drop` below the original's.

Give it VALIDATION data, never your test set: the search makes hundreds of choices with it. Score
the test set once, at the end, on the file you keep. Here a small classifier learns a synthetic
task (replace `make_data` and the model with your own).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import nncodec


def make_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 32, generator=g)
    y = (x[:, :4].sum(1) > 0).long() + 2 * (x[:, 4:8].sum(1) > 0).long()  # 4 classes
    return x, y


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return 100.0 * float((model(x).argmax(1) == y).float().mean())


def main() -> None:
    torch.manual_seed(0)
    x_train, y_train = make_data(4000, seed=1)
    x_val, y_val = make_data(1000, seed=2)  # chooses the compression
    x_test, y_test = make_data(1000, seed=3)  # scored once, at the end

    # a stand-in for your trained model (plain full-batch gradient descent keeps this script quick)
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))
    for _ in range(300):
        model.zero_grad()
        F.cross_entropy(model(x_train), y_train).backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.5 * p.grad
    model.eval()
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    scratch = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))

    def evaluate(decoded: dict) -> float:  # your metric, on validation data
        scratch.load_state_dict(decoded)
        return accuracy(scratch.eval(), x_val, y_val)

    data = nncodec.compress_to_budget(state, evaluate, max_drop=1.0, max_evals=30, progress=False)
    with open("budget.nnc", "wb") as f:
        f.write(data)

    model.load_state_dict(nncodec.load(data))  # the file as any reader decodes it
    raw = sum(v.numel() * v.element_size() for v in state.values())
    print(f"budget.nnc: {len(data):,} bytes, {raw / len(data):.1f}x smaller than float32")
    print(f"validation accuracy {evaluate(nncodec.load(data)):.1f} % (uncompressed {evaluate(state):.1f} %)")
    print(f"test accuracy, once: {accuracy(model, x_test, y_test):.1f} %")


if __name__ == "__main__":
    main()
