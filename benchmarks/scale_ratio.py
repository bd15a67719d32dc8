"""Issue 13, size: nncodec's default lossless file against ZipNN 0.5.4 on every test checkpoint, and where
the bytes go (sizes do not depend on the machine's load, so this part can run at any time).

    python benchmarks/scale_ratio.py [CKPT ...]
    python benchmarks/bench_scale.py --parts ratio

Per checkpoint (the seven of scale_throughput.DEFAULT_CHECKPOINTS), with the encoders and settings of
scale_throughput.methods (one thread; the bytes do not depend on the thread count):
- ZipNN whole: `zipnn.ZipNN(bytearray_dtype=D).compress` of every tensor's bytes back to back;
- nncodec balanced (the default), speed and size: `nncodec.save(tensors, prefer=P)`, the whole file;
- the accounting of the default file (`nncodec info`): preamble, header, per-stream-method bytes, so that
  the margin to ZipNN can be traced to its parts.
Every output is decoded once and compared bit for bit with the input. Target (issue 13): the default
file's ratio <= ZipNN's on every checkpoint.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from scale_throughput import DEFAULT_CHECKPOINTS, methods  # noqa: E402

PREFERS = ["balanced", "speed", "size"]


def _accounting(data: bytes) -> dict[str, int]:
    """Bytes of the default file by part: preamble, header, and the planes streams by method."""
    import nncodec

    with nncodec.open(data) as f:
        info = f.info()
    parts = {"preamble": info["preamble_bytes"], "header": info["header_bytes"], "padding": info["padding_bytes"]}
    for t in info["tensors"]:
        for c in t.get("components", []):
            streams = (c.get("params") or {}).get("streams")
            if c["codec"] == "planes" and streams:
                for method, length in streams:
                    parts[f"planes/{method}"] = parts.get(f"planes/{method}", 0) + length
            else:
                key = f"{c['kind']}/{c['codec']}"
                parts[key] = parts.get(key, 0) + c["bytes"]
    return parts


def run(args: Any) -> dict:
    a = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    import torch
    from safetensors.torch import load_file

    torch.set_num_threads(1)
    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                              "load_before": os.getloadavg(), "checkpoints": {}}
    for path in a.get("checkpoints") or DEFAULT_CHECKPOINTS:
        tensors = load_file(str(path))
        raw = sum(t.nbytes for t in tensors.values())
        plan = methods(tensors, PREFERS, [1])
        rows = {}
        for name in ("zipnn whole t1", *(f"nncodec {p} t1" for p in PREFERS)):
            enc, dec, size, same = plan[name]
            coded = enc()
            rows[name.removesuffix(" t1")] = {"bytes": size(coded), "ratio": size(coded) / raw, "exact": bool(same(dec(coded)))}
            if name == "nncodec balanced t1":
                accounting = _accounting(coded)
        z, nn = rows["zipnn whole"]["bytes"], rows["nncodec balanced"]["bytes"]
        report["checkpoints"][Path(path).name] = {"raw_bytes": raw, "tensors": len(tensors), "methods": rows,
                                                  "default_minus_zipnn": nn - z, "met": nn <= z, "accounting": accounting}
        print(f"{Path(path).name}: balanced {nn:,} vs ZipNN {z:,} ({nn - z:+,})", file=sys.stderr, flush=True)
    report["load_after"] = os.getloadavg()
    return report


def table(report: dict) -> str:
    lines = ["| checkpoint | raw B | ZipNN whole B | nncodec default (balanced) B | ratio | ZipNN ratio | vs ZipNN | target | "
             "speed B | size B | exact |", "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|:---:|"]
    for name, ck in report["checkpoints"].items():
        m = ck["methods"]
        exact = all(r["exact"] for r in m.values())
        lines.append(f"| {name} | {ck['raw_bytes']:,} | {m['zipnn whole']['bytes']:,} | {m['nncodec balanced']['bytes']:,} | "
                     f"{m['nncodec balanced']['ratio']:.5f} | {m['zipnn whole']['ratio']:.5f} | {ck['default_minus_zipnn']:+,} B | "
                     f"{'met' if ck['met'] else 'MISSED'} | {m['nncodec speed']['bytes']:,} | {m['nncodec size']['bytes']:,} | "
                     f"{'yes' if exact else 'NO'} |")
    met = sum(ck["met"] for ck in report["checkpoints"].values())
    lines += ["", f"Default ratio <= ZipNN's: met on {met} of {len(report['checkpoints'])} checkpoints.", "",
              "Where the default file's bytes go (`nncodec info`; planes streams by coding method; other = tensors "
              "coded whole by copy or zstd, and chunked tensors, §23, whose chunks info does not split by stream):", "",
              "| checkpoint | " + " | ".join(["preamble", "header", "planes/copy", "planes/zstd", "planes/pairs", "planes/ans",
                                               "other"]) + " |", "|---|" + "---:|" * 7]
    for name, ck in report["checkpoints"].items():
        acc = dict(ck["accounting"])
        cols = [acc.pop(k, 0) for k in ("preamble", "header", "planes/copy", "planes/zstd", "planes/pairs", "planes/ans")]
        lines.append(f"| {name} | " + " | ".join(f"{c:,}" for c in cols) + f" | {sum(acc.values()):,} |")
    load = " ".join(f"{x:.2f}" for x in report["load_before"])
    lines.append(f"\n{report['date']}; sizes only (independent of the load average, {load}); one thread; every "
                 "output decoded and compared bit for bit.")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="*", type=Path, default=DEFAULT_CHECKPOINTS, help=".safetensors files")
    return ap


if __name__ == "__main__":  # (bench_scale.py --parts ratio saves the JSON result)
    print(table(run(parser().parse_args())))
