"""Issue 13 (checkpoints at real scale): the measurements in one driver, and the issue-13
section of benchmarks/RESULTS.md.

    python benchmarks/bench_scale.py                        # every part present, then RESULTS.md
    python benchmarks/bench_scale.py --parts lazy --quick   # one part, few repeats
    python benchmarks/bench_scale.py --report-only          # RESULTS.md from the saved JSON results

Parts (each module's `run(args) -> dict` and, if it has one, `table(report) -> str`; a module that is
not present is reported as missing, nothing is invented for it):
- throughput: benchmarks/scale_throughput.py — size, encode and decode MB/s of whole checkpoints,
  nncodec beside ZipNN and safetensors (chunks);
- memory: benchmarks/scale_memory.py — peak RSS and CPU % of streaming encode/decode of a 1 GB sharded
  checkpoint (stream);
- lazy: benchmarks/scale_lazy.py — nncodec.open against safetensors.safe_open (lazy);
- ratio: benchmarks/scale_ratio.py — the default file's size against ZipNN's on all seven test checkpoints,
  and where its bytes go (sizes only: it may run at any load);
- fresh: benchmarks/scale_fresh.py — the first encode and decode in a fresh process (a checkpoint is
  usually loaded once per process), nncodec beside ZipNN and safetensors.
Every part measures its peers interleaved in its own run. The parts can run in separate slots of the
quiet window: each run's results are saved to benchmarks/results/scale_<part>.json, and the RESULTS.md
section is written from the newest saved result of every part (with its own date and load average).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

RESULTS = HERE / "RESULTS.md"
SAVED = HERE / "results"
START, END = "<!-- issue-13 results: written by benchmarks/bench_scale.py -->", "<!-- end of issue-13 results -->"
SCALE = Path("/work/artifacts/scale")

# part -> (module, options for run(), options with --quick)
PARTS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "throughput": ("scale_throughput", {"checkpoints": [SCALE / "rapidocr_fp32.safetensors", SCALE / "rapidocr_bf16.safetensors",
                                                       SCALE / "resemblyzer_fp32.safetensors", SCALE / "lenet300_fp32.safetensors"],
                                        "prefers": ["balanced", "speed", "size"], "threads": [1, 2], "repeats": 5},
                   {"checkpoints": [SCALE / "rapidocr_fp32.safetensors"], "prefers": ["balanced"], "threads": [1, 2],
                    "repeats": 3}),
    "memory": ("scale_memory", {}, {"quick": True}),
    "lazy": ("scale_lazy", {"repeats": 41}, {"repeats": 15}),
    "ratio": ("scale_ratio", {}, {"checkpoints": [SCALE / "lenet300_fp32.safetensors"]}),
    "fresh": ("scale_fresh", {}, {"checkpoints": [SCALE / "lenet300_fp32.safetensors"], "rounds": 3}),
}


def _args(module: Any, options: dict[str, Any]) -> Any:
    """The module's own defaults (its `parser()`, if any) updated with `options`."""
    if hasattr(module, "parser"):
        ns = module.parser().parse_args([])
        for k, v in options.items():
            setattr(ns, k, v)
        return ns
    return dict(options)


def run_part(part: str, quick: bool) -> dict:
    name, options, quick_options = PARTS[part]
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name != name:
            raise
        return {"missing": f"benchmarks/{name}.py is not in this tree"}
    started = time.time()
    report = module.run(_args(module, {**options, **(quick_options if quick else {})}))
    report = json.loads(json.dumps(report, default=str))
    report["_driver"] = {"part": part, "module": name, "quick": quick, "seconds": round(time.time() - started, 1),
                         "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
                         "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if hasattr(module, "table"):
        report["_table"] = module.table(report)
    return report


def section(reports: dict[str, dict]) -> str:
    lines = [START, "## Checkpoints at real scale (issue 13): `benchmarks/bench_scale.py`", "",
             "Each part measures nncodec beside its peers (ZipNN 0.5.4, safetensors) interleaved in one run, "
             "medians over the repeats; the machine has 2 cores shared with other jobs (load averages below). "
             "A target missed is marked MISSED with its figure.", ""]
    for part, report in reports.items():
        module = PARTS[part][0]
        lines.append(f"### {part}: `benchmarks/{module}.py`")
        if "missing" in report:
            lines += ["", f"Not measured: {report['missing']}.", ""]
            continue
        d = report.get("_driver")
        if d:
            lines += ["", f"`python benchmarks/bench_scale.py --parts {part}{' --quick' if d.get('quick') else ''}` — "
                      f"{d.get('date', '?')}, {d.get('seconds', '?')} s, load average after: {d.get('load_average', '?')}", ""]
        else:
            lines += ["", f"Run by `benchmarks/{module}.py` itself in its own slot (its table gives the date and load).", ""]
        lines.append(report.get("_table") or _table_of(module, report))
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def _table_of(module: str, report: dict) -> str:
    try:
        return importlib.import_module(module).table(report)
    except (ModuleNotFoundError, AttributeError, KeyError, TypeError):
        return "```json\n" + json.dumps(report, indent=1)[:4000] + "\n```"


def write_results(reports: dict[str, dict]) -> None:
    text = RESULTS.read_text(encoding="utf-8")
    new = section(reports)
    if START in text and END in text:
        text = text[: text.index(START)] + new + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + new + "\n"
    RESULTS.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", type=lambda s: s.split(","), default=list(PARTS))
    ap.add_argument("--quick", action="store_true", help="fewer checkpoints and repeats")
    ap.add_argument("--report-only", action="store_true", help="write RESULTS.md from the saved results")
    ap.add_argument("--no-results", action="store_true", help="do not touch RESULTS.md")
    args = ap.parse_args(argv)
    SAVED.mkdir(exist_ok=True)
    if not args.report_only:
        for part in args.parts:
            report = run_part(part, args.quick)
            if "missing" not in report:
                (SAVED / f"scale_{part}.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
            print(report.get("_table") or json.dumps(report, indent=1))
    if not args.no_results:
        reports = {}
        for part in PARTS:
            saved = SAVED / f"scale_{part}.json"
            reports[part] = (json.loads(saved.read_text(encoding="utf-8")) if saved.exists()
                             else {"missing": f"no saved result (run `--parts {part}`)"})
        write_results(reports)


if __name__ == "__main__":
    main()
