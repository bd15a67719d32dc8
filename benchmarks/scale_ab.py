"""Same-run A/B of nncodec.save / nncodec.load between two versions of the code (issue 13): the old
commit's `nncodec` package is extracted (`git archive`) as `nncodec_old` and imported beside the
working tree's `nncodec` in ONE process; every round calls both, alternating which goes first, and the
figures are medians of process CPU time (a loaded machine distorts CPU time less than wall time, and
both versions see the same load, caches and allocator state).

    python benchmarks/scale_ab.py --old wip4-speed [--rounds 21] [--threads 1] [--jit native] \
        [--json benchmarks/results/scale_small_ab.json] [CKPT ...]

Each checkpoint is saved by both versions; each version's file is decoded by nncodec and compared with
the input bit for bit, and the sizes are reported (a version may write a different but valid file).
The load A/B reads the NEW version's file with both versions (the old reads every format the new writes
unless the format changed; then pass --load-own to let each version read its own file).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCALE = Path("/work/artifacts/scale")
DEFAULT = ["rapidocr_fp32", "rapidocr_bf16", "resemblyzer_fp32", "resemblyzer_bf16", "lenet300_fp32", "lenet300_bf16"]


def extract_old(commit: str, into: Path) -> str:
    """`git archive` of the old commit's nncodec/ as the package nncodec_old (relative imports only)."""
    data = subprocess.run(["git", "-C", str(HERE.parent), "archive", commit, "nncodec"], check=True,
                          capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    (into / "nncodec").rename(into / "nncodec_old")
    _build_c_extension(into)
    rev = subprocess.run(["git", "-C", str(HERE.parent), "rev-parse", "--short", commit], check=True,
                         capture_output=True, text=True).stdout.strip()
    return rev


def _build_c_extension(into: Path) -> None:
    """Build the old package's C planes loops in place (git archive has the source only: without this the old
    version would run on numpy, and the A/B would compare the C loops with numpy)."""
    src = into / "nncodec_old" / "codecs" / "_planes_c.c"
    if not src.exists():
        return
    code = ("from setuptools import setup, Extension; setup(name='nncodec_old_c', ext_modules=[Extension("
            "'nncodec_old.codecs._planes_c', ['nncodec_old/codecs/_planes_c.c'], extra_compile_args=['-O3'])])")
    subprocess.run([sys.executable, "-c", code, "build_ext", "--inplace", "-q"], cwd=into, check=True,
                   capture_output=True)


def _same(tensors: dict, decoded: dict) -> bool:
    import torch

    def words(t: torch.Tensor) -> torch.Tensor:
        return t.contiguous().reshape(-1).view(torch.uint8)

    return list(decoded) == list(tensors) and all(torch.equal(words(decoded[k]), words(v)) for k, v in tensors.items())


def run(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(1)
    from safetensors.torch import load_file

    work = Path(tempfile.mkdtemp(prefix="nncodec-ab-"))
    old_rev = extract_old(args.old, work)
    sys.path.insert(0, str(work))
    import nncodec_old  # type: ignore[import-not-found]

    import nncodec

    if args.jit != "auto":  # both versions, where they have the loops (in `auto` they switch mid-run)
        for mod in (nncodec, nncodec_old):
            jit = getattr(mod.codecs, "planes_jit", None)
            if jit is not None:
                jit.set_mode(args.jit)
    new_rev = subprocess.run(["git", "-C", str(HERE.parent), "rev-parse", "--short", "HEAD"], check=True,
                             capture_output=True, text=True).stdout.strip()
    versions = {"old": nncodec_old, "new": nncodec}
    if args.no_gc_pause and hasattr(nncodec, "gc_pause"):
        # the pause defers the collector's work to the next call, which in one alternating process is often the
        # other version's: compare the rest without it (its own effect: count collections, gc.callbacks)
        import contextlib

        nncodec.gc_pause.paused = contextlib.nullcontext
    providers = {k: m.codecs.planes_jit.provider() for k, m in versions.items() if hasattr(m.codecs, "planes_jit")}
    print(f"planes loops: {providers}", file=sys.stderr)
    out: dict = {"old": f"{args.old} ({old_rev})", "new": f"working tree at {new_rev}", "threads": args.threads,
                 "jit": args.jit, "providers": providers, "no_gc_pause": args.no_gc_pause, "rounds": args.rounds, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                 "load_before": os.getloadavg(), "checkpoints": {}}
    for name in args.checkpoints:
        path = Path(name) if name.endswith(".safetensors") else SCALE / f"{name}.safetensors"
        tensors = load_file(str(path))
        files = {k: m.save(tensors, threads=args.threads) for k, m in versions.items()}
        exact = {k: _same(tensors, nncodec.load(b)) for k, b in files.items()}
        cpu: dict[str, list[float]] = {f"{op}_{k}": [] for op in ("save", "load") for k in versions}
        wall: dict[str, list[float]] = {k: [] for k in cpu}
        for r in range(args.rounds):
            for k in (("old", "new") if r % 2 else ("new", "old")):
                m = versions[k]
                c, w = time.process_time(), time.perf_counter()
                m.save(tensors, threads=args.threads)
                cpu[f"save_{k}"].append(time.process_time() - c)
                wall[f"save_{k}"].append(time.perf_counter() - w)
                data = files[k] if args.load_own else files["new"]
                c, w = time.process_time(), time.perf_counter()
                m.load(data, threads=args.threads)
                cpu[f"load_{k}"].append(time.process_time() - c)
                wall[f"load_{k}"].append(time.perf_counter() - w)
        med = {k: statistics.median(v) * 1e3 for k, v in cpu.items()}
        wmed = {k: statistics.median(v) * 1e3 for k, v in wall.items()}
        out["checkpoints"][path.stem] = {
            "tensors": len(tensors), "bytes": {k: len(b) for k, b in files.items()}, "exact": exact,
            "save_cpu_ms": {"old": med["save_old"], "new": med["save_new"], "speedup": med["save_old"] / med["save_new"]},
            "load_cpu_ms": {"old": med["load_old"], "new": med["load_new"], "speedup": med["load_old"] / med["load_new"]},
            "save_wall_ms": {"old": wmed["save_old"], "new": wmed["save_new"], "speedup": wmed["save_old"] / wmed["save_new"]},
            "load_wall_ms": {"old": wmed["load_old"], "new": wmed["load_new"], "speedup": wmed["load_old"] / wmed["load_new"]}}
        print(line(path.stem, out["checkpoints"][path.stem]), file=sys.stderr, flush=True)
    out["load_after"] = os.getloadavg()
    return out


def line(name: str, c: dict) -> str:
    s, lo, b = c["save_cpu_ms"], c["load_cpu_ms"], c["bytes"]
    sw, lw = c["save_wall_ms"], c["load_wall_ms"]
    return (f"| {name} | {c['tensors']} | {s['old']:.2f} -> {s['new']:.2f} ({s['speedup']:.2f}x) | "
            f"{lo['old']:.2f} -> {lo['new']:.2f} ({lo['speedup']:.2f}x) | "
            f"{sw['old']:.2f} -> {sw['new']:.2f} ({sw['speedup']:.2f}x) | {lw['old']:.2f} -> {lw['new']:.2f} ({lw['speedup']:.2f}x) | "
            f"{b['old']:,} -> {b['new']:,} ({b['new'] - b['old']:+,}) | {'yes' if all(c['exact'].values()) else 'NO'} |")


def table(report: dict) -> str:
    lines = [f"Same-run A/B, old = {report['old']}, new = {report['new']}; {report['rounds']} alternating rounds in one "
             f"process, medians of process CPU ms (and wall ms), threads={report['threads']}, planes jit {report['jit']}"
             f"{', new without the GC pause' if report.get('no_gc_pause') else ''}; "
             f"{report['date']}, load {report['load_before'][0]:.2f} -> {report['load_after'][0]:.2f}.", "",
             "| checkpoint | tensors | save CPU ms old -> new | load CPU ms old -> new | save wall ms | load wall ms | "
             "bytes old -> new | exact |",
             "|---|---:|---|---|---|---|---|:---:|"]
    lines += [line(n, c) for n, c in report["checkpoints"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="*", default=DEFAULT)
    ap.add_argument("--old", required=True, help="git commit or branch of the old version")
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--jit", choices=("native", "off", "on", "auto"), default="native",
                    help="planes_jit mode of both versions (where they have it); native = the C loops, the default install")
    ap.add_argument("--load-own", action="store_true", help="each version loads its own file (format changed)")
    ap.add_argument("--no-gc-pause", action="store_true",
                    help="the new version without nncodec.gc_pause (whose deferred collections land in the other version's calls)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    report = run(args)
    text = table(report)
    print(text)
    if args.json:
        args.json.write_text(json.dumps({**report, "_table": text}, indent=1, default=str) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
