"""Issue 13, streaming: peak RSS and CPU % of `nncodec encode` / `decode` on sharded checkpoints.

    python benchmarks/scale_memory.py                       # 1 GB sharded real-weight checkpoint
    python benchmarks/scale_memory.py --scaling 3,10        # + 3 and 10 GB (encode, decode): growth with size
    python benchmarks/scale_memory.py --quick               # 0.2 GB, to check the harness

The 1 GB checkpoint is 5 safetensors shards (<= 250 MB) + model.safetensors.index.json made of real
weights (rapidocr's float32 tensors, /work/artifacts/scale, tiled to 2048x4096 matrices and vectors)
with noise in the 8 lowest mantissa bits (so no two tiles are equal; exponents stay real). Every
command runs as a child process (nice 10, OMP_NUM_THREADS=1, --threads 0 = every core); its peak RSS
and CPU time come from os.wait4's rusage of that child alone. The bound is issue 13's: largest input
shard (encode) or largest .nnc shard / tensor (decode) + 25 % + 200 MB. The baseline is the RSS of
`nncodec --version` (Python, torch and nncodec imported). Work files are deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

SOURCE = Path("/work/artifacts/scale/rapidocr_fp32.safetensors")
WORK = Path("/work/artifacts/scale/mem")
MB = 10**6
ROWS, COLS = 2048, 4096  # matrices of 32 MiB (fp32)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=WORK)
    p.add_argument("--source", type=Path, default=SOURCE, help="real float32 weights to tile (safetensors)")
    p.add_argument("--gb", type=float, default=1.0, help="size of the real-weight checkpoint")
    p.add_argument("--shard-mb", type=int, default=250)
    p.add_argument("--scaling", default="", help="comma-separated synthetic sizes in GB, e.g. 1,3,10")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--keep", action="store_true", help="keep the work files")
    p.add_argument("--reuse", action="store_true", help="reuse checkpoints an earlier --keep run built")
    p.add_argument("--build-only", action="store_true", help="only build the checkpoints (with --keep)")
    p.add_argument("--json-out", type=Path, default=None)
    p.add_argument("--peer", default=None, help="PYTHONPATH of another nncodec (e.g. an export of an older commit) "
                   "run beside this tree on the real checkpoint, alternating")
    p.add_argument("--peer-label", default="peer", help="what the peer is (shown in the table)")
    p.add_argument("--rounds", type=int, default=1, help="runs of each command (per code); medians")
    p.add_argument("--scaling-from", type=Path, default=None,
                   help="a saved result whose size-scaling runs are shown with this one (with their own date and load)")
    return p


# ------------------------------------------------------------------------------------- building


def _real_tiles(source: Path) -> np.ndarray:
    """The source's float32 weights of >= 4,096 elements, concatenated (the tiles' material)."""
    from safetensors.numpy import load_file

    arrays = [a.reshape(-1) for a in load_file(str(source)).values() if a.dtype == np.float32 and a.size >= 4096]
    return np.concatenate(arrays)


def build(folder: Path, total_bytes: int, shard_bytes: int, material: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """A sharded safetensors checkpoint of about `total_bytes` in `folder`; returns its description."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pos, layer, weight_map, largest_shard = 0, 0, {}, 0

    def take(n: int) -> np.ndarray:
        nonlocal pos
        idx = (pos + np.arange(n)) % material.size
        pos = (pos + n) % material.size
        noise = rng.integers(0, 256, n, dtype=np.uint32)
        return (material[idx].view(np.uint32) ^ noise).view(np.float32)

    layer_bytes = 3 * ROWS * COLS * 4 + 2 * COLS * 4
    per_shard = max(1, shard_bytes // layer_bytes)
    layers = max(1, round(total_bytes / layer_bytes))
    count = -(-layers // per_shard)
    made = 0
    for i in range(1, count + 1):  # each shard written as soon as it is made: memory holds one shard
        tensors: dict[str, np.ndarray] = {}
        for _ in range(min(per_shard, layers - layer)):
            for k in ("q", "k", "v"):
                tensors[f"layers.{layer}.{k}.weight"] = take(ROWS * COLS).reshape(ROWS, COLS)
            for k in ("norm", "bias"):
                tensors[f"layers.{layer}.{k}"] = take(COLS)
            layer += 1
        size = sum(t.nbytes for t in tensors.values())
        made += size
        largest_shard = max(largest_shard, size)
        name = f"model-{i:05d}-of-{count:05d}.safetensors"
        save_file(tensors, str(folder / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in tensors})
        del tensors
    index = {"metadata": {"total_size": made}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    return {"bytes": made, "shards": count, "tensors": len(weight_map), "largest_shard_bytes": largest_shard,
            "largest_tensor_bytes": ROWS * COLS * 4}


# ------------------------------------------------------------------------------------- measuring


def _nice() -> None:
    os.nice(10)


def measure(argv: list[str], pythonpath: str | None = None) -> dict[str, Any]:
    """Run `nncodec ARGV` as a child: wall seconds, peak RSS (its own rusage) and CPU %. `pythonpath`: run the
    nncodec found there (an export of another commit: the peer) instead of the installed one."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    cmd = [sys.executable, "-c", "from nncodec_cli.main import main; main()", *argv]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, preexec_fn=_nice, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode() if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"nncodec {' '.join(argv)} failed ({proc.returncode}): {err.strip()[-500:]}")
    cpu = usage.ru_utime + usage.ru_stime
    return {"seconds": round(wall, 2), "peak_rss_mb": round(usage.ru_maxrss * 1024 / MB, 1),
            "cpu_percent": round(100 * cpu / wall, 0) if wall else None, "cpu_seconds": round(cpu, 3)}


def _median_row(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of each figure over rounds (the single sample when there is one)."""
    if len(samples) == 1:
        return samples[0]
    keys = [k for k in ("seconds", "peak_rss_mb", "cpu_percent", "cpu_seconds") if all(k in s for s in samples)]
    row = {k: round(statistics.median(s[k] for s in samples), 3) for k in keys}
    row["samples"] = samples
    return row


def copy_cost(path: Path) -> dict[str, float]:
    """Seconds of the streaming writer's extra step for a file like `path`: its sections copied in the
    kernel from the spool into the output file (copy_file_range), and the fsync that follows."""
    out = path.with_suffix(".copy")
    start = time.perf_counter()
    with open(path, "rb") as src, open(out, "wb") as dst:
        done, size = 0, path.stat().st_size
        while done < size:
            done += os.copy_file_range(src.fileno(), dst.fileno(), min(1 << 24, size - done), done, done)
        copied = time.perf_counter()
        os.fsync(dst.fileno())
    end = time.perf_counter()
    out.unlink()
    return {"copy_seconds": round(copied - start, 2), "fsync_seconds": round(end - copied, 2)}


def _du(paths: list[Path]) -> int:
    return sum(p.stat().st_size for p in paths)


COMMANDS = ("encode -> one .nnc", "encode -> sharded .nnc", "decode one .nnc -> .safetensors",
            "decode sharded .nnc -> HF folder")


def _after_startup(row: dict[str, Any], startup: dict[str, Any] | None) -> None:
    """CPU % once the process has started: (CPU - start-up CPU) / (wall - start-up wall), where start-up is
    `nncodec --version` (Python, torch and nncodec imported; the same for any nncodec): the share of the
    run that the coding, reading and writing take, which the whole-run CPU % dilutes."""
    if startup and "cpu_seconds" in row and "cpu_seconds" in startup and row["seconds"] > startup["seconds"]:
        busy = (row["cpu_seconds"] - startup["cpu_seconds"]) / (row["seconds"] - startup["seconds"])
        row["cpu_percent_after_startup"] = round(100 * busy)


def run_one(folder: Path, info: dict[str, Any], threads: int, baseline_mb: float, label: str,
            commands: tuple[str, ...] = COMMANDS, peer: str | None = None, rounds: int = 1,
            startup: dict[str, Any] | None = None) -> dict[str, Any]:
    """Encode to one .nnc and to sharded .nnc, decode each back (one file; a HF folder): RSS vs bound.
    With `peer` (a PYTHONPATH holding another nncodec), each command is run `rounds` times by this tree and
    by the peer, alternating, on the same files (medians; the peer's rows under "peer_rows")."""
    index = folder / "model.safetensors.index.json"
    t = ["--threads", str(threads)]
    one, sharded = folder / "model.nnc", folder / "nnc" / "model.nnc.index.json"
    sharded.parent.mkdir(exist_ok=True)
    argv = {
        COMMANDS[0]: ["encode", str(index), "-o", str(one), "-q", "--force", *t],
        COMMANDS[1]: ["encode", str(index), "-o", str(sharded), "-q", "--force", *t],
        COMMANDS[2]: ["decode", str(one), "-o", str(folder / "out.safetensors"), "-q", "--force", *t],
        COMMANDS[3]: ["decode", str(sharded), "-o", str(folder / "hf") + "/", "--max-shard-size", "250MB", "-q",
                      "--force", *t],
    }
    rows: dict[str, Any] = {}
    peer_rows: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for name in commands:
        ours, theirs = [], []
        for _ in range(rounds):
            for who, samples in ((None, ours), (peer, theirs)) if peer else ((None, ours),):
                samples.append(measure(argv[name], who))
                (folder / "out.safetensors").unlink(missing_ok=True)
                shutil.rmtree(folder / "hf", ignore_errors=True)
        rows[name] = _median_row(ours)
        if theirs:
            peer_rows[name] = _median_row(theirs)
        if name == COMMANDS[0]:
            extra = copy_cost(one)
    nnc_shards = sorted(sharded.parent.glob("*.nnc"))
    shard_mb = info["largest_shard_bytes"] / MB
    tensor_mb = info["largest_tensor_bytes"] / MB
    nnc_shard_mb = max((p.stat().st_size for p in nnc_shards), default=0) / MB
    bounds = dict(zip(COMMANDS, (shard_mb, shard_mb, tensor_mb, nnc_shard_mb), strict=True))
    for row in [*rows.values(), *peer_rows.values()]:
        _after_startup(row, startup)
    for name, row in rows.items():
        row["bound_mb"] = round(bounds[name] * 1.25 + 200, 1)
        row["within_bound"] = row["peak_rss_mb"] <= row["bound_mb"]
        row["mb_per_s"] = round(info["bytes"] / MB / row["seconds"], 1)
    for name, row in peer_rows.items():
        row["bound_mb"] = rows[name]["bound_mb"]
        row["within_bound"] = row["peak_rss_mb"] <= row["bound_mb"]
        row["mb_per_s"] = round(info["bytes"] / MB / row["seconds"], 1)
    return {"label": label, "checkpoint": info, "nnc_bytes": one.stat().st_size if one.exists() else None,
            **({"peer_rows": peer_rows, "rounds": rounds} if peer_rows else {}),
            "sharded_nnc_bytes": _du(nnc_shards) or None, "largest_nnc_shard_bytes": int(nnc_shard_mb * MB) or None,
            "baseline_rss_mb": baseline_mb, "spool_copy": extra, "rows": rows}


def run(args: Any) -> dict[str, Any]:
    if isinstance(args, dict):
        ns = parser().parse_args([])
        for k, v in args.items():
            setattr(ns, k, v)
        args = ns
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    material = _real_tiles(args.source)
    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "peer_label": args.peer_label,
                              "load_average": [round(x, 2) for x in os.getloadavg()], "cores": os.cpu_count(),
                              "threads": args.threads, "source": str(args.source), "runs": []}
    report["baseline"] = measure(["--version"])
    base = report["baseline"]["peak_rss_mb"]
    sizes = [("real", 0.2 if args.quick else args.gb)]
    sizes += [("tiled", float(x)) for x in args.scaling.split(",") if x.strip()]
    try:
        for kind, gb in sizes:
            folder = work / f"{kind}-{gb:g}gb"
            built = folder / "built.json"
            if args.reuse and built.exists():  # built earlier (before a quiet timing window)
                info = json.loads(built.read_text())
            else:
                shutil.rmtree(folder, ignore_errors=True)
                info = build(folder, int(gb * 10**9), args.shard_mb * MB, material, seed=int(gb * 10))
                built.write_text(json.dumps(info))
            if args.build_only:
                continue
            commands = COMMANDS if kind == "real" else (COMMANDS[0], COMMANDS[2])
            peer = args.peer if kind == "real" else None
            report["runs"].append(run_one(folder, info, args.threads, base, f"{kind} {gb:g} GB", commands, peer, args.rounds,
                                          report["baseline"]))
            if not args.keep:
                shutil.rmtree(folder)
            _save(report, args.json_out)  # after each size: a run cut short keeps what it measured
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    if args.scaling_from and args.scaling_from.exists():
        earlier = json.loads(args.scaling_from.read_text())
        report["scaling"] = {k: earlier[k] for k in ("date", "load_average", "load_average_end", "baseline", "threads")
                             if k in earlier}
        report["scaling"]["runs"] = earlier["runs"]
    _save(report, args.json_out)
    return report


def _save(report: dict[str, Any], path: Path | None) -> None:
    report["_table"] = table(report)
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2))


def table(report: dict[str, Any]) -> str:
    lines = _table(report)
    if "peer" in report:  # the code before issue 13 on the same checkpoint, interleaved (benchmarks/scale_memory.py --peer)
        peer = report["peer"]
        lines += ["", f"Before and after issue 13, interleaved on one rebuilt 1 GB checkpoint ({peer['date']}, load "
                  f"{[round(x, 2) for x in peer['load_average']]}; the decoders read the same file):", "",
                  "| command / code | seconds | peak RSS MB | CPU % |", "|---|---:|---:|---:|"]
        lines += [f"| {k} | {v['seconds']} | {v['peak_rss_mb']} | {v['cpu_percent']} |"
                  for k, v in peer.items() if isinstance(v, dict) and "seconds" in v]
    if "scaling" in report:
        lines += ["", "Growth with size (an earlier run; its times were taken under that load):", ""]
        lines += _table(report["scaling"])
    return "\n".join(lines)


def _table(report: dict[str, Any]) -> list[str]:
    lines = [f"Streaming memory ({report['date']}, load {report['load_average']} -> {report.get('load_average_end')}, "
             f"--threads {report['threads']}, nice 10"
             + (f", medians of {report['runs'][0]['rounds']} alternating rounds" if report["runs"] and "rounds" in report["runs"][0] else "")
             + f"; baseline RSS of `nncodec --version`: "
             f"{report['baseline']['peak_rss_mb']} MB"
             + (f" (its start-up: {report['baseline']['seconds']} s wall, {report['baseline']['cpu_seconds']} s CPU)"
                if "cpu_seconds" in report["baseline"] else "") + "; bound = largest input shard (encode) or largest tensor / "
             ".nnc shard (decode) + 25 % + 200 MB)",
             "", "| checkpoint | command | seconds | MB/s | peak RSS MB | bound MB | within | CPU % | CPU % after start-up |",
             "|---|---|---:|---:|---:|---:|---|---:|---:|"]
    for r in report["runs"]:
        c = r["checkpoint"]
        what = (f"{r['label']}: {c['bytes'] / MB:,.0f} MB, {c['shards']} shards (largest {c['largest_shard_bytes'] / MB:,.0f} MB), "
                f"{c['tensors']} tensors")
        for name, row in r["rows"].items():
            lines.append(f"| {what} | {name} | {row['seconds']} | {row['mb_per_s']} | {row['peak_rss_mb']} | "
                         f"{row['bound_mb']} | {'yes' if row['within_bound'] else 'NO'} | {row['cpu_percent']} | "
                         f"{row.get('cpu_percent_after_startup', '–')} |")
            what = ""
            p = r.get("peer_rows", {}).get(name)
            if p:
                lines.append(f"| | the same, {report.get('peer_label', 'peer')} | {p['seconds']} | {p['mb_per_s']} | "
                             f"{p['peak_rss_mb']} | {p['bound_mb']} | {'yes' if p['within_bound'] else 'NO'} | {p['cpu_percent']} | "
                             f"{p.get('cpu_percent_after_startup', '–')} |")
        if r.get("spool_copy"):
            c = r["spool_copy"]
            lines.append(f"| | (streaming's second copy of the {r['nnc_bytes'] / MB:,.0f} MB .nnc: copy_file_range "
                         f"{c['copy_seconds']} s + fsync {c['fsync_seconds']} s, inside the encode time) | | | | | | | |")
    return lines


if __name__ == "__main__":
    result = run(parser().parse_args())
    print(result["_table"])
