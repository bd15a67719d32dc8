"""Size, encode and decode throughput of whole checkpoints: nncodec (each prefer, 1 and 2 threads) beside
ZipNN 0.5.4 (1 and 2 threads) and safetensors, interleaved, medians over repeats (issue 13).

    python benchmarks/scale_throughput.py /work/artifacts/scale/rapidocr_fp32.safetensors ... [--repeats 5]
    python benchmarks/scale_throughput.py CKPT --prefers balanced --threads 1,2 --json out.json

`run(args) -> dict` is what benchmarks/bench_scale.py calls (args: a Namespace or a dict with the
options below). Every method runs once per round, in the same order, for `repeats` rounds (interleaved:
slow drifts of the machine's load hit every method alike); the figure is the median of a method's rounds.
MB/s = 10**6 bytes of raw tensor data (the sum of the tensors' nbytes) per second of wall time.
- nncodec: `nncodec.save(tensors, prefer=P, threads=T)` -> bytes, `nncodec.load(bytes, threads=T)` -> torch
  tensors; size = the whole .nnc file.
- ZipNN (whole): `zipnn.ZipNN(bytearray_dtype=D, threads=T)` on one buffer holding every tensor's bytes
  back to back (how ZipNN compresses a file); size = its output. D = the checkpoint's dominant dtype.
- ZipNN (per tensor): the same object on each tensor's bytes (the random access a .nnc file has).
- safetensors: `safetensors.torch.save` / `load` in memory (no compression: the I/O format's own cost).
Every method's decoded output is compared bit for bit with the input once.
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
from typing import Any

import torch

PREFERS = ("balanced", "speed", "size")
# planes_jit mode -> method-name suffix: "native" = the C loops (the default install where the C extension is built),
# "off" = numpy only (no C compiler at install, or NNCODEC_JIT=0), "numba"/"on" = the `jit` extra's loops
JIT_SUFFIX = {"native": "", "off": " numpy", "on": " jit", "numba": " jit"}
SCALE = Path("/work/artifacts/scale")  # benchmarks/make_scale_checkpoints.py writes the test checkpoints here
DEFAULT_CHECKPOINTS = [SCALE / f"{n}.safetensors" for n in ("rapidocr_fp32", "rapidocr_bf16", "resemblyzer_fp32",
                                                            "resemblyzer_bf16", "lenet300_fp32", "lenet300_bf16",
                                                            "rapidocr_x4_fp32")]  # (x4: one 64 MB tensor, chunked)
MB = 1e6


def _bytes_of(t: torch.Tensor) -> bytes:
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def _zipnn_dtype(tensors: dict[str, torch.Tensor]) -> str:
    by: dict[str, int] = {}
    for t in tensors.values():
        by[str(t.dtype).removeprefix("torch.")] = by.get(str(t.dtype).removeprefix("torch."), 0) + t.nbytes
    name = max(by, key=by.get)
    return name if name in ("float32", "bfloat16", "float16") else "float32"


def methods(tensors: dict[str, torch.Tensor], prefers: list[str], threads: list[int], jit: list[str] = ("off",)) -> dict[str, tuple]:
    """name -> (encode(), decode(encoded), size(encoded), same(decoded)): closures over the checkpoint."""
    import safetensors.torch
    import zipnn

    import nncodec

    whole = b"".join(_bytes_of(t) for t in tensors.values())
    per = {k: _bytes_of(t) for k, t in tensors.items()}
    out: dict[str, tuple] = {
        "safetensors": (lambda: safetensors.torch.save(tensors), safetensors.torch.load, len,
                        lambda d: all(torch.equal(d[k].view(torch.uint8), t.view(torch.uint8)) for k, t in tensors.items())),
    }
    dtype = _zipnn_dtype(tensors)
    for t in threads:
        z = zipnn.ZipNN(bytearray_dtype=dtype, threads=t)
        out[f"zipnn whole t{t}"] = (lambda z=z: z.compress(bytearray(whole)), lambda c, z=z: z.decompress(c), len,
                                    lambda d: bytes(d) == whole)
        out[f"zipnn per-tensor t{t}"] = (lambda z=z: {k: z.compress(bytearray(b)) for k, b in per.items()},
                                         lambda c, z=z: {k: z.decompress(b) for k, b in c.items()},
                                         lambda c: sum(len(b) for b in c.values()),
                                         lambda d: all(bytes(d[k]) == b for k, b in per.items()))
    from nncodec.codecs import planes_jit

    for p in prefers:
        for j in jit:
            for t in threads:
                def enc(p=p, t=t, j=j):
                    planes_jit.set_mode(j)
                    return nncodec.save(tensors, prefer=p, threads=t)

                def dec(c, t=t, j=j):
                    planes_jit.set_mode(j)
                    return nncodec.load(c, threads=t)

                out[f"nncodec {p}{JIT_SUFFIX[j]} t{t}"] = (enc, dec, len, lambda d: all(_bytes_of(d[k]) == b for k, b in per.items()))
    return out


def measure(tensors: dict[str, torch.Tensor], prefers: list[str], threads: list[int], repeats: int,
            log: Callable[[str], None], jit: list[str] = ("off",)) -> dict[str, dict]:
    """Interleaved rounds; per method: bytes, ratio, median encode and decode MB/s, bit-exact."""
    raw = sum(t.nbytes for t in tensors.values())
    plan = methods(tensors, prefers, threads, jit)
    enc_t: dict[str, list[float]] = {m: [] for m in plan}
    dec_t: dict[str, list[float]] = {m: [] for m in plan}
    enc_c: dict[str, list[float]] = {m: [] for m in plan}
    dec_c: dict[str, list[float]] = {m: [] for m in plan}
    result: dict[str, dict] = {}
    for r in range(repeats):
        for name, (enc, dec, size, same) in plan.items():
            c0, t0 = time.process_time(), time.perf_counter()
            coded = enc()
            c1, t1 = time.process_time(), time.perf_counter()
            decoded = dec(coded)
            c2, t2 = time.process_time(), time.perf_counter()
            enc_t[name].append(t1 - t0)
            dec_t[name].append(t2 - t1)
            enc_c[name].append(c1 - c0)
            dec_c[name].append(c2 - c1)
            if r == 0:
                result[name] = {"bytes": size(coded), "ratio": size(coded) / raw, "exact": bool(same(decoded))}
        log(f"  round {r + 1}/{repeats} done (load {os.getloadavg()[0]:.2f})")
    for name, row in result.items():
        row["encode_mbs"] = raw / statistics.median(enc_t[name]) / MB
        row["decode_mbs"] = raw / statistics.median(dec_t[name]) / MB
        # CPU seconds of this process (all its threads): a figure that a busy machine distorts less
        row["encode_cpu_mbs"] = raw / max(statistics.median(enc_c[name]), 1e-9) / MB
        row["decode_cpu_mbs"] = raw / max(statistics.median(dec_c[name]), 1e-9) / MB
    return result


def _targets(rows: dict[str, dict], threads: list[int]) -> list[dict]:
    """Issue 13: default (balanced) ratio <= ZipNN's on the whole file; encode >= 0.5x and decode >= 1.0x ZipNN (whole),
    per thread count; the per-tensor ZipNN figures beside them."""
    out = []
    for t, j in [(t, j) for j in ("native", "off", "numba") for t in threads]:
        nn, zw, zp = rows.get(f"nncodec balanced{JIT_SUFFIX[j]} t{t}"), rows.get(f"zipnn whole t{t}"), rows.get(f"zipnn per-tensor t{t}")
        if not (nn and zw):
            continue
        out.append({"threads": t, "jit": j, "ratio": nn["ratio"], "zipnn_ratio": zw["ratio"], "ratio_met": nn["ratio"] <= zw["ratio"],
                    "zipnn_per_tensor_ratio": zp["ratio"] if zp else None,
                    "encode_x": nn["encode_mbs"] / zw["encode_mbs"], "decode_x": nn["decode_mbs"] / zw["decode_mbs"],
                    "encode_x_per_tensor": nn["encode_mbs"] / zp["encode_mbs"] if zp else None,
                    "decode_x_per_tensor": nn["decode_mbs"] / zp["decode_mbs"] if zp else None})
        out[-1]["encode_met"] = out[-1]["encode_x"] >= 0.5
        out[-1]["decode_met"] = out[-1]["decode_x"] >= 1.0
    return out


def run(args: Any) -> dict:
    """args: Namespace or dict with checkpoints (paths), prefers, threads (ints), repeats; returns the results."""
    a = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    from safetensors.torch import load_file

    torch.set_num_threads(1)
    prefers, threads = list(a.get("prefers", PREFERS)), [int(t) for t in a.get("threads", (1, 2))]
    log = a.get("log") or (lambda s: print(s, file=sys.stderr, flush=True))
    import nncodec.checksum
    from nncodec.codecs import planes_jit

    jit = [j for j in a.get("jit", ("native", "off", "numba")) if j == "off" or (j == "native" and planes_jit.NATIVE is not None)
           or (j in ("on", "numba") and planes_jit.available())]
    numba = any(j in ("on", "numba") for j in jit)
    if numba:  # loaded before the rounds (its one-off cost is reported apart, measured in a fresh process)
        planes_jit.set_mode("numba")
        planes_jit.kernels(1 << 20)
    report: dict[str, Any] = {"jit": jit, "jit_first_load_s": jit_load_seconds() if numba else None,
                              "crc32": nncodec.checksum.crc32.__module__, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                              "load_before": os.getloadavg(), "repeats": a.get("repeats", 5), "checkpoints": {}}
    for path in a["checkpoints"]:
        tensors = load_file(str(path))
        raw = sum(t.nbytes for t in tensors.values())
        log(f"{path}: {len(tensors)} tensors, {raw:,} B")
        rows = measure(tensors, prefers, threads, int(a.get("repeats", 5)), log, jit)
        report["checkpoints"][Path(path).name] = {"raw_bytes": raw, "tensors": len(tensors), "methods": rows,
                                                  "targets": _targets(rows, threads)}
    report["load_after"] = os.getloadavg()
    return report


def jit_load_seconds() -> float:
    """Wall seconds a fresh process (nncodec imported) takes to load the compiled loops (numba import +
    cached loops): what `auto` mode pays once, after 2**28 words of numpy work, and NNCODEC_JIT=1 on first use."""
    import subprocess

    code = ("import time, nncodec; from nncodec.codecs import planes_jit; planes_jit.set_mode('numba'); "
            "t = time.perf_counter(); assert planes_jit.kernels(1 << 20); print(time.perf_counter() - t)")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)  # compiles into the cache if needed
    return float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)


def table(report: dict) -> str:
    lines = []
    if report.get("jit_first_load_s") is not None:
        default = ("the C loops (the default where the C extension was built); rows 'numpy': numpy only"
                   if "native" in report.get("jit", []) else "numpy only (the default before the C extension)")
        lines.append(f"Rows 'jit': the compiled loops of the optional extra `jit` (numba) loaded; nncodec rows without a suffix: "
                     f"{default}. Loading numba took {report['jit_first_load_s']:.2f} s "
                     "in a fresh process (once per process; not in the rows).")
    for name, ck in report["checkpoints"].items():
        lines += [f"\n{name}: {ck['tensors']} tensors, {ck['raw_bytes']:,} B",
                  "| method | bytes | ratio | encode MB/s | decode MB/s | encode MB/cpu-s | decode MB/cpu-s | exact |",
                  "|---|---:|---:|---:|---:|---:|---:|:---:|"]
        for m, r in ck["methods"].items():
            lines.append(f"| {m} | {r['bytes']:,} | {r['ratio']:.4f} | {r['encode_mbs']:,.0f} | {r['decode_mbs']:,.0f} | "
                         f"{r['encode_cpu_mbs']:,.0f} | {r['decode_cpu_mbs']:,.0f} | {'yes' if r['exact'] else 'NO'} |")
        for t in ck["targets"]:
            lines.append(f"- {t['threads']} thread(s){JIT_SUFFIX.get(t.get('jit'), '').replace(' ', ', ')}: ratio {t['ratio']:.5f} vs ZipNN whole {t['zipnn_ratio']:.5f} "
                         f"({'met' if t['ratio_met'] else 'MISSED'}); encode {t['encode_x']:.2f}x ZipNN whole "
                         f"({'met' if t['encode_met'] else 'MISSED'}), decode {t['decode_x']:.2f}x "
                         f"({'met' if t['decode_met'] else 'MISSED'}); vs ZipNN per tensor: encode "
                         f"{t['encode_x_per_tensor']:.2f}x, decode {t['decode_x_per_tensor']:.2f}x")
    load = " ".join(f"{x:.2f}" for x in report["load_before"])
    lines.append(f"\n{report['date']}, {report['repeats']} interleaved rounds, medians; load average before: {load}")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="*", type=Path, default=DEFAULT_CHECKPOINTS, help=".safetensors files")
    ap.add_argument("--prefers", type=lambda s: s.split(","), default=list(PREFERS))
    ap.add_argument("--threads", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--jit", type=lambda s: s.split(","), default=["native", "off", "numba"],
                    help="planes_jit modes for the nncodec rows: native (the C loops), off (numpy), numba (the `jit` extra); "
                         "a mode whose loops are missing is skipped")
    ap.add_argument("--json", type=Path, help="also write the results here (with the table as `_table`)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    report = run(args)
    text = table(report)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**report, "_table": text}, indent=1, default=str) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
