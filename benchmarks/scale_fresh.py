"""Issue 13, the first encode and decode in a fresh process: nncodec against ZipNN and safetensors.

    python benchmarks/scale_fresh.py [CKPT.safetensors...] [--rounds 9] [--json OUT]
    python benchmarks/bench_scale.py --parts fresh

Why beside `scale_throughput.py`: that benchmark times many calls in one process, so every call after
the first finds the code paths imported, the allocator's heap grown and the caches warm. A checkpoint is
usually loaded once per process, and the first call is what a user waits for: a lazy import on the decode
path (numpy.ma behind `np.unique`, 10 ms) hid in the warm loop for sessions.

Each measurement is one child process (`python -c`, one thread): it imports the library, does one tiny
call to warm the imports (a 4-element tensor; ZipNN: 4 kB), then times ONE encode or decode of the real
checkpoint (wall, perf_counter) and counts its minor page faults. The peers alternate within each round;
the figures are medians over the rounds. Outputs: nncodec `save` -> bytes and `load` -> torch tensors;
ZipNN 0.5.4 whole-file `compress` / `decompress` -> bytes (the benchmark's target anchor); safetensors
`save` / `load` in memory (no compression: what the I/O format costs).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import load_average  # noqa: E402

CHILD = r"""
import resource, sys, time
which, op, path, coded = sys.argv[1:5]
raw = open(path, "rb").read()
if which == "nncodec":
    import torch, nncodec
    from safetensors.torch import load as st_load
    nncodec.load(nncodec.save({"w": torch.zeros(4)}, threads=1), threads=1)
    if op == "encode":
        tensors = st_load(raw)
        run = lambda: nncodec.save(tensors, threads=1)
    else:
        blob = open(coded, "rb").read()
        run = lambda: nncodec.load(blob, threads=1)
elif which == "zipnn":
    import zipnn
    z = zipnn.ZipNN(input_format="byte", bytearray_dtype=sys.argv[5], threads=1)
    z.decompress(z.compress(b"\0" * 4096))
    if op == "encode":
        run = lambda: z.compress(raw)
    else:
        blob = open(coded, "rb").read()
        run = lambda: z.decompress(blob)
else:
    import torch
    from safetensors.torch import load as st_load, save as st_save
    st_load(st_save({"w": torch.zeros(4)}))
    if op == "encode":
        tensors = st_load(raw)
        run = lambda: st_save(tensors)
    else:
        run = lambda: st_load(raw)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
t = time.perf_counter()
out = run()
dt = time.perf_counter() - t
print(dt, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults)
"""

PEERS = ("nncodec", "zipnn", "safetensors")


def measure(path: Path, rounds: int, work: Path) -> dict:
    """Median wall seconds and page faults of each peer's first encode and decode of `path`."""
    import zipnn
    from safetensors.torch import load_file
    from scale_throughput import _zipnn_dtype  # the same ZipNN dtype as the warm-loop benchmark

    import nncodec

    tensors = load_file(str(path))
    dtype = _zipnn_dtype(tensors)
    coded = {"nncodec": work / "fresh.nnc", "zipnn": work / "fresh.znn", "safetensors": path}
    coded["nncodec"].write_bytes(nncodec.save(tensors, threads=1))
    coded["zipnn"].write_bytes(zipnn.ZipNN(input_format="byte", bytearray_dtype=dtype, threads=1)
                               .compress(path.read_bytes()))
    runs: dict[str, list[tuple[float, int]]] = {f"{p} {op}": [] for p in PEERS for op in ("encode", "decode")}
    for _ in range(rounds):
        for op in ("encode", "decode"):
            for peer in PEERS:
                out = subprocess.run([sys.executable, "-c", CHILD, peer, op, str(path), str(coded[peer]), dtype],
                                     capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
                seconds, faults = out.stdout.split()
                runs[f"{peer} {op}"].append((float(seconds), int(faults)))
    raw = sum(t.numel() * t.element_size() for t in tensors.values())
    rows = {k: {"seconds": statistics.median(s for s, _ in v), "faults": statistics.median(f for _, f in v),
                "all_seconds": [s for s, _ in v]} for k, v in runs.items()}
    for row in rows.values():
        row["mb_s"] = raw / row["seconds"] / 1e6
    return {"raw_bytes": raw, "bytes": {p: coded[p].stat().st_size for p in PEERS}, "rows": rows}


def table(report: dict) -> str:
    lines = []
    for name, r in report["checkpoints"].items():
        rows = r["rows"]
        lines += [f"\n{name}: {r['raw_bytes']:,} B of tensors",
                  "| first call in a fresh process | ms (median) | MB/s | page faults | nncodec / peer throughput |",
                  "|---|---:|---:|---:|---:|"]
        for op in ("encode", "decode"):
            ours = rows[f"nncodec {op}"]["seconds"]
            for peer in PEERS:
                row = rows[f"{peer} {op}"]
                ratio = "" if peer == "nncodec" else f"{row['seconds'] / ours:.2f}x"
                lines.append(f"| {peer} {op} | {row['seconds'] * 1e3:.2f} | {row['mb_s']:,.0f} | {row['faults']:,.0f} | {ratio} |")
    lines.append(f"\n{report['date']}, {report['rounds']} rounds (one child process per call, peers alternating), "
                 f"medians; load average before {report['load_before']}, after {report['load_after']}")
    return "\n".join(lines)


SCALE = Path("/work/artifacts/scale")
DEFAULT = [SCALE / f"{n}.safetensors" for n in ("rapidocr_fp32", "resemblyzer_fp32", "lenet300_fp32", "rapidocr_x4_fp32")]


def run(args: argparse.Namespace) -> dict:
    report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rounds": args.rounds,
              "load_before": load_average(), "checkpoints": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for path in args.checkpoints or DEFAULT:
            report["checkpoints"][Path(path).name] = measure(Path(path), args.rounds, Path(tmp))
    report["load_after"] = load_average()
    return report


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="*", type=Path, help=f"default: {', '.join(str(c) for c in DEFAULT)}")
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--json", type=Path, default=None, help="also write the results here (with the table as `_table`)")
    return p


def main(argv: list[str] | None = None) -> None:
    a = parser().parse_args(argv)
    report = run(a)
    text = table(report)
    print(text)
    if a.json:
        a.json.write_text(json.dumps({**report, "_table": text}, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
