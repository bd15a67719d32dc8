"""Lossless coding of real trained weights: nncodec beside zstd, byte-plane zstd and ZipNN, in one run.

    python benchmarks/bench_lossless.py --data ../shared/data/fashion-mnist          # trains LeNet-300-100
    python benchmarks/bench_lossless.py --data DIR --arch lenet300,lenet5 --save-checkpoint /tmp/fm.safetensors
    python benchmarks/bench_lossless.py --checkpoint /tmp/fm.safetensors --scale 8 --baselines fast  # throughput

Every floating-point tensor of the state dict is benchmarked as float32 and as bfloat16 (round to
nearest from the float32 values). Per-tensor methods code each tensor on its own, as nncodec does.
Bytes are totals over all tensors; for nncodec save() they are the whole .nnc file (preamble, header,
section table). MB/s = 10**6 bytes of raw tensor data per second, median of at least --repeats runs. Every
method's output is decoded and compared bit for bit with its input.

--scale N tiles every tensor N times, replaces the low 16 mantissa bits of each extra copy with random
bits and shuffles the result with a fixed random permutation: sign, exponent and high mantissa bits
keep the real statistics, but no 4-byte value repeats, so zstd cannot exploit the tiling. It exists
to measure throughput on larger buffers; ratios on the unscaled weights are the ones that count.
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import MB, load_average, load_checkpoint, machine_description, median_seconds  # noqa: E402

import nncodec  # noqa: E402
from nncodec.codecs import raw as raw_codec  # noqa: E402
from nncodec.codecs.base import DecodeContext, EncodeOptions  # noqa: E402
from nncodec.dtypes import DTYPES, DType  # noqa: E402

PREFERS = ("size", "balanced", "speed")
DECODE_TARGET_MBS = 300.0


@dataclass
class Variant:
    """One dtype version of the weights: storage words (for checks and byte-level baselines) and the
    objects handed to nncodec.save (numpy float32, or torch bfloat16 since numpy has none)."""

    dtype: DType
    words: dict[str, np.ndarray]  # flat little-endian storage words per tensor
    api_input: dict[str, Any]

    @property
    def raw_bytes(self) -> int:
        return sum(w.nbytes for w in self.words.values())


@dataclass
class Row:
    method: str
    nbytes: int
    encode_s: float | None
    decode_s: float | None
    exact: bool | None
    note: str = ""


# ----------------------------------------------------------------------------------- inputs


def trained_weights(data: str, archs: list[str], epochs: int, seed: int) -> tuple[dict[str, torch.Tensor], list[str]]:
    from nncodec_cli.presets import fashion_mnist, lenet

    x, y = fashion_mnist.load_fashion_mnist(data, "train")
    xt, yt = fashion_mnist.load_fashion_mnist(data, "test")
    state: dict[str, torch.Tensor] = {}
    notes = []
    for arch in archs:
        t0 = time.perf_counter()
        model = lenet.train(lenet.build(arch), x, y, epochs=epochs, seed=seed)
        acc = lenet.evaluate(model, xt, yt)
        n = sum(p.numel() for p in model.parameters())
        notes.append(f"{arch}: {n:,} parameters, {epochs} epoch(s) seed {seed}, test accuracy {acc:.2f}% "
                     f"(trained in {time.perf_counter() - t0:.0f} s)")
        state.update({f"{arch}.{k}": v.detach().clone() for k, v in model.state_dict().items()})
    return state, notes


def float_tensors(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    out = {}
    for name, value in state.items():
        t = torch.as_tensor(value)
        if t.is_floating_point():
            out[name] = t.detach().to(torch.float32).contiguous()
    if not out:
        raise SystemExit("the checkpoint holds no floating-point tensors")
    return out


def scaled(state: dict[str, torch.Tensor], factor: int, seed: int) -> dict[str, torch.Tensor]:
    """Each tensor tiled `factor` times, the low 16 mantissa bits of every copy after the first replaced by
    random bits, and the whole shuffled by a fixed random permutation (1-D).

    Sign, exponent and top mantissa bits keep the real statistics (the low bits of trained float32
    weights are close to uniform anyway), but no value repeats exactly: plain tiling, even shuffled,
    lets zstd's long matches find the repeated 4-byte values and report ratios no real tensor has.
    """
    if factor == 1:
        return state
    rng = np.random.default_rng(seed)
    out = {}
    for k, v in state.items():
        words = np.tile(v.numpy().reshape(-1).view(np.uint32), factor)
        n = v.numel()
        noise = rng.integers(0, 1 << 16, words.size - n, dtype=np.uint32)
        words[n:] = (words[n:] & np.uint32(0xFFFF0000)) | noise
        out[k] = torch.from_numpy(rng.permutation(words).view(np.float32))
    return out


def variants(state: dict[str, torch.Tensor]) -> dict[str, Variant]:
    f32 = {k: v.numpy() for k, v in state.items()}
    bf16 = {k: v.to(torch.bfloat16) for k, v in state.items()}
    return {
        "float32": Variant(DTYPES["float32"], {k: v.reshape(-1).view(np.uint32) for k, v in f32.items()}, f32),
        "bfloat16": Variant(DTYPES["bfloat16"],
                            {k: v.reshape(-1).view(torch.int16).numpy().view(np.uint16) for k, v in bf16.items()}, bf16),
    }


# ----------------------------------------------------------------------------------- methods
# Each method: encode(variant) -> encoded object; decode(encoded) -> {name: array or bytes};
# size(encoded) -> bytes.


def same_bits(variant: Variant, decoded: dict[str, Any]) -> bool:
    if set(decoded) != set(variant.words):
        return False
    for name, words in variant.words.items():
        got = decoded[name]
        got_bytes = got.tobytes() if isinstance(got, np.ndarray) else bytes(got)
        if got_bytes != words.tobytes():
            return False
    return True


def zstd_method(level: int) -> tuple[Callable, Callable, Callable]:
    cctx = zstandard.ZstdCompressor(level=level)
    dctx = zstandard.ZstdDecompressor()

    def enc(v: Variant) -> dict[str, bytes]:
        return {k: cctx.compress(w.tobytes()) for k, w in v.words.items()}

    def dec(e: dict[str, bytes]) -> dict[str, bytes]:
        return {k: dctx.decompress(b) for k, b in e.items()}

    return enc, dec, lambda e: sum(len(b) for b in e.values())


def byteplane_method(level: int) -> tuple[Callable, Callable, Callable]:
    """Byte k of every value into plane k (a byte transpose), one zstd frame per plane."""
    cctx = zstandard.ZstdCompressor(level=level)
    dctx = zstandard.ZstdDecompressor()

    def enc(v: Variant) -> dict[str, list[bytes]]:
        out = {}
        for k, w in v.words.items():
            planes = w.view(np.uint8).reshape(-1, w.itemsize).T
            out[k] = [cctx.compress(np.ascontiguousarray(p).tobytes()) for p in planes]
        return out

    def dec(e: dict[str, list[bytes]]) -> dict[str, np.ndarray]:
        out = {}
        for k, frames in e.items():
            planes = [np.frombuffer(dctx.decompress(f), dtype=np.uint8) for f in frames]
            out[k] = np.stack(planes, axis=1).reshape(-1)
        return out

    return enc, dec, lambda e: sum(len(f) for frames in e.values() for f in frames)


def zipnn_method(dtype_name: str, threads: int) -> tuple[Callable, Callable, Callable, Callable]:
    import zipnn

    z = zipnn.ZipNN(bytearray_dtype=dtype_name, threads=threads)

    def setup(v: Variant) -> dict[str, bytearray]:
        # compress() overwrites its input: give it fresh copies, made outside the timed region
        return {k: bytearray(w.tobytes()) for k, w in v.words.items()}

    def enc(copies: dict[str, bytearray]) -> dict[str, bytes]:
        return {k: z.compress(b) for k, b in copies.items()}

    def dec(e: dict[str, bytes]) -> dict[str, bytearray]:
        return {k: z.decompress(b) for k, b in e.items()}

    return setup, enc, dec, lambda e: sum(len(b) for b in e.values())


def nncodec_api_method(prefer: str) -> tuple[Callable, Callable, Callable]:
    def enc(v: Variant) -> bytes:
        return nncodec.save(v.api_input, prefer=prefer)

    def dec(data: bytes) -> dict[str, np.ndarray]:
        return nncodec.load(data, framework="np")  # bfloat16 comes back as its uint16 words

    return enc, dec, len


def nncodec_codec_method(prefer: str) -> tuple[Callable, Callable, Callable]:
    options = EncodeOptions(prefer=prefer)
    ctx = DecodeContext()

    def enc(v: Variant) -> dict[str, tuple[Any, DType, int]]:
        return {k: (raw_codec.encode(w, v.dtype, options), v.dtype, w.size) for k, w in v.words.items()}

    def dec(e: dict[str, tuple[Any, DType, int]]) -> dict[str, np.ndarray]:
        return {k: raw_codec.decode(x.codec, x.params, memoryview(x.payload), dt, n, ctx) for k, (x, dt, n) in e.items()}

    return enc, dec, lambda e: sum(len(x.payload) for x, _, _ in e.values())


def stream_summary(encoded: dict[str, tuple[Any, DType, int]]) -> str:
    """Which coder each tensor's streams ended up with, e.g. 'planes[exp ans, 2 copy, 1 zstd] x5'."""
    shapes: Counter[str] = Counter()
    for x, _, _ in encoded.values():
        if x.codec == "planes":
            methods = [m for m, _ in x.params["streams"]]
            rest = Counter(methods[1:])
            shapes[f"planes[exp {methods[0]}; rest {', '.join(f'{n} {m}' for m, n in sorted(rest.items()))}]"] += 1
        else:
            shapes[x.codec] += 1
    return "; ".join(f"{s} x{n}" for s, n in shapes.most_common())


# ----------------------------------------------------------------------------------- running


def measure(name: str, variant: Variant, enc: Callable, dec: Callable, size: Callable, repeats: int,
            setup: Callable | None = None, note: str = "") -> tuple[Row, Any]:
    prep = (lambda: setup(variant)) if setup is not None else (lambda: variant)
    encode_s, encoded = median_seconds(enc, repeats, prep)
    decode_s, decoded = median_seconds(lambda _: dec(encoded), repeats)
    return Row(name, size(encoded), encode_s, decode_s, same_bits(variant, decoded), note), encoded


def run_variant(variant: Variant, repeats: int, slow_baselines: bool, log: Callable[[str], None]) -> tuple[list[Row], list[str]]:
    rows = [Row("raw (no compression)", variant.raw_bytes, None, None, None)]
    notes = []
    dname = variant.dtype.name
    plans: list[tuple[str, tuple]] = [("zstd-3", zstd_method(3))]
    plans += [("zstd-19", zstd_method(19))] if slow_baselines else []
    plans += [("byte planes + zstd-3", byteplane_method(3))]
    plans += [("byte planes + zstd-19", byteplane_method(19))] if slow_baselines else []
    for name, (enc, dec, size) in plans:
        log(f"  {dname}: {name}")
        rows.append(measure(name, variant, enc, dec, size, repeats)[0])
    for threads in (1, 2):
        log(f"  {dname}: ZipNN threads={threads}")
        setup, enc, dec, size = zipnn_method(dname, threads)
        rows.append(measure(f"ZipNN ({threads} thread{'s' if threads > 1 else ''})", variant, enc, dec, size,
                            repeats, setup=setup)[0])
    for prefer in PREFERS:
        log(f"  {dname}: nncodec save/load prefer={prefer}")
        enc, dec, size = nncodec_api_method(prefer)
        rows.append(measure(f"nncodec save/load, prefer={prefer}", variant, enc, dec, size, repeats,
                            note="whole .nnc file")[0])
    for prefer in PREFERS:
        log(f"  {dname}: nncodec raw codec prefer={prefer}")
        enc, dec, size = nncodec_codec_method(prefer)
        row, encoded = measure(f"nncodec raw codec, prefer={prefer}", variant, enc, dec, size, repeats,
                               note="payloads only")
        rows.append(row)
        notes.append(f"prefer={prefer}: {stream_summary(encoded)}")
    return rows, notes


def fmt_rate(seconds: float | None, nbytes: int) -> str:
    return "–" if seconds is None else f"{nbytes / seconds / MB:,.1f}"


def table(rows: list[Row], raw_bytes: int) -> str:
    lines = ["| method | bytes | ratio | saving | encode MB/s | decode MB/s | bit-exact |",
             "|---|---:|---:|---:|---:|---:|:---:|"]
    for r in rows:
        exact = "–" if r.exact is None else ("yes" if r.exact else "**NO**")
        note = f" ({r.note})" if r.note else ""
        lines.append(f"| {r.method}{note} | {r.nbytes:,} | {r.nbytes / raw_bytes:.4f} | {1 - r.nbytes / raw_bytes:.2%} | "
                     f"{fmt_rate(r.encode_s, raw_bytes)} | {fmt_rate(r.decode_s, raw_bytes)} | {exact} |")
    return "\n".join(lines)


def target_lines(rows: list[Row], raw_bytes: int, dtype_name: str) -> list[str]:
    """Issue 2's targets: bytes at most ZipNN's on the same tensors; decode >= 300 MB/s (float32 output only)."""
    by = {r.method: r for r in rows}
    zipnn_bytes = min(by["ZipNN (1 thread)"].nbytes, by["ZipNN (2 threads)"].nbytes)
    out = []
    for prefer in PREFERS:
        r = by[f"nncodec save/load, prefer={prefer}"]
        line = (f"- prefer={prefer}: file {r.nbytes:,} B vs ZipNN {zipnn_bytes:,} B "
                f"({(r.nbytes - zipnn_bytes) / zipnn_bytes:+.3%}): ratio target {'met' if r.nbytes <= zipnn_bytes else 'NOT met'}")
        if dtype_name == "float32":
            rate = raw_bytes / r.decode_s / MB
            line += (f"; decode {rate:,.0f} MB/s: >= {DECODE_TARGET_MBS:.0f} MB/s target "
                     f"{'met' if rate >= DECODE_TARGET_MBS else 'NOT met'}")
        out.append(line)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="directory with Fashion-MNIST IDX .gz files; trains --arch on it")
    src.add_argument("--checkpoint", help=".pt/.pth/.bin/.safetensors state dict (read with weights_only=True)")
    ap.add_argument("--arch", default="lenet300", help="comma-separated built-in architectures to train "
                    "(lenet300, lenet5) [default: lenet300]")
    ap.add_argument("--epochs", type=int, default=2, help="training epochs per architecture [default: 2]")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save-checkpoint", help="write the trained float32 weights here (.safetensors) for reuse")
    ap.add_argument("--scale", type=int, default=1, help="tile+shuffle every tensor N times (throughput runs)")
    ap.add_argument("--baselines", choices=("all", "fast"), default="all", help="'fast' leaves out zstd-19 and "
                    "byte planes + zstd-19 (they encode at ~1 MB/s; for --scale runs) [default: all]")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per measurement; the median is reported")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for training [default: 1; more "
                    "threads are much slower when other processes load the machine]")
    args = ap.parse_args(argv)
    if args.repeats < 1 or args.scale < 1:
        ap.error("--repeats and --scale must be positive")
    torch.set_num_threads(args.threads)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    started = time.perf_counter()
    load_before = load_average()
    if args.data:
        log(f"training {args.arch} on {args.data} ...")
        state, source_notes = trained_weights(args.data, [a.strip() for a in args.arch.split(",") if a.strip()],
                                              args.epochs, args.seed)
        source = f"trained on {args.data}"
    else:
        state = load_checkpoint(args.checkpoint)
        source, source_notes = f"checkpoint {args.checkpoint}", []
    state = float_tensors(state)
    if args.save_checkpoint:
        from safetensors.torch import save_file

        save_file(state, args.save_checkpoint)
        source_notes.append(f"float32 weights saved to {args.save_checkpoint}")
    params = sum(v.numel() for v in state.values())
    state = scaled(state, args.scale, args.seed)

    print("# nncodec lossless benchmark\n")
    print(f"- command: `python {' '.join(shlex.quote(a) for a in [sys.argv[0], *(argv if argv is not None else sys.argv[1:])])}`")
    print(f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"- machine: {machine_description()}; load average before: {load_before} (other processes share "
          "the machine: throughput is the median of the repeats, still noisy)")
    print(f"- versions: nncodec {nncodec.__version__}, torch {torch.__version__}, numpy {np.__version__}, "
          f"zstandard {zstandard.__version__}, zipnn {_zipnn_version()}")
    print(f"- weights: {source}; {len(state)} floating-point tensors, {params:,} parameters")
    for n in source_notes:
        print(f"  - {n}")
    if args.scale > 1:
        print(f"- **scaled x{args.scale}**: every tensor tiled {args.scale} times, low 16 mantissa bits of the extra "
              "copies randomised, randomly permuted (real sign/exponent statistics, no exactly repeated values for "
              "zstd to find); use for throughput, not for ratios. Tensors over 1 MiB make nncodec use zstd level 3 "
              "instead of 19 inside its candidates.")
    print(f"- timing: median of at least {args.repeats} runs (more, up to 100, until 0.5 s is timed); MB = 10^6 bytes of raw tensor data; ratio = compressed / raw")
    print("- per-tensor methods code each tensor separately; ZipNN with 2 threads uses both cores, all other "
          "methods run on one thread\n")

    for dname, variant in variants(state).items():
        log(f"{dname}: {variant.raw_bytes:,} raw bytes")
        rows, notes = run_variant(variant, args.repeats, args.baselines == "all", log)
        print(f"## {dname} ({variant.raw_bytes:,} raw bytes)\n")
        print(table(rows, variant.raw_bytes))
        print("\nTargets (issue 2: bytes at most ZipNN's on the same tensors; decode >= 300 MB/s of float32 output):")
        for line in target_lines(rows, variant.raw_bytes, dname):
            print(line)
        print("\nCoders chosen per tensor (raw codec path):")
        for line in notes:
            print(f"- {line}")
        print()
    print(f"(total run time {time.perf_counter() - started:.0f} s; load average after: {load_average()})")
    return 0


def _zipnn_version() -> str:
    try:
        from importlib.metadata import version

        return version("zipnn")
    except Exception:  # noqa: BLE001 - a version string is only informative
        return "?"


if __name__ == "__main__":
    raise SystemExit(main())
