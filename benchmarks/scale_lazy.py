"""Issue 13, lazy reads: nncodec.open against safetensors.safe_open, interleaved in one run.

    python benchmarks/scale_lazy.py [--src /work/artifacts/scale/rapidocr_fp32.safetensors]
                                    [--work /work/artifacts/scale/lazy] [--repeats 41] [--threads 0]

Checkpoints, built once from real weights (the rapidocr fp32 tensors of make_scale_checkpoints.py)
and kept in --work:
- `many`: the 470 tensors three times over (prefixes m0. m1. m2., each copy's values times
  1 + 1e-3 noise): 1,410 tensors, the shape of a transformer checkpoint of many small tensors;
- `big`: one 30,522 x 384 float32 tensor (46.9 MB, the shape of a BERT word embedding) tiled from
  every rapidocr value with the same noise.
Both are written as safetensors and as nncodec's default lossless file.

Measured (medians over --repeats, the peers alternating within each repeat; page cache warm):
- small: open + get_tensor of one 1-D tensor + close (framework "pt", and "np");
- big: get_tensor of the 46.9 MB tensor (open and close included); its raw read time from the page
  cache is reading its bytes from the safetensors file into a numpy array (f.readinto);
- rows: get_slice(name)[1000:1100] of the big tensor.
With `--jit native,off,numba` (the default; a mode whose loops are not there is skipped) every nncodec
read is timed once per planes_jit mode in each repeat (nncodec/codecs/planes_jit.py): the C loops (what a
default install runs), numpy only, and numba (the optional extra `jit`, loaded before the repeats). The
first mode's figures have the main keys, the others are under "modes" (older results: "jit" = numba).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import load_average  # noqa: E402

BIG_SHAPE = (30522, 384)
SMALL_NAME = "m1.rec.linear_85.b_0"  # a 6,625-element bias in the middle of the file


def build(src: Path, work: Path, threads: int | None, rebuild: bool = False) -> dict[str, Path]:
    """The checkpoints (kept in `work`; rebuilt when missing; `rebuild`: the .nnc files are written
    again from the kept safetensors files, by the nncodec under test)."""
    from safetensors.numpy import load_file, save_file

    import nncodec

    work.mkdir(parents=True, exist_ok=True)
    paths = {k: work / f"{k}.{ext}" for k in ("many", "big") for ext in ("nnc",)}
    paths.update({f"{k}_st": work / f"{k}.safetensors" for k in ("many", "big")})
    if rebuild and all(paths[f"{k}_st"].exists() for k in ("many", "big")):
        from safetensors.numpy import load_file as load_st

        for key in ("many", "big"):
            nncodec.save_file(load_st(str(paths[f"{key}_st"])), paths[key], threads=threads, overwrite=True)
    if all(p.exists() for p in paths.values()):
        return paths
    base = load_file(str(src))
    rng = np.random.default_rng(13)
    many = {}
    for copy in range(3):
        for name, arr in base.items():
            noise = 1 + 1e-3 * rng.standard_normal(arr.shape).astype(np.float32)
            many[f"m{copy}.{name}"] = (arr * noise).astype(np.float32)
    pool = np.concatenate([a.reshape(-1) for a in base.values()])
    n = BIG_SHAPE[0] * BIG_SHAPE[1]
    big = np.resize(pool, n) * (1 + 1e-3 * rng.standard_normal(n).astype(np.float32))
    big = {"embeddings.word_embeddings.weight": big.astype(np.float32).reshape(BIG_SHAPE)}
    for key, tensors in (("many", many), ("big", big)):
        save_file(tensors, str(paths[f"{key}_st"]))
        nncodec.save_file(tensors, paths[key], threads=threads)
    return paths


def _median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1e3, 3)


def run(args: argparse.Namespace) -> dict:
    import torch
    from safetensors import safe_open

    import nncodec
    import nncodec.checksum

    torch.set_num_threads(1)
    threads = args.threads or None
    paths = build(Path(args.src), Path(args.work), threads, getattr(args, "rebuild", False))
    big_name = "embeddings.word_embeddings.weight"
    with safe_open(str(paths["big_st"]), framework="np") as f:
        big_header = 8 + int.from_bytes(open(paths["big_st"], "rb").read(8), "little")  # noqa: SIM115
        big_bytes = int(np.prod(f.get_slice(big_name).get_shape())) * 4

    def nn_small() -> object:
        with nncodec.open(paths["many"], threads=threads) as f:
            return f.get_tensor(SMALL_NAME)

    def st_small() -> object:
        with safe_open(str(paths["many_st"]), framework="pt") as f:
            return f.get_tensor(SMALL_NAME)

    def nn_small_np() -> object:
        with nncodec.open(paths["many"], framework="np", threads=threads) as f:
            return f.get_tensor(SMALL_NAME)

    def st_small_np() -> object:
        with safe_open(str(paths["many_st"]), framework="np") as f:
            return f.get_tensor(SMALL_NAME)

    def nn_big() -> object:
        with nncodec.open(paths["big"], threads=threads) as f:
            return f.get_tensor(big_name)

    def st_big() -> object:
        with safe_open(str(paths["big_st"]), framework="pt") as f:
            return f.get_tensor(big_name)

    def raw_big() -> object:
        out = np.empty(big_bytes, dtype=np.uint8)
        with open(paths["big_st"], "rb", buffering=0) as f:
            f.seek(big_header)
            f.readinto(memoryview(out))
        return out

    def nn_big_1() -> object:  # one decode thread: what the second core adds
        with nncodec.open(paths["big"], threads=1) as f:
            return f.get_tensor(big_name)

    def nn_rows() -> object:
        with nncodec.open(paths["big"], threads=threads) as f:
            return f.get_slice(big_name)[1000:1100]

    def st_rows() -> object:
        with safe_open(str(paths["big_st"]), framework="pt") as f:
            return f.get_slice(big_name)[1000:1100]

    from nncodec.codecs import planes_jit

    mode_before = planes_jit.mode()
    jit = [m for m in getattr(args, "jit", None) or MODES if _usable(m, planes_jit)]
    if any(m in ("on", "numba") for m in jit):  # loaded before anything is timed (its one-off cost is not a read's)
        planes_jit.set_mode("numba")
        assert planes_jit.kernels(1 << 20) is not None

    def in_mode(fn: Callable[[], object], mode: str) -> Callable[[], object]:
        def timed() -> object:
            planes_jit.set_mode(mode)
            return fn()
        return timed

    # the values agree before anything is timed
    for mode in jit:
        planes_jit.set_mode(mode)
        assert torch.equal(nn_small(), st_small()) and torch.equal(nn_big(), st_big())
        assert torch.equal(nn_rows(), st_rows())
        assert np.array_equal(nn_small_np(), st_small_np())
    first = jit[0]
    groups = {"small": (in_mode(nn_small, first), st_small), "small_np": (in_mode(nn_small_np, first), st_small_np),
              "big": (in_mode(nn_big, first), st_big, raw_big, in_mode(nn_big_1, first)),
              "rows": (in_mode(nn_rows, first), st_rows)}
    for mode in jit[1:]:
        groups[f"mode:{mode}"] = tuple(in_mode(fn, mode) for fn in (nn_small, nn_small_np, nn_big, nn_big_1, nn_rows))
    samples: dict[str, list[list[float]]] = {k: [[] for _ in fns] for k, fns in groups.items()}
    for fn in [f for fns in groups.values() for f in fns]:
        fn()  # warm the page cache and imports
    load_before = load_average()
    for _ in range(args.repeats):
        for key, fns in groups.items():
            for i, fn in enumerate(fns):
                t = time.perf_counter()
                fn()
                samples[key][i].append(time.perf_counter() - t)
    small = [_median_ms(s) for s in samples["small"]]
    small_np = [_median_ms(s) for s in samples["small_np"]]
    big = [_median_ms(s) for s in samples["big"]]
    rows = [_median_ms(s) for s in samples["rows"]]
    others = {m: [_median_ms(s) for s in samples[f"mode:{m}"]] for m in jit[1:]}
    planes_jit.set_mode(mode_before)
    with nncodec.open(paths["big"]) as f:
        table = f._tf.chunk_table(f._tf.resolve(big_name))
        codecs_used = sorted(set(table.codecs)) if table else [f.info()["tensors"][0]["components"][0]["codec"]]
    with nncodec.open(paths["many"]) as f:
        tensors, encoding = len(f.keys()), f.info()["header_encoding"]
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average_before": load_before, "load_average_after": load_average(),
        "repeats": args.repeats, "threads": threads or os.cpu_count(),
        "many": {"tensors": tensors, "header_encoding": encoding, "nnc_bytes": paths["many"].stat().st_size,
                 "safetensors_bytes": paths["many_st"].stat().st_size},
        "big": {"shape": list(BIG_SHAPE), "bytes": big_bytes, "nnc_bytes": paths["big"].stat().st_size,
                "chunk_codecs": codecs_used},
        "small_ms": {"nncodec": small[0], "safetensors": small[1], "ratio": round(small[0] / small[1], 2),
                     "target_ratio": 2.0},
        "small_np_ms": {"nncodec": small_np[0], "safetensors": small_np[1], "ratio": round(small_np[0] / small_np[1], 2),
                        "target_ratio": 2.0},
        "crc32": nncodec.checksum.crc32.__module__,
        "big_ms": {"nncodec": big[0], "safetensors": big[1], "raw_read": big[2], "nncodec_1_thread": big[3],
                   "ratio_to_raw": round(big[0] / big[2], 2), "ratio_to_safetensors": round(big[0] / big[1], 2),
                   "target_ratio_to_raw": 2.0},
        "rows_ms": {"nncodec": rows[0], "safetensors": rows[1], "ratio": round(rows[0] / rows[1], 2)},
        "jit_modes": jit, "first_mode": first,
        "modes": {m: {"small_ms": on[0], "small_ratio": round(on[0] / small[1], 2), "small_np_ms": on[1],
                      "small_np_ratio": round(on[1] / small_np[1], 2), "big_ms": on[2], "big_ratio_to_raw": round(on[2] / big[2], 2),
                      "big_1_thread_ms": on[3], "rows_ms": on[4]} for m, on in others.items()},
    }


# planes_jit modes timed (nncodec/codecs/planes_jit.py): the C loops (the default where the C extension was
# built), numpy only (what an install without a C compiler gets), numba (the optional extra `jit`)
MODES = ["native", "off", "numba"]
MODE_LABELS = {"native": "the C loops (default install)", "off": "numpy only (NNCODEC_JIT=0, or no C compiler at install)",
               "numba": "numba loops (`jit` extra, NNCODEC_JIT=numba)", "on": "numba loops (`jit` extra)"}


def _usable(mode: str, planes_jit: object) -> bool:
    if mode == "native":
        return getattr(planes_jit, "NATIVE", None) is not None
    return mode == "off" or planes_jit.available()


def _met(ratio: float, target: float) -> str:
    return "met" if ratio <= target else "MISSED"


def table(r: dict) -> str:
    """The markdown rows of RESULTS.md."""
    m, b, s, g, w = r["many"], r["big"], r["small_ms"], r["big_ms"], r["rows_ms"]
    n = r["small_np_ms"]
    return "\n".join([
        f"Checkpoints from the rapidocr fp32 weights: `many` = {m['tensors']:,} tensors "
        f"({m['safetensors_bytes']:,} B as safetensors, {m['nnc_bytes']:,} B as .nnc, header {m['header_encoding']}); "
        f"`big` = one {b['shape'][0]:,} x {b['shape'][1]} float32 tensor ({b['bytes']:,} B; .nnc {b['nnc_bytes']:,} B, "
        f"chunks coded {', '.join(b['chunk_codecs'])}). nncodec decodes on {r['threads']} threads; framework pt."
        + (f" Main rows: {MODE_LABELS.get(r['first_mode'], r['first_mode'])}." if "first_mode" in r else ""),
        "",
        "| read | nncodec ms | safetensors ms | ratio | target |",
        "|---|---:|---:|---:|---|",
        f"| open + get one small tensor + close (`many`) | {s['nncodec']:.3f} | {s['safetensors']:.3f} | "
        f"{s['ratio']:.2f} | <= 2x safetensors: {_met(s['ratio'], s['target_ratio'])} |",
        f"| the same, framework np | {n['nncodec']:.3f} | {n['safetensors']:.3f} | "
        f"{n['ratio']:.2f} | <= 2x safetensors: {_met(n['ratio'], n['target_ratio'])} |",
        f"| open + get the 46.9 MB tensor + close (`big`) | {g['nncodec']:.1f} | {g['safetensors']:.3f} | "
        f"{g['ratio_to_safetensors']:.0f} | <= 2x raw read ({g['raw_read']:.1f} ms; ratio {g['ratio_to_raw']:.2f}): "
        f"{_met(g['ratio_to_raw'], g['target_ratio_to_raw'])} |",
        *([f"| the same, 1 decode thread | {g['nncodec_1_thread']:.1f} | | {g['nncodec_1_thread'] / g['raw_read']:.2f}x raw | – |"]
          if "nncodec_1_thread" in g else []),
        f"| open + get_slice(big)[1000:1100] + close | {w['nncodec']:.2f} | {w['safetensors']:.3f} | {w['ratio']:.1f} | – |",
        *(_jit_rows(r) if "jit" in r else []),
        *[row for mode, j in r.get("modes", {}).items() for row in _mode_rows(r, mode, j)],
        "",
        f"{r['date']}, {r['repeats']} interleaved repeats, medians; load average before {r['load_average_before']}, "
        f"after {r['load_average_after']}. safetensors (pt) maps the file and returns tensors backed by the "
        "mapping (no copy, no checksum); the raw read copies the tensor's bytes from the page cache into memory."
        + (f" CRC-32 from `{r['crc32']}`." if "crc32" in r else ""),
    ])


def _mode_rows(r: dict, mode: str, j: dict) -> list[str]:
    """The same reads in another planes_jit mode, timed in the same repeats."""
    s, n, g, label = r["small_ms"], r["small_np_ms"], r["big_ms"], MODE_LABELS.get(mode, mode)
    return [
        f"| {label}: open + get one small tensor + close | {j['small_ms']:.3f} | {s['safetensors']:.3f} | "
        f"{j['small_ratio']:.2f} | <= 2x safetensors: {_met(j['small_ratio'], 2.0)} |",
        f"| {label}, framework np | {j['small_np_ms']:.3f} | {n['safetensors']:.3f} | {j['small_np_ratio']:.2f} | "
        f"<= 2x safetensors: {_met(j['small_np_ratio'], 2.0)} |",
        f"| {label}: open + get the 46.9 MB tensor + close | {j['big_ms']:.1f} | {g['safetensors']:.3f} | "
        f"{j['big_ms'] / g['safetensors']:.0f} | <= 2x raw read ({g['raw_read']:.1f} ms; ratio {j['big_ratio_to_raw']:.2f}): "
        f"{_met(j['big_ratio_to_raw'], 2.0)} |",
        f"| {label}, 1 decode thread | {j['big_1_thread_ms']:.1f} | | {j['big_1_thread_ms'] / g['raw_read']:.2f}x raw | – |",
        f"| {label}: open + get_slice(big)[1000:1100] + close | {j['rows_ms']:.2f} | | | – |",
    ]


def _jit_rows(r: dict) -> list[str]:
    """The same reads with the compiled planes loops (optional extra `jit`), timed in the same repeats."""
    j, s, n, g = r["jit"], r["small_ms"], r["small_np_ms"], r["big_ms"]
    return [
        f"| with the compiled loops (`jit` extra): open + get one small tensor + close | {j['small_ms']:.3f} | "
        f"{s['safetensors']:.3f} | {j['small_ratio']:.2f} | <= 2x safetensors: {_met(j['small_ratio'], 2.0)} |",
        f"| with the loops, framework np | {j['small_np_ms']:.3f} | {n['safetensors']:.3f} | {j['small_np_ratio']:.2f} | "
        f"<= 2x safetensors: {_met(j['small_np_ratio'], 2.0)} |",
        f"| with the loops: open + get the 46.9 MB tensor + close | {j['big_ms']:.1f} | {g['safetensors']:.3f} | "
        f"{j['big_ms'] / g['safetensors']:.0f} | <= 2x raw read ({g['raw_read']:.1f} ms; ratio {j['big_ratio_to_raw']:.2f}): "
        f"{_met(j['big_ratio_to_raw'], 2.0)} |",
        f"| with the loops, 1 decode thread | {j['big_1_thread_ms']:.1f} | | {j['big_1_thread_ms'] / g['raw_read']:.2f}x raw | – |",
        f"| with the loops: open + get_slice(big)[1000:1100] + close | {j['rows_ms']:.2f} | | | – |",
    ]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src", default="/work/artifacts/scale/rapidocr_fp32.safetensors")
    p.add_argument("--work", default="/work/artifacts/scale/lazy")
    p.add_argument("--repeats", type=int, default=41)
    p.add_argument("--threads", type=int, default=0, help="nncodec decode threads (0: every core)")
    p.add_argument("--rebuild", action="store_true", help="write the .nnc files again with this nncodec (inputs kept)")
    p.add_argument("--jit", type=lambda v: v.split(","), default=list(MODES),
                   help="planes_jit modes of the nncodec reads, the first in the main rows: native (the C loops), "
                        "off (numpy), numba (the `jit` extra); a mode whose loops are missing is skipped")
    return p


def main(argv: list[str] | None = None) -> None:
    report = run(parser().parse_args(argv))
    print(json.dumps(report, indent=1))
    print(table(report))


if __name__ == "__main__":
    main()
