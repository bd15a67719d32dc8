"""Write the seed corpus: small valid .nnc files that reach every codec, plus spec/vectors.

    python fuzz/make_corpus.py            # writes fuzz/corpus/load/*.nnc
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np

import nncodec
from nncodec.compress import quantize_uniform
from nncodec.dtypes import DTYPES

HERE = Path(__file__).resolve().parent


def seed_files() -> dict[str, bytes]:
    rng = np.random.default_rng(7)
    w = (rng.standard_normal((12, 20)) * 0.1).astype(np.float32)
    w[:, :5] = 0  # pruned input columns
    mask = w != 0
    seeds = {
        "f32": nncodec.save({"w": w, "b": np.zeros(12, np.float32)}),
        "f32_size": nncodec.save({"w": w}, prefer="size"),
        "f32_speed": nncodec.save({"w": w}, prefer="speed"),
        "f64_f16": nncodec.save({"a": w.astype(np.float64), "h": w.astype(np.float16)}),
        "ints": nncodec.save({"i64": np.arange(50, dtype=np.int64), "u8": rng.integers(0, 4, 30).astype(np.uint8),
                              "i8": rng.integers(-3, 3, 30).astype(np.int8), "b": rng.random(40) > 0.7}),
        "special": nncodec.save({"nan": np.array([np.nan, -0.0, np.inf, -np.inf, 1.0], np.float32),
                                 "empty": np.zeros((0, 3), np.float32), "scalar": np.float32(2.5)}),
        "quant": nncodec.save({"w": quantize_uniform(w, DTYPES["float32"], 0.02, mask=mask),
                               "c": quantize_uniform(w, DTYPES["float32"], np.full(20, 0.03, np.float32), axis=1)}),
        "meta_alias": nncodec.save({"w": w}, {"arch": "mlp", "note": "seed"}),
    }
    import torch

    t = torch.from_numpy(w)
    seeds["bf16_tied"] = nncodec.save({"w": t.to(torch.bfloat16), "a": t, "tied": t})
    seeds["aligned"] = nncodec.save({"w": w, "b": np.ones(3, np.float32)}, align=64)
    # indexed headers (§4.5): 128+ tensors, with an alias, a quantized entry, padding
    many = {f"t{i}": w[i % 12, : 1 + i % 5] for i in range(126)}
    seeds["indexed"] = nncodec.save({**many, "q": quantize_uniform(w, DTYPES["float32"], 0.02, mask=mask),
                                     "tied": t, "tied2": t})
    seeds["indexed_aligned"] = nncodec.save({f"t{i}": w[i % 12, :3] for i in range(130)}, align=16)
    return seeds


def json_header(data: bytes, encoding: int | None = None) -> bytes:
    """The same file with its header stored as JSON text (or as `encoding`: 2 = indexed, not
    compressed), so that header mutations stay readable (the valid-CRC mode recomputes the CRCs
    around them; a mutated zstd frame rarely decodes)."""
    from nncodec.container.format import HEADER_JSON
    from nncodec.container.reader import Container
    from nncodec.container.writer import _layout

    with Container(data) as c:
        header = c.header if c.index is None else c.index.header_object()
        body = {k: v for k, v in header.items() if k not in ("sections", "align")}
        kinds = {s.index: s.kind for s in c.sections if s.kind != "data"}
        return _layout(body, [c.read_section(s.index) for s in c.sections], kinds, c.align,
                       HEADER_JSON if encoding is None else encoding)


def main() -> None:
    out = HERE / "corpus" / "load"
    out.mkdir(parents=True, exist_ok=True)
    for name, data in seed_files().items():
        (out / f"{name}.nnc").write_bytes(data)
        (out / f"json-{name}.nnc").write_bytes(json_header(data))
        if name.startswith("indexed"):
            (out / f"plain-{name}.nnc").write_bytes(json_header(data, 2))
    vectors = HERE.parent / "spec" / "vectors"
    for f in sorted(vectors.glob("*.nnc")) if vectors.is_dir() else []:
        shutil.copy(f, out / f"vector-{f.name}")
    datasets = HERE / "corpus" / "dataset"
    datasets.mkdir(parents=True, exist_ok=True)
    for f in sorted((vectors / "dataset").glob("*")) if (vectors / "dataset").is_dir() else []:
        if f.suffix == ".nnc":  # the coded datasets, also with JSON headers (side inputs: fuzz_dataset.py)
            shutil.copy(f, datasets / f.name)
            (datasets / f"json-{f.name}").write_bytes(json_header(f.read_bytes()))
    codec_dir = HERE / "corpus" / "codecs"
    codec_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(8):
        blob = rng.integers(0, 256, 64 + 32 * i, dtype=np.uint8).tobytes()
        (codec_dir / hashlib.sha1(blob).hexdigest()[:12]).write_bytes(blob)
    print(f"wrote {len(list(out.iterdir()))} load seeds, {len(list(datasets.iterdir()))} dataset seeds and "
          f"{len(list(codec_dir.iterdir()))} codec seeds")


if __name__ == "__main__":
    main()
