"""Load a .nnc file in inference code.

    python examples/load_for_inference.py              # writes a small model.nnc first
    python examples/load_for_inference.py model.nnc    # or uses yours (it must fit `build_model`)

A .nnc file decodes to an ordinary state dict, so inference code only changes the line that loads
the weights: `nncodec.load_into(model, path)` instead of `model.load_state_dict(torch.load(path))`.
Lossy files decode to the quantized values, in the tensors' original dtype.
"""

from __future__ import annotations

import sys

import torch

import nncodec
from nncodec.compress.config import make_compressor


def build_model() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))


def main(argv: list[str]) -> None:
    path = argv[0] if argv else "model.nnc"
    if not argv:  # stand-in for a file someone gave you: a lossy int8 one
        torch.manual_seed(0)
        nncodec.save_file(build_model().state_dict(), path, compressor=make_compressor("int8"))

    model = build_model()
    nncodec.load_into(model, path)  # strict, like load_state_dict; device follows the model's
    model.eval()
    with torch.inference_mode():
        logits = model(torch.randn(4, 20))
    print("predictions:", logits.argmax(1).tolist())

    with nncodec.open(path) as f:  # lazy: decode one tensor without the rest
        print("tensors:", f.keys())
        print("first layer:", tuple(f.get_tensor("0.weight").shape))
        error = f.error_summary()  # None for a lossless file
        if error:
            print("stored error of the weights:", f"{error['weights']['rel_l2']:.2%} relative L2")


if __name__ == "__main__":
    main(sys.argv[1:])
