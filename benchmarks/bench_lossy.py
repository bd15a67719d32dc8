"""Post-training lossy compression to accuracy budgets, nncodec against NNCodec 2.1.3 in the same run.

    nice -n 10 python benchmarks/bench_lossy.py --data /work/shared/data/fashion-mnist \
        [--models lenet300,lenet5] [--seeds 0 1 2] [--budgets 0.5 1.0] [--nnr-venv /work/venvs/nnr]

Protocol (benchmarks/PROTOCOL.md): the converged dense baseline of the seed (train_baselines.py) is
compressed by
  * nncodec data-free: `search_budgets` with no data but the validation evaluator,
  * nncodec calibrated: the same plus input statistics of 4,096 TRAIN images (OPTQ error feedback and
    bias correction; no gradient steps),
  * NNCodec 2.1.3 (the MPEG NNR reference software), run as a subprocess in its own venv
    (/work/shared/reference/nnr/nnr_sweep.py) at every QP of --qps, with and without --opt-qp.
Every candidate is scored per sample on the 5,000 VALIDATION images and accepted for a budget only when
the one-sided 95 % upper bound of its paired drop is within the budget on the even-numbered AND on the
odd-numbered samples (nncodec's search steers on the even half and confirms on the odd half; NNCodec's
QP settings are judged by the same two tests); for each codec the smallest accepted file is chosen, and
only that file is scored on the test set. The table reports test drops
and the byte ratio nncodec / NNCodec per model and budget. Without the NNR venv the benchmark still runs
and says that NNCodec was not run. Output: --json (default benchmarks/results/lossy.json).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import protocol  # noqa: E402
from common import load_average, machine_description  # noqa: E402
from nncodec_cli.presets import lenet as models  # noqa: E402

import nncodec  # noqa: E402
from nncodec.budget import search_budgets  # noqa: E402
from nncodec.compress.layer_inputs import layer_statistics  # noqa: E402
from nncodec.confidence import half_drops, paired_drop  # noqa: E402

NNR_DIR = Path(os.environ.get("NNR_REFERENCE", "/work/shared/reference/nnr"))
NNR_VENV = Path(os.environ.get("NNR_VENV", "/work/venvs/nnr"))
TARGETS = {"data-free": 0.75, "calibrated": 0.5}  # nncodec bytes <= this x NNCodec bytes
CALIBRATION_SAMPLES = 4096


def _nnr_env() -> dict[str, str]:
    """The environment for NNCodec's venv: without PYTHONPATH, which may point at this project's
    `nncodec` (e.g. a snapshot the benchmark runs from) and would shadow Fraunhofer's package."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def nnr_python(venv: Path) -> Path | None:
    py = venv / "bin" / "python"
    if not py.exists() or not (NNR_DIR / "nnr_sweep.py").exists():
        return None
    probe = subprocess.run([str(py), "-c", f"import sys; sys.path.insert(0, {str(NNR_DIR)!r}); import nnc_compat; "
                            "from nncodec import nnc"], capture_output=True, text=True,
                           cwd=tempfile.gettempdir(), env=_nnr_env())  # not here: ./nncodec would shadow Fraunhofer's package
    return py if probe.returncode == 0 else None


def run_nnr(py: Path, checkpoint: Path, qps: list[int], opt_qp: bool, workdir: Path) -> list[dict]:
    """NNCodec at every QP: bytes of the bitstream and the path of its decoded tensors."""
    cmd = [str(py), str(NNR_DIR / "nnr_sweep.py"), str(checkpoint), str(workdir), "--threads", "1",
           "--qp", *map(str, qps)] + (["--opt-qp"] if opt_qp else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, env=_nnr_env())
    if proc.returncode != 0:
        raise RuntimeError(f"nnr_sweep failed: {proc.stderr.strip()[-500:]}")
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    for r in rows:
        r["decoded"] = str(workdir / f"{r['tag']}.decoded.safetensors")
    return rows


def choose(candidates: list[dict], budget: float) -> dict | None:
    """The smallest candidate that passes the bound on the even AND on the odd validation samples: the
    acceptance rule of nncodec's search (which steers on the even half and confirms on the odd half)."""
    ok = [c for c in candidates if max(c["val_bound_even"], c["val_bound_odd"]) <= budget + 1e-9]
    return min(ok, key=lambda c: c["bytes"]) if ok else None


def run_model(arch: str, seed: int, data: protocol.ProtocolData, a: argparse.Namespace, py: Path | None) -> dict:
    state = protocol.load_baseline(arch, seed)
    evaluate = protocol.val_evaluator(arch, data)
    base_val = evaluate(state)
    base_test = protocol.test_accuracy(arch, state, data)
    float_bytes = sum(v.numel() * 4 for v in state.values())
    model = models.build(arch)
    model.load_state_dict(state)
    stats = layer_statistics(model, data.train.x[:CALIBRATION_SAMPLES])
    out = {"arch": arch, "seed": seed, "float32_bytes": float_bytes, "baseline_val": float(base_val.mean()),
           "baseline_test": base_test, "lossless_bytes": len(nncodec.save(state)), "rows": [], "nnr": None}
    say = lambda msg: print(f"[{arch} seed {seed}] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    for label, st in (("data-free", None), ("calibrated", stats)) if "nncodec" in a.codecs else ():
        t0 = time.perf_counter()
        results = search_budgets(state, evaluate, a.budgets, statistics=st, max_evals=a.max_evals,
                                 confidence=a.confidence, metadata={"arch": arch}, progress=sys.stderr.isatty())
        seconds = time.perf_counter() - t0
        for budget, r in zip(a.budgets, results, strict=True):
            test_acc = protocol.test_accuracy(arch, nncodec.load(r.data), data)
            row = {"codec": f"nncodec {label}", "budget": budget, "bytes": len(r.data),
                   "val_drop": r.baseline - r.score, "val_drop_bound": r.drop_bound, "test_accuracy": test_acc,
                   "test_drop": base_test - test_acc, "evaluations": r.evaluations, "search_seconds": seconds,
                   "settings": r.settings}
            out["rows"].append(row)
            say(f"{row['codec']} budget {budget}: {row['bytes']:,} B, val drop {row['val_drop']:.2f} "
                f"(bound {row['val_drop_bound']:.2f}), test drop {row['test_drop']:.2f} [{seconds:.0f} s]")
    if "nnr" not in a.codecs:
        return out
    if py is None:
        say("NNCodec not run: no working NNR venv at " + str(a.nnr_venv))
        return out
    cands = []
    with tempfile.TemporaryDirectory() as tmp:
        for opt_qp in (False, True):
            t0 = time.perf_counter()
            for r in run_nnr(py, protocol.baseline_path(arch, seed), a.qps, opt_qp, Path(tmp)):
                from safetensors.torch import load_file

                decoded = load_file(r["decoded"])
                per = evaluate(decoded)
                pd = paired_drop(base_val, per, a.confidence)
                even, odd = half_drops(base_val, per, a.confidence)
                cands.append({"tag": r["tag"], "qp": r["qp"], "opt_qp": opt_qp, "bytes": r["bytes"],
                              "val_drop": pd.drop, "val_drop_bound": pd.upper, "decoded_state": decoded,
                              "val_bound_even": even.upper, "val_bound_odd": odd.upper,
                              "encode_s": r["encode_s"], "decode_s": r["decode_s"]})
            say(f"NNCodec sweep (opt_qp={opt_qp}) done in {time.perf_counter() - t0:.0f} s")
        for budget in a.budgets:
            c = choose(cands, budget)
            if c is None:
                out["rows"].append({"codec": "NNCodec 2.1.3", "budget": budget, "bytes": None})
                continue
            test_acc = protocol.test_accuracy(arch, c["decoded_state"], data)  # the chosen file only
            out["rows"].append({"codec": "NNCodec 2.1.3", "budget": budget, "bytes": c["bytes"], "tag": c["tag"],
                                "val_drop": c["val_drop"], "val_drop_bound": c["val_drop_bound"],
                                "test_accuracy": test_acc, "test_drop": base_test - test_acc})
            say(f"NNCodec budget {budget}: {c['bytes']:,} B ({c['tag']}), test drop {base_test - test_acc:.2f}")
    out["nnr"] = [{k: v for k, v in c.items() if k != "decoded_state"} for c in cands]
    return out


def _ms(values: list[float], fmt: str) -> str:
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{format(statistics.mean(values), fmt)} ± {format(statistics.stdev(values), fmt)}"


def _peer(m: dict, budget: float) -> dict | None:
    return next((r for r in m["rows"] if r["codec"] == "NNCodec 2.1.3" and r["budget"] == budget), None)


def fell_back(row: dict) -> bool:
    """nncodec's search accepted no lossy file and returned the lossless one (every layer 'lossless')."""
    settings = row.get("settings") or {}
    return bool(settings) and all(v == "lossless" for v in settings.values())


def summary_rows(res: dict) -> list[dict]:
    """Per (model, budget, codec): the seeds, bytes, test drops and per-seed ratios nncodec / NNCodec (the
    ratio is taken within each seed's run, then averaged)."""
    out: dict[tuple, dict] = {}
    for m in sorted(res["models"], key=lambda m: (protocol.ARCHS.index(m["arch"]), m["seed"])):
        for budget in res["budgets"]:
            peer = _peer(m, budget)
            for r in (r for r in m["rows"] if r["budget"] == budget):
                g = out.setdefault((m["arch"], budget, r["codec"]), {
                    "arch": m["arch"], "budget": budget, "codec": r["codec"], "seeds": [], "bytes": [],
                    "test_drop": [], "ratio": [], "none": []})
                if r["bytes"] is None:
                    g["none"].append(m["seed"])
                    continue
                g["seeds"].append(m["seed"])
                if fell_back(r):
                    g.setdefault("fallback", []).append(m["seed"])
                g["bytes"].append(r["bytes"])
                g["test_drop"].append(r["test_drop"])
                if peer and peer.get("bytes") and r["codec"] != "NNCodec 2.1.3":
                    g["ratio"].append(r["bytes"] / peer["bytes"])
    return list(out.values())


def markdown(res: dict) -> str:
    models = sorted(res["models"], key=lambda m: (protocol.ARCHS.index(m["arch"]), m["seed"]))
    lines = [f"Machine: {res['machine']}. Selection on validation (5,000 images, {res['confidence']:.0%} one-sided "
             "paired bound on the even and on the odd samples), drops on test (10,000 images) against the dense "
             "baseline of the same seed. Runs:", ""]
    for m in models:
        lines.append(f"- {protocol.NAMES[m['arch']]} seed {m['seed']}: "
                     + ", ".join(x for x in (m.get("date"), f"load average at the end {m.get('load', res.get('load'))}",
                                             f"NNCodec QPs {_qp_range(m.get('qps', res.get('qps')))}"
                                             if m.get("nnr") else "NNCodec not run in this run",
                                             f"`{m['command']}`" if m.get("command") else None) if x))
    lines.append("")
    if not res["nnr_run"]:
        lines += ["**NNCodec was not run** (no working NNR venv): the ratio column is empty.", ""]
    lines += ["Mean ± sd over the seeds (ratio: nncodec / NNCodec bytes within each seed's run, then averaged):", "",
              "| model | budget | codec | seeds | file bytes | test drop (pt) | nncodec / NNCodec | target |",
              "|---|---|---|---|---:|---:|---:|---|"]
    for g in summary_rows(res):
        kind = g["codec"].removeprefix("nncodec ")
        seeds = ",".join(map(str, g["seeds"])) + (f" (none within budget: seeds {g['none']})" if g["none"] else "")
        if g.get("fallback"):
            seeds += f" (seed {', '.join(map(str, g['fallback']))}: no lossy file passed, lossless fallback)"
        if not g["bytes"]:
            lines.append(f"| {protocol.NAMES[g['arch']]} | {g['budget']} pt | {g['codec']} | {seeds} | | | | |")
            continue
        ratio = f"{_ms(g['ratio'], '.2f')}x" if g["ratio"] else ""
        target = f"<= {TARGETS[kind]}x" if kind in TARGETS else ""
        if g["ratio"] and target:
            target += " met" if statistics.mean(g["ratio"]) <= TARGETS[kind] else " **missed**"
            if len(g["ratio"]) < len(g["seeds"]):
                target += f" ({len(g['ratio'])} of {len(g['seeds'])} seeds with an NNCodec file)"
        if statistics.mean(g["test_drop"]) > g["budget"]:
            target += " (mean test drop over budget)"
        lines.append(f"| {protocol.NAMES[g['arch']]} | {g['budget']} pt | {g['codec']} | {seeds} | "
                     f"{_ms(g['bytes'], ',.0f')} | {_ms(g['test_drop'], '.2f')} | {ratio} | {target} |")
    lines += ["", "Per seed:", "",
              "| model (seed, test acc., float32 B) | budget | codec | file bytes | val drop (bound) | test drop "
              "| nncodec / NNCodec |", "|---|---|---|---:|---|---:|---:|"]
    for m in models:
        head = f"{protocol.NAMES[m['arch']]} (seed {m['seed']}, {m['baseline_test']:.2f} %, {m['float32_bytes']:,})"
        for budget in res["budgets"]:
            peer = _peer(m, budget)
            for r in (r for r in m["rows"] if r["budget"] == budget):
                if r["bytes"] is None:
                    lines.append(f"| {head} | {budget} pt | {r['codec']} | none within budget | | | |")
                    continue
                ratio = (f"{r['bytes'] / peer['bytes']:.2f}x" if peer and peer.get("bytes")
                         and r["codec"] != "NNCodec 2.1.3" else "")
                lines.append(f"| {head} | {budget} pt | {r['codec']} | {r['bytes']:,}"
                             f"{' (lossless fallback)' if fell_back(r) else ''} | {r['val_drop']:.2f} "
                             f"({r['val_drop_bound']:.2f}) | {r['test_drop']:.2f} | {ratio} |")
    return "\n".join(lines)


def _qp_range(qps: list[int] | None) -> str:
    if not qps:
        return "?"
    step = qps[1] - qps[0] if len(qps) > 1 else 1
    return f"{qps[0]}..{qps[-1]} step {step}"


def merge(old: dict | None, new: dict, budgets: list[float], codecs: set[str]) -> list[dict]:
    """The model entries of `old` with `new` (one architecture and seed) put in: an earlier entry of the same
    (arch, seed) keeps the rows of the codecs not run now; other entries stay. Entries measured with other
    budgets are dropped (their rows would not line up)."""
    models = [{**m, "load": m.get("load", old.get("load")),  # files written before runs were stamped per entry
               "qps": m.get("qps", old.get("qps") if m.get("nnr") else None)}
              for m in (old or {}).get("models", []) if old.get("budgets") == budgets]
    prev = next((m for m in models if (m["arch"], m["seed"]) == (new["arch"], new["seed"])), None)
    if prev is not None:
        ran = {"nncodec data-free", "nncodec calibrated"} if "nncodec" in codecs else set()
        ran |= {"NNCodec 2.1.3"} if "nnr" in codecs else set()
        new = {**new, "rows": [r for r in prev["rows"] if r["codec"] not in ran] + new["rows"]}
        if "nnr" not in codecs:
            new["nnr"], new["qps"] = prev.get("nnr"), prev.get("qps", old.get("qps"))
        models.remove(prev)
    return models + [new]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=protocol.DATA_DIR)
    ap.add_argument("--models", default="lenet300,lenet5")
    ap.add_argument("--seeds", "--seed", type=int, nargs="+", default=[0],
                    help="baseline seeds, run one after the other in this process")
    ap.add_argument("--budgets", type=float, nargs="+", default=[0.5, 1.0])
    ap.add_argument("--max-evals", type=int, default=100)
    ap.add_argument("--confidence", type=float, default=protocol.DEFAULT_CONFIDENCE)
    ap.add_argument("--qps", type=int, nargs="+", default=list(range(-32, -11)),
                    help="NNCodec QPs, each run with and without --opt-qp (every integer: the NNR README's advice)")
    ap.add_argument("--nnr-venv", type=Path, default=NNR_VENV)
    ap.add_argument("--json", type=Path, default=HERE / "results" / "lossy.json")
    ap.add_argument("--codecs", default="nncodec,nnr",
                    help="run only some codecs; their rows replace those of the same model and seed in --json")
    a = ap.parse_args()
    a.codecs = set(a.codecs.split(","))
    torch.set_num_threads(1)
    py = nnr_python(a.nnr_venv) if "nnr" in a.codecs else None
    if py is None:
        print(f"NNCodec 2.1.3 not available (no working venv at {a.nnr_venv}): running nncodec only", file=sys.stderr)
    data = protocol.load(a.data)
    command = "python " + " ".join(shlex.quote(x) for x in ["benchmarks/bench_lossy.py"] + sys.argv[1:])
    for seed in a.seeds:
        for arch in a.models.split(","):
            new = run_model(arch, seed, data, a, py)
            new.update({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load": load_average(),
                        "command": command, "qps": a.qps if py is not None else None})
            old = json.loads(a.json.read_text()) if a.json.exists() else None
            res = {"machine": machine_description(), "budgets": a.budgets, "confidence": a.confidence,
                   "nnr_run": py is not None or bool(old and old.get("nnr_run") and old.get("budgets") == a.budgets),
                   "models": merge(old, new, a.budgets, a.codecs)}
            a.json.parent.mkdir(parents=True, exist_ok=True)
            a.json.write_text(json.dumps(res, indent=1, default=str) + "\n")  # after every model: partial runs count
    print(markdown(res))


if __name__ == "__main__":
    main()
