"""The teacher–student experiment of Barth & von Petersenn (Figure 1), in real bytes.

    python benchmarks/teacher_student.py

A fixed teacher MLP [2, 5, 8, 1] (tanh; first-layer weights W <- 2W + 1, second-layer W <- 2W)
labels inputs drawn uniformly from [-1, 1]^2, with N(0, 0.08^2) noise. A student [2, 25, 25, 1]
learns from n samples (n swept) with the Gaussian code-length loss in bits,
MSE/(2 s^2 ln 2) + log2(s^2)/2 with a learned s, under PMMP at several strengths alpha. Each
pruned student is quantized, written as a .nnc file and decoded; the plot shows its test loss
against the file's bytes, with isolines of the two-part description length 8*bytes + n*loss for
each n (the best model for a given n minimises that sum). Each student's file is then the model
part of a real two-part code: `nncodec mdl encode` codes the training targets, rounded to
PRECISION, given the inputs (a float32 IDX side file) under the decoded student (a `gauss` model
spec, FORMAT.md §21.5), and `nncodec mdl decode` (a fresh process) must give the targets back;
the teacher itself is coded the same way as the reference. Results go to benchmarks/out/.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import nncodec  # noqa: E402
from nncodec.compress.training import pmmp, quantized_state_dict, save_pruned, search_steps  # noqa: E402

NOISE = 0.08
TARGETS = "weights+biases"
PRECISION = 0.01  # targets are coded rounded to this grid (1/8 of the noise sd), fixed before any run


def idx_bytes(arr, type_code: int, dtype: str) -> bytes:
    import numpy as np

    a = np.ascontiguousarray(arr, dtype=dtype)
    return bytes([0, 0, type_code, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape) + a.tobytes()


def code_real(name: str, model_file: Path, hidden: list[int], data, out: Path) -> dict:
    """Real two-part code of the targets at PRECISION given the inputs: `nncodec mdl encode` with the
    model file as the model part (`--model X.nnc`), then `nncodec mdl decode` in a fresh process."""
    import subprocess

    import numpy as np

    x, y = data
    q = np.round(y.numpy().reshape(-1).astype(np.float64) / PRECISION).astype(np.int64)
    offset = int(q.min())
    labels = q - offset
    if labels.max() > 255:
        raise SystemExit("targets span more than 256 bins at this precision")
    inputs_path, targets_path, coded = out / f"{name}.inputs.idx", out / f"{name}.targets.idx", out / f"{name}.data.nnc"
    inputs_path.write_bytes(idx_bytes(x.numpy(), 0x0D, ">f4"))
    targets_path.write_bytes(idx_bytes(labels, 0x08, "u1"))
    spec = {"arch": "gauss", "inputs": 2, "hidden": hidden, "classes": max(2, int(labels.max()) + 1),
            "step": repr(PRECISION), "offset": offset}
    from nncodec_cli.main import main as nncodec_main

    nncodec_main(["mdl", "encode", str(targets_path), "-o", str(coded), "--labels-for", str(inputs_path), "--model",
                  str(model_file), "--arch", json.dumps(spec), "--force"], standalone_mode=False)  # the CLI, in process
    cli = [sys.executable, "-c", "import sys; from nncodec_cli.main import main; sys.argv[0] = 'nncodec'; main()", "mdl"]
    back = out / f"{name}.targets.decoded"
    subprocess.run(cli + ["decode", str(coded), "-o", str(back), "--labels-for", str(inputs_path), "--force"],
                   check=True, capture_output=True)
    if back.read_bytes() != targets_path.read_bytes():
        raise SystemExit(f"{name}: decode did not reproduce the targets")
    from nncodec.container.reader import Container

    with Container(coded.read_bytes()) as c:
        data_bytes = sum(sec.length for sec in c.sections if sec.kind == "dataset")
    return {"file_bytes": coded.stat().st_size, "data_bytes": data_bytes, "model_file_bytes": model_file.stat().st_size}


def teacher_file(teacher: nn.Module, out: Path) -> Path:
    """The teacher with the true noise scale, as a lossless .nnc model file (the reference model)."""
    state = {f"net.{k}": v for k, v in teacher.state_dict().items()}
    state["log_s"] = torch.tensor(math.log(NOISE))
    path = out / "teacher.nnc"
    nncodec.save_file(state, path)
    return path


def mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


def make_teacher(seed: int = 35) -> nn.Sequential:
    torch.manual_seed(seed)
    t = mlp([2, 5, 8, 1])
    with torch.no_grad():
        t[0].weight.mul_(2).add_(1)
        t[2].weight.mul_(2)
    return t.eval()


@torch.no_grad()
def sample(teacher: nn.Module, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 2, generator=g) * 2 - 1
    return x, teacher(x) + NOISE * torch.randn(n, 1, generator=g)


class Student(nn.Module):
    """The student MLP plus the learned noise scale s of the Gaussian code (log s, so s > 0)."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = mlp([2, 25, 25, 1])
        self.log_s = nn.Parameter(torch.tensor(math.log(0.1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def gauss_bits(student: Student):
    """Mean code length in bits per sample: MSE/(2 s^2 ln 2) + log2(s^2)/2."""

    def loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        s2 = torch.exp(2 * student.log_s)
        return ((out - y) ** 2).mean() / (2 * s2 * math.log(2)) + 0.5 * torch.log2(s2)

    return loss


@torch.no_grad()
def bits(student: Student, data: tuple[torch.Tensor, torch.Tensor], state=None) -> float:
    if state is not None:
        student = Student(0)
        student.load_state_dict(state)
    return float(gauss_bits(student)(student(data[0]), data[1]))


def run_one(n: int, alpha_bits: float, teacher: nn.Module, val, test, out: Path, epochs: int, finetune: int,
            seed: int) -> dict:
    train = sample(teacher, n, 1000 + n)
    student = Student(42 + seed)
    loader = [train]  # full-batch training: any iterable of (inputs, targets) batches is a loader
    t0 = time.perf_counter()
    pmmp(student, loader, gauss_bits(student), alpha=alpha_bits / n, epochs=epochs, finetune_epochs=finetune, lr=5e-3,
         targets=TARGETS, progress=False, seed=seed, calib_batches=None)
    pruned_val = bits(student, val)
    names = [k for k, _ in student.named_parameters() if k != "log_s"]
    steps = search_steps(student, lambda s: bits(student, val, s), pruned_val + 0.01 * abs(pruned_val) + 0.005,
                         names=names, targets=TARGETS)
    path = out / f"ts-n{n}-a{alpha_bits:g}.nnc"
    nbytes = save_pruned(student, path, steps=steps, targets=TARGETS)
    decoded = nncodec.load_file(path)
    assert all(torch.equal(decoded[k], v) for k, v in quantized_state_dict(student, steps, TARGETS).items())
    nnz = sum(int(torch.count_nonzero(decoded[k])) for k in names)
    row = {"n": n, "alpha_bits": alpha_bits, "alpha": alpha_bits / n, "bytes": nbytes, "nonzero": nnz,
           "paper_estimate_bytes": 4 * nnz, "test_bits": bits(student, test, decoded),
           "train_bits": bits(student, train, decoded)}
    real = code_real(f"ts-n{n}-a{alpha_bits:g}", path, [25, 25], train, out)
    row.update(real_bytes=real["file_bytes"], real_data_bytes=real["data_bytes"],
               seconds=round(time.perf_counter() - t0, 1))
    return row


def plot(rows: list[dict], sizes: list[int], path: Path) -> None:
    """Left: test loss against model bytes, with isolines of the old estimate. Right: the real
    two-part description length (bytes of the coded file, per sample) against model bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    students = [r for r in rows if not r.get("teacher")]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    lo = min(r["bytes"] for r in rows) * 0.7
    hi = max(r["bytes"] for r in rows) * 1.4
    for i, n in enumerate(sizes):
        rs = sorted((r for r in students if r["n"] == n), key=lambda r: r["bytes"])
        color = f"C{i}"
        ax.plot([r["bytes"] for r in rs], [r["test_bits"] for r in rs], "o-", color=color, label=f"n = {n}")
        best = min(rs, key=lambda r: 8 * r["bytes"] + n * r["train_bits"])
        dl = 8 * best["bytes"] + n * best["test_bits"]
        xs = [lo * (hi / lo) ** (k / 50) for k in range(51)]
        ax.plot(xs, [(dl - 8 * x) / n for x in xs], ls="--", lw=0.8, color=color,
                label=f"estimate DL = {dl / 8:,.0f} B isoline (n = {n})")
        ax2.plot([r["bytes"] for r in rs], [8 * r["real_bytes"] / n for r in rs], "o-", color=color,
                 label=f"students, n = {n}")
        for r in rs:
            ax2.annotate(f"α={r['alpha_bits']:g}", (r["bytes"], 8 * r["real_bytes"] / n), fontsize=6)
        for t in (r for r in rows if r.get("teacher") and r["n"] == n):
            ax2.plot([t["bytes"]], [8 * t["real_bytes"] / n], "*", ms=12, color=color, label=f"teacher, n = {n}")
    ymin = min(r["test_bits"] for r in students)
    ymax = max(r["test_bits"] for r in students)
    ax.set_ylim(ymin - 0.1 * (ymax - ymin + 0.1), ymax + 0.3 * (ymax - ymin + 0.1))
    for a in (ax, ax2):
        a.set_xscale("log")
        a.set_xlim(lo, hi)
        a.set_xlabel("model size: .nnc file bytes")
        a.grid(alpha=0.3, which="both")
        a.legend(fontsize=7)
    ax2.set_yscale("log")
    ax.set_ylabel("test loss (bits per sample, Gaussian code)")
    ax.set_title("Teacher–student [2,5,8,1] → [2,25,25,1], PMMP over α")
    ax2.set_ylabel(f"real two-part DL: coded file bits per sample (targets at {PRECISION:g})")
    ax2.set_title("Description length of files that decode")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def table(rows: list[dict]) -> str:
    """Old differential estimate beside the real coded file. The Gaussian loss omits ½·log2(2π) per
    sample and the precision term −log2 δ; the 'corrected' column adds both, so it estimates the
    data part that coding at δ gives (plus the model file's bytes)."""
    const = 0.5 * math.log2(2 * math.pi) - math.log2(PRECISION)
    lines = [f"| n | model | model .nnc B | non-zeros | test bits/sample | train bits/sample | old estimate "
             f"8·B + n·loss (bits) | + n·(½log2 2π + log2(1/{PRECISION:g})) (bits) | **real coded file (bits)** | "
             "data section (bits) | rest: preamble, header, model (bits) |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        real, data = 8 * r["real_bytes"], 8 * r["real_data_bytes"]
        if r.get("teacher"):
            lines.append(f"| {r['n']} | teacher [2,5,8,1], s = {NOISE} | {r['bytes']} | – | – | – | – | – | "
                         f"**{real:,}** | {data:,} | {real - data:,} |")
            continue
        est = 8 * r["bytes"] + r["n"] * r["train_bits"]
        lines.append(f"| {r['n']} | student, α = {r['alpha_bits']:g} bits/param | {r['bytes']} | {r['nonzero']} | "
                     f"{r['test_bits']:.3f} | {r['train_bits']:.3f} | {est:,.0f} | {est + r['n'] * const:,.0f} | "
                     f"**{real:,}** | {data:,} | {real - data:,} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 1000, 3000])
    ap.add_argument("--alphas", type=float, nargs="+", default=[0.0, 2.0, 8.0, 32.0],
                    help="penalty per parameter in bits (alpha = value / n)")
    ap.add_argument("--epochs", type=int, default=2000)
    ap.add_argument("--finetune-epochs", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(HERE / "out"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--table-from", help="only print the table of a previous run's teacher_student.json")
    args = ap.parse_args()
    if args.table_from:
        print(table(json.loads(Path(args.table_from).read_text())))
        return
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    teacher = make_teacher()
    val, test = sample(teacher, 1000, 1), sample(teacher, 5000, 2)
    rows = []
    start = time.perf_counter()
    for n in args.sizes:
        for a in args.alphas:
            r = run_one(n, a, teacher, val, test, out, args.epochs, args.finetune_epochs, args.seed)
            rows.append(r)
            print(f"n={n:5d} alpha={a:6g} bits/param: {r['bytes']:5d} B, nnz {r['nonzero']:4d}, test "
                  f"{r['test_bits']:.3f} bits/sample, estimate {8 * r['bytes'] + n * r['train_bits']:.0f} bits, real "
                  f"{8 * r['real_bytes']} bits ({r['seconds']} s)",
                  file=sys.stderr, flush=True)
    for n in args.sizes:  # the reference: the teacher itself (true noise scale) as the model part
        tr = code_real(f"teacher-n{n}", teacher_file(teacher, out), [5, 8], sample(teacher, n, 1000 + n), out)
        rows.append({"n": n, "alpha_bits": None, "bytes": tr["model_file_bytes"], "real_bytes": tr["file_bytes"],
                     "real_data_bytes": tr["data_bytes"], "teacher": True})
    md = table(rows)
    print(md)
    print(f"\ntotal time {(time.perf_counter() - start) / 60:.1f} min")
    (out / "teacher_student.md").write_text(md + "\n")
    (out / "teacher_student.json").write_text(json.dumps(rows, indent=2) + "\n")
    plot(rows, args.sizes, out / "teacher_student.png")


if __name__ == "__main__":
    main()
