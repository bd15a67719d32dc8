"""Converged dense baselines for every benchmark: LeNet-300-100 and LeNet-5-Caffe, seeds 0, 1, 2.

    nice -n 10 python benchmarks/train_baselines.py --data /work/shared/data/fashion-mnist

Adam, learning rate annealed to zero on a cosine schedule. The number of epochs (and weight decay) is
chosen on VALIDATION with seed 0 from a small grid (each candidate is a full cosine run, since a cosine
schedule cannot be cut short); the longest grid entry checks that more epochs do not help. Seeds 1 and 2
are then trained with the chosen setting. Test accuracy is measured once per saved model, for the
record (benchmarks/PROTOCOL.md). Writes OUT/{arch}_seed{S}.safetensors and OUT/README.json.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import shlex
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import protocol  # noqa: E402
from nncodec_cli.presets import lenet  # noqa: E402

# (epochs, weight decay) candidates per architecture, chosen on validation with seed 0.
GRID = {"lenet300": [(20, 0.0), (30, 0.0)],
        "lenet5": [(10, 0.0), (15, 0.0)]}  # ~4 s (LeNet-300-100) / ~45 s (LeNet-5) per epoch on one idle core
LR, BATCH = 1e-3, 128


def train_one(arch: str, data: protocol.ProtocolData, epochs: int, weight_decay: float, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = lenet.build(arch)
    return lenet.train(model, data.train.x, data.train.y.numpy(), epochs=epochs, lr=LR, batch_size=BATCH,
                        weight_decay=weight_decay, seed=seed, cosine=True,
                        progress=lambda e, loss: print(f"  [{arch} seed {seed}] epoch {e + 1}/{epochs}: loss {loss:.4f}",
                                                       file=sys.stderr, flush=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=protocol.DATA_DIR)
    ap.add_argument("--out", type=Path, default=protocol.BASELINES)
    ap.add_argument("--arch", nargs="+", default=list(protocol.ARCHS))
    ap.add_argument("--seeds", type=int, nargs="+", default=list(protocol.SEEDS))
    ap.add_argument("--grid", default=None, help="JSON {arch: [[epochs, weight_decay], ...]} overriding GRID")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--fixed", nargs=2, type=float, metavar=("EPOCHS", "WD"), default=None,
                    help="skip the sweep: train --seeds with this setting (chosen by an earlier sweep run) and "
                         "add them to README.json")
    ap.add_argument("--note", default="", help="with --fixed: why this setting (recorded in README.json)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    grid = {k: [tuple(v) for v in vs] for k, vs in json.loads(a.grid).items()} if a.grid else GRID
    data = protocol.load(a.data)
    a.out.mkdir(parents=True, exist_ok=True)
    readme_path = a.out / "README.json"
    for arch in a.arch:
        sweep, models_by_seed = [], {}
        if a.fixed is None:
            best = None
            for epochs, wd in grid[arch]:
                t0 = time.perf_counter()
                model = train_one(arch, data, epochs, wd, 0)
                val = protocol.accuracy(model, None, data.val)
                sweep.append({"epochs": epochs, "weight_decay": wd, "seed": 0, "val_accuracy": val,
                              "seconds": round(time.perf_counter() - t0, 1)})
                print(f"[{arch}] seed 0, {epochs} epochs, wd {wd:g}: validation {val:.2f}% "
                      f"({sweep[-1]['seconds']:.0f} s)", file=sys.stderr, flush=True)
                if best is None or val > best[0] + 0.05:  # a longer run must beat the shorter by > 0.05 pt
                    best = (val, epochs, wd, model)
            _, epochs, wd, models_by_seed[0] = best
        else:
            epochs, wd = int(a.fixed[0]), float(a.fixed[1])
        selection = ("epochs/weight decay chosen on validation (seed 0); a longer run had to gain > 0.05 pt"
                     if a.fixed is None else f"fixed by --fixed {epochs} {wd:g}" + (f": {a.note}" if a.note else ""))
        if a.fixed is None and epochs == max(e for e, _ in grid[arch]):
            selection += ("; the longest candidate won, so that more epochs do not help is NOT verified "
                          "(a longer grid entry would have to be run)")
        rows = []
        for seed in a.seeds:
            model = models_by_seed.get(seed) or train_one(arch, data, epochs, wd, seed)
            path = a.out / f"{arch}_seed{seed}.safetensors"
            save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(path))
            row = {"seed": seed, "file": path.name, "epochs": epochs, "weight_decay": wd,
                   "val_accuracy": protocol.accuracy(model, None, data.val),
                   "test_accuracy": protocol.accuracy(model, None, data.test)}
            rows.append(row)
            print(f"[{arch}] seed {seed}: validation {row['val_accuracy']:.2f}%, test {row['test_accuracy']:.2f}%",
                  file=sys.stderr, flush=True)
            pending = [s for s in a.seeds if s not in {r["seed"] for r in rows}]
            write_readme(readme_path, arch, rows, epochs, wd, selection + (
                f" (seeds {', '.join(map(str, pending))} still training)" if pending else ""), sweep,
                merge=a.fixed is not None, first=len(rows) == 1)


def write_readme(path: Path, arch: str, rows: list[dict], epochs: int, wd: float, selection: str, sweep: list[dict],
                 *, merge: bool, first: bool) -> None:
    """Update OUT/README.json after every saved seed (other jobs wait for the baselines and watch this
    file); `merge` keeps the seeds an earlier --fixed run recorded. The command is recorded once per run."""
    with open(path.parent / ".README.lock", "w") as lock:  # seeds may train in parallel processes
        fcntl.flock(lock, fcntl.LOCK_EX)
        readme = json.loads(path.read_text()) if path.exists() else {}  # other runs may have written
        old = readme.get(arch, {})
        entry = dict(old) if merge or not first else {}
        seeds = {r["seed"]: r for r in entry.get("seeds", [])}
        seeds.update({r["seed"]: r for r in rows})
        entry.update({
            "architecture": protocol.NAMES[arch], "optimizer": f"Adam lr {LR:g}, batch {BATCH}",
            "schedule": "cosine annealing to 0 over all steps", "epochs": epochs, "weight_decay": wd,
            "selection": selection, "seeds": [seeds[k] for k in sorted(seeds)],
            "split": "train 55,000 (first) / validation 5,000 (last of the training file) / test 10,000",
        })
        if sweep:
            entry["sweep"] = sweep
        if first:
            entry["commands"] = ([*old.get("commands", [])] if merge else []) + [
                "python " + " ".join(shlex.quote(x) for x in ["benchmarks/train_baselines.py"] + sys.argv[1:])]
        readme[arch] = entry
        path.write_text(json.dumps(readme, indent=1) + "\n")


if __name__ == "__main__":
    main()
