"""Test checkpoints of real weights for issue 13 (scale), written as safetensors in fp32 and bf16.

    python benchmarks/make_scale_checkpoints.py --out /work/artifacts/scale --wheels DIR

Sources (no network except the package registry, fetched beforehand with
`pip download --no-deps rapidocr-onnxruntime==1.4.4 resemblyzer==0.1.4 -d DIR`):
- rapidocr: the float32 weights (initializers and Constant nodes, more than one element) of the three ONNX models that rapidocr-onnxruntime 1.4.4 ships
  (PP-OCRv4 detection and recognition, mobile v2.0 direction classifier), read with the `onnx` package
  (protobuf, nothing executed), prefixed det./rec./cls.;
- resemblyzer: `model_state` of resemblyzer 0.1.4's pretrained.pt (a 3-layer LSTM speaker encoder), read with
  torch.load(weights_only=True);
- lenet300: the converged LeNet-300-100 of /work/artifacts/baselines (seed 0).
- rapidocr_x4: one tensor of shape (n, 1000) holding the rapidocr weights four times over, back to back
  (64 MB in fp32): a tensor large enough to be chunked (§23), with the statistics of real weights.
bf16 files are the fp32 weights rounded to nearest even (torch's conversion).
"""

from __future__ import annotations

import argparse
import io
import os
import zipfile
from pathlib import Path

import numpy as np

# NNCODEC_BASELINES as in benchmarks/protocol.py (a session without the converged baselines trains its own)
BASELINE = Path(os.environ.get("NNCODEC_BASELINES", "/work/artifacts/baselines")) / "lenet300_seed0.safetensors"
RAPIDOCR_MODELS = ("det", "ch_PP-OCRv4_det_infer.onnx"), ("rec", "ch_PP-OCRv4_rec_infer.onnx"), \
    ("cls", "ch_ppocr_mobile_v2.0_cls_infer.onnx")


def _member(wheels: Path, pattern: str, name: str) -> bytes:
    wheel = next(iter(sorted(wheels.glob(pattern))))
    with zipfile.ZipFile(wheel) as z:
        return z.read(name)


def rapidocr(wheels: Path) -> dict[str, np.ndarray]:
    import onnx
    from onnx import numpy_helper

    out: dict[str, np.ndarray] = {}
    for prefix, fname in RAPIDOCR_MODELS:
        model = onnx.load_from_string(_member(wheels, "rapidocr_onnxruntime-*.whl", f"rapidocr_onnxruntime/models/{fname}"))
        # weights are graph initializers or (these exports) tensor attributes of Constant nodes
        tensors = list(model.graph.initializer) + [a.t for n in model.graph.node if n.op_type == "Constant"
                                                   for a in n.attribute if a.name == "value"]
        for t in tensors:
            arr = numpy_helper.to_array(t)
            if arr.dtype == np.float32 and arr.size > 1:
                out[f"{prefix}.{t.name}"] = np.ascontiguousarray(arr)
    return out


def resemblyzer(wheels: Path) -> dict[str, np.ndarray]:
    import torch

    data = _member(wheels, "[Rr]esemblyzer-*.whl", "resemblyzer/pretrained.pt")
    state = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")["model_state"]
    return {k: v.numpy() for k, v in state.items()}


def lenet300() -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(BASELINE)


def write(out: Path, name: str, tensors: dict[str, np.ndarray]) -> list[Path]:
    import torch
    from safetensors.torch import save_file

    paths = []
    for tag, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        path = out / f"{name}_{tag}.safetensors"
        save_file({k: torch.from_numpy(np.array(v)).to(dtype).contiguous() for k, v in tensors.items()}, str(path))
        paths.append(path)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("/work/artifacts/scale"))
    ap.add_argument("--wheels", type=Path, default=Path("/work/artifacts/scale/dl"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    ocr = rapidocr(args.wheels)
    flat = np.tile(np.concatenate([v.reshape(-1) for v in ocr.values()]), 4)
    tiled = {"weights": flat[: flat.size // 1000 * 1000].reshape(-1, 1000)}
    for name, tensors in (("rapidocr", ocr), ("resemblyzer", resemblyzer(args.wheels)),
                          ("lenet300", lenet300()), ("rapidocr_x4", tiled)):
        for p in write(args.out, name, tensors):
            print(f"{p}  {p.stat().st_size:>10,} B  {len(tensors)} tensors")


if __name__ == "__main__":
    main()
