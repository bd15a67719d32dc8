"""Compress your own checkpoint losslessly, and check that every bit comes back.

    python examples/compress_checkpoint.py                 # a small model made here
    python examples/compress_checkpoint.py my_model.pt     # your .pt / .safetensors / .npz

Lossless means bit-exact: the decoded tensors are identical to the originals (NaN payloads and -0.0
included), so nothing about the model changes; the file is simply smaller than float32.
"""

from __future__ import annotations

import sys

import torch

import nncodec
from nncodec.io import read_checkpoint


def main(argv: list[str]) -> None:
    if argv:  # your checkpoint: read exactly as `nncodec encode` reads it (torch.load(weights_only=True))
        tensors, metadata, notes = read_checkpoint(argv[0])
        for note in notes:
            print("note:", note)
        out = argv[0].rsplit(".", 1)[0] + ".nnc"
    else:  # or a state dict you already have in memory
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(256, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
        tensors, metadata = model.state_dict(), {"arch": "mlp-256-128-10"}
        out = "model.nnc"

    size = nncodec.save_file(tensors, out, metadata=metadata)  # lossless unless you pass a compressor
    raw = sum(t.numel() * t.element_size() for t in tensors.values())
    print(f"{out}: {size:,} bytes ({size / raw:.1%} of {raw:,} bytes uncompressed)")

    decoded = nncodec.load_file(out)
    for name, t in tensors.items():
        original = torch.as_tensor(t)
        assert decoded[name].dtype == original.dtype and decoded[name].shape == original.shape
        assert torch.equal(decoded[name].view(-1).view(torch.uint8), original.reshape(-1).view(torch.uint8)), name
    print(f"all {len(tensors)} tensors decode bit-exactly")


if __name__ == "__main__":
    main(sys.argv[1:])
