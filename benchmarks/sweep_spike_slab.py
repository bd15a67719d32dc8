"""Spike-and-slab hyper-parameters chosen on VALIDATION with a held-out confirmation (issue 10), and the
3-seed test run of the chosen setting beside a seed-001 method in the same run.

    nice -n 10 python benchmarks/sweep_spike_slab.py sweep --data /work/shared/data/fashion-mnist \
        --kl 0.1 0.05 0.03 --taus 0.5 0.9 --epochs 10 --finetune-epochs 10 --json L/sweep.json
    nice -n 10 python benchmarks/sweep_spike_slab.py final --data ... --choice L/sweep.json --seeds 0 1 2 \
        --peer drr --json L/final.json

For each (kl_weight, lambda, sigma0): `--epochs` variational epochs (KL annealed over `--anneal` epochs)
from the converged dense baseline; then for each tau the model phi > tau, `--finetune-epochs` epochs of
fine-tuning with the mask frozen (cosine learning rate, the epoch kept by early stopping on the EVEN
validation samples), the quantization-step search (on the even samples, within each `--qtols` points of
the fine-tuned model) and the real .nnc file (PIPs not stored).

The choice rule (fixed before the run): validation is split into even- and odd-numbered samples. Every
steering step (early stopping, quantization steps, the candidates' order) sees the even half only. A
candidate is eligible when the one-sided 95 % upper bound of its paired drop against the dense model
on the EVEN samples is within `--budget` points; the eligible files are put, smallest first, to the same
test on the ODD samples, at most 1 + RECONFIRMATIONS of them (as the budget search does); the first that
passes is chosen, the smallest file that passes both halves (`--previous` sweeps' files included: an
extended grid is one choice, with one count of confirmations). Test is never scored in `sweep`; `final`
reruns the chosen setting on each seed and scores test once per file. `choose` applies the rule to
sweeps of one seed run side by side in separate processes (`--previous A.json B.json --json C.json`);
`final --choice C.json` then reads its choice.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from nncodec_cli.presets import classifier_runs  # noqa: E402
from nncodec_cli.presets import lenet as models  # noqa: E402
from protocol import bits_hex  # noqa: E402

from nncodec.api import load_file  # noqa: E402
from nncodec.api import open as nnc_open  # noqa: E402
from nncodec.compress.spike_slab import SpikeSlab, save_spike_slab  # noqa: E402
from nncodec.compress.training import recipes  # noqa: E402
from nncodec.compress.training.export import search_steps  # noqa: E402
from nncodec.confidence import half_drops  # noqa: E402

BASELINES = Path("/work/artifacts/baselines")
RECONFIRMATIONS = 3  # as nncodec.budget: at most 3 more files are put to the odd half after a refusal
KEYS = ("kl_weight", "lam", "sigma0", "tau", "qtol", "distill")


def correct(model: torch.nn.Module, split: recipes.Split, state=None) -> np.ndarray:
    return models.correctness(copy.deepcopy(model) if state is not None else model, split.x, split.y, state=state)


def halves(split: recipes.Split) -> tuple[recipes.Split, recipes.Split]:
    return recipes.Split(split.x[0::2], split.y[0::2]), recipes.Split(split.x[1::2], split.y[1::2])


def bounds(dense_c: np.ndarray, c: np.ndarray, confidence: float) -> dict[str, float]:
    out = {}
    for name, d in zip(("even", "odd"), half_drops(100.0 * dense_c, 100.0 * c, confidence), strict=True):
        out[f"{name}_drop"], out[f"{name}_upper"] = round(d.drop, 3), round(d.upper, 3)
    return out


def kd_loss(out: torch.Tensor, y: torch.Tensor, teacher: torch.nn.Module | None, x: torch.Tensor, weight: float,
            temperature: float = 2.0) -> torch.Tensor:
    """(1 - weight) * cross-entropy + weight * T^2 * KL(teacher || student) at temperature T (Hinton et al.);
    weight 0 (or no teacher) is plain cross-entropy."""
    ce = F.cross_entropy(out, y)
    if teacher is None or weight <= 0:
        return ce
    with torch.no_grad():
        soft = F.softmax(teacher(x) / temperature, dim=1)
    kl = F.kl_div(F.log_softmax(out / temperature, dim=1), soft, reduction="batchmean")
    return (1 - weight) * ce + weight * temperature**2 * kl


def finetune(m: torch.nn.Module, masks: dict, data, even: recipes.Split, epochs: int, lr: float, seed: int,
             teacher: torch.nn.Module | None = None, distill: float = 0.0) -> list:
    """Cosine-schedule fine-tuning with the mask frozen; keeps the epoch best on the even validation half.
    With `distill` > 0 the loss mixes in distillation from `teacher` (the dense model)."""
    params = dict(m.named_parameters())
    hooks = [params[n].register_hook(lambda g, k=k: g * k) for n, k in masks.items()]
    opt = torch.optim.Adam(m.parameters(), lr=lr)
    loader = recipes.make_loader(data.train, 256, seed + 1000)
    total = max(epochs * len(loader), 1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5 * (1 + math.cos(math.pi * min(t, total) / total)))
    best, best_state, curve = recipes.accuracy(m, even), copy.deepcopy(m.state_dict()), []
    for _ in range(epochs):
        m.train()
        for x, y in loader:
            opt.zero_grad(set_to_none=True)
            kd_loss(m(x), y, teacher, x, distill).backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                for n, k in masks.items():
                    params[n].mul_(k)
        acc = recipes.accuracy(m, even)
        curve.append(round(acc, 2))
        if acc > best:
            best, best_state = acc, copy.deepcopy(m.state_dict())
    for h in hooks:
        h.remove()
    m.load_state_dict(best_state)
    return curve


def qat_file(m: torch.nn.Module, steps: dict, nbytes: int, path: Path, data, even: recipes.Split, ft_even: float,
             qtol: float, names: list[str], seed: int, args) -> tuple[torch.nn.Module, dict, dict]:
    """The quantization-aware candidate of a fine-tuned spike-and-slab model, held to the plain file's limit
    (within `qtol` of the fine-tuned model on the even half): `recipes.qat_candidate` (the mask, derived from
    the PIPs, stays frozen). Writes it over `path` if it is smaller; returns the model and steps in the file."""
    cdata = recipes.ClassifierData(data.train, even, data.test)
    qm, qsteps, tries = recipes.qat_candidate(m, cdata, ft_even - qtol, ft_even, args.qat_tolerance,
                                              epochs=args.qat_epochs, lr=args.qat_lr, names=names,
                                              targets=recipes.TARGETS, loader=recipes.make_loader(data.train, 256, seed + 2000))
    info: dict = {"tries": tries, "plain_bytes": nbytes}
    if qm is None:
        return m, steps, info
    tmp = path.with_suffix(".qat-candidate")
    info["candidate_bytes"] = qbytes = save_spike_slab(qm, tmp, steps=qsteps)
    if qbytes >= nbytes:
        tmp.unlink()
        return m, steps, info
    tmp.replace(path)
    return qm, qsteps, {**info, "bytes": qbytes, "used": True}


def run_config(dense, data, arch, seed, cfg: dict, taus, qtols, args, out: Path, dense_c: np.ndarray) -> list[dict]:
    """One variational run, then per tau a fine-tuned model and per quantization tolerance a file."""
    model = copy.deepcopy(dense)
    torch.manual_seed(seed)
    loader = recipes.make_loader(data.train, 256, seed)
    even = halves(data.val)[0]
    ss = SpikeSlab(model, data_size=len(data.train.x), prior_inclusion=cfg["lam"], prior_sd=cfg["sigma0"],
                   init_phi=args.init_phi, init_sd=args.init_sd, ema=args.ema, kl_weight=cfg["kl_weight"],
                   anneal_steps=round(args.anneal * len(loader)))
    opt = torch.optim.Adam([{"params": list(model.parameters())}, {"params": ss.parameters()}], lr=args.lr)
    total = max(args.epochs * len(loader), 1)
    sched = (torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5 * (1 + math.cos(math.pi * min(t, total) / total)))
             if getattr(args, "cosine", False) else None)  # the variational phase's step size decays to 0
    t0 = time.perf_counter()
    epoch_s = []
    model.train()
    for epoch in range(args.epochs):
        te = time.perf_counter()
        for x, y in loader:
            opt.zero_grad(set_to_none=True)
            (F.cross_entropy(model(x), y) + ss.penalty()).backward()
            opt.step()
            ss.after_step()
            if sched is not None:
                sched.step()
        epoch_s.append(round(time.perf_counter() - te, 1))
        kept = {t: sum(int((p > t).sum()) for p in ss.pips().values()) for t in (0.5, 0.9)}
        print(json.dumps({"kl_weight": cfg["kl_weight"], "epoch": epoch + 1, "seconds": epoch_s[-1], "kept_0.5": kept[0.5],
                          "kept_0.9": kept[0.9]}), flush=True)
    pips = ss.pips()
    ss.release()
    mu = {k: v.detach().clone() for k, v in model.state_dict().items()}
    torch.save({"mu": mu, "pips": pips, "cfg": cfg, "seed": seed, "epochs": args.epochs},
               out / f"variational-kl{cfg['kl_weight']:g}-lam{cfg['lam']:g}-sd{cfg['sigma0']:g}-seed{seed}.pt")
    teacher = copy.deepcopy(dense).eval()
    rows = []
    for tau, distill in ((t, d) for t in taus for d in getattr(args, "distill", [0.0])):
        m = models.build(arch)
        m.load_state_dict(mu)
        masks = {n: p > tau for n, p in pips.items()}
        params = dict(m.named_parameters())
        with torch.no_grad():
            for n, k in masks.items():
                params[n].mul_(k)
        curve = finetune(m, masks, data, even, args.finetune_epochs, args.lr, seed, teacher, distill)
        m.eval()
        m.spike_slab_pips, m.spike_slab_threshold = pips, tau
        ft_even = recipes.accuracy(m, even)
        names = [n for n, _ in m.named_parameters()]
        for qtol in qtols:
            steps = search_steps(m, lambda s, m=m: -recipes.accuracy(m, even, s), -(ft_even - qtol), names=names)
            tag = f"kl{cfg['kl_weight']:g}-lam{cfg['lam']:g}-sd{cfg['sigma0']:g}-tau{tau:g}-q{qtol:g}-seed{seed}"
            tag += f"-kd{distill:g}" if distill else ""
            path = out / f"sweep-{tag}.nnc"
            nbytes = save_spike_slab(m, path, steps=steps)
            fm, qat = m, {}
            if getattr(args, "qat_epochs", 0):  # the quantization-aware candidate (recipes.qat_candidate), kept if smaller
                fm, steps, qat = qat_file(m, steps, nbytes, path, data, even, ft_even, qtol, names, seed, args)
                nbytes = qat.get("bytes", nbytes)
            decoded = load_file(path)
            c = correct(fm, data.val, decoded)
            row = {**cfg, "tau": tau, "qtol": qtol, "distill": distill, "seed": seed, "kept": int(sum(int(k.sum()) for k in masks.values())),
                   "finetune_even_curve": curve, "val": round(100.0 * float(c.mean()), 2), "bytes": nbytes,
                   "ratio": 4 * sum(p.numel() for p in m.parameters()) / nbytes, "file": str(path),
                   **bounds(dense_c, c, args.confidence), "epoch_seconds": epoch_s,
                   "seconds": round(time.perf_counter() - t0, 1), "val_n": int(c.size),
                   "dense_val_correct": bits_hex(dense_c), "val_correct": bits_hex(c),
                   **{f"qat_{k}": v for k, v in qat.items()}}
            if args.test:  # `final` only: scored once per file, after the choice
                row["test"] = recipes.accuracy(fm, data.test, decoded)
                pip_path = out / f"sweep-{tag}-pip.nnc"
                row["bytes_pip"] = save_spike_slab(fm, pip_path, steps=steps, keep_pip=True)
                assert all(torch.equal(v, decoded[k]) for k, v in load_file(pip_path).items()), "PIP file decodes differently"
                with nnc_open(pip_path) as f:
                    row["pip_bytes"] = sum(t.get("pip_bytes", 0) for t in f.info()["tensors"])
                row["pip_bits_per_weight"] = 8 * row["pip_bytes"] / sum(p.numel() for p in pips.values())
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def score_swept(r: dict, arch: str, data, out: Path, dense_c: np.ndarray, confidence: float) -> dict:
    """A sweep file of the chosen setting, scored on test once; its PIP twin written from the decoded
    weights, the file's steps and the sweep's saved PIPs (it must decode to the same values)."""
    decoded = load_file(r["file"])
    with nnc_open(r["file"]) as f:
        steps = {t["name"]: t["step"] for t in f.info()["tensors"] if t.get("step")}
    saved = Path(r["file"]).parent / f"variational-kl{r['kl_weight']:g}-lam{r['lam']:g}-sd{r['sigma0']:g}-seed{r['seed']}.pt"
    m = models.build(arch)
    m.load_state_dict(decoded)
    m.eval()
    row = {**r, "test": recipes.accuracy(m, data.test, decoded), "from_sweep": True}
    c = correct(m, data.val, decoded)
    assert abs(100.0 * float(c.mean()) - r["val"]) < 1e-6, "the sweep file scores differently on validation"
    if not saved.exists():  # sweeps before the state was saved: no PIPs to store
        row["bytes_pip"] = row["pip_bytes"] = row["pip_bits_per_weight"] = None
        print(json.dumps(row), flush=True)
        return row
    state = torch.load(saved, weights_only=True)
    m.spike_slab_pips, m.spike_slab_threshold = state["pips"], r["tau"]
    pip_path = out / (Path(r["file"]).stem + "-pip.nnc")
    row["bytes_pip"] = save_spike_slab(m, pip_path, steps=steps, keep_pip=True)
    assert all(torch.equal(v, decoded[k]) for k, v in load_file(pip_path).items()), "PIP file decodes differently"
    with nnc_open(pip_path) as f:
        row["pip_bytes"] = sum(t.get("pip_bytes", 0) for t in f.info()["tensors"])
    row["pip_bits_per_weight"] = 8 * row["pip_bytes"] / sum(p.numel() for p in state["pips"].values())
    print(json.dumps(row), flush=True)
    return row


def choose(rows: list[dict], budget: float) -> tuple[dict | None, list[dict]]:
    """The smallest file passing the even half that the odd half confirms (at most 1 + RECONFIRMATIONS tried)."""
    eligible = sorted((r for r in rows if r["even_upper"] <= budget + 1e-9), key=lambda r: r["bytes"])
    tried = []
    for r in eligible[: 1 + RECONFIRMATIONS]:
        tried.append({k: r.get(k, 0.0) for k in (*KEYS, "bytes", "even_upper", "odd_upper")})
        if r["odd_upper"] <= budget + 1e-9:
            return r, tried
    return None, tried


def load_dense(arch: str, seed: int, data) -> tuple[torch.nn.Module, np.ndarray]:
    dense = models.build(arch)
    dense.load_state_dict(recipes.load_state(BASELINES / f"{arch}_seed{seed}.safetensors"))
    return dense.eval(), correct(dense, data.val)


def sweep(args: argparse.Namespace, data, out: Path) -> dict:
    dense, dense_c = load_dense(args.arch, args.seed, data)
    print(json.dumps({"dense_val": 100.0 * float(dense_c.mean())}), flush=True)
    earlier = [r for path in args.previous for r in json.loads(Path(path).read_text())["rows"]]
    rows: list[dict] = []
    result: dict = {"args": vars(args), "dense_val": 100.0 * float(dense_c.mean()), "rows": rows}
    for kl in args.kl:
        for lam in args.lams:
            for sd in args.sds:
                cfg = {"kl_weight": kl, "lam": lam, "sigma0": sd}
                rows += run_config(dense, data, args.arch, args.seed, cfg, args.taus, args.qtols, args, out, dense_c)
                result["chosen"], result["tried"] = choose(earlier + rows, args.budget)  # one choice over all
                Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({"chosen": result["chosen"], "tried": result["tried"]}), flush=True)
    return result


def choose_only(args: argparse.Namespace) -> dict:
    """The rule over sweep JSONs run side by side (one per setting, in parallel processes): one choice over
    all their files, as `sweep --previous` makes it after the fact. Their training lengths must agree."""
    sweeps = [json.loads(Path(p).read_text()) for p in args.previous]
    lengths = {tuple(s["args"].get(k) for k in ("epochs", "finetune_epochs", "cosine", "arch", "seed")) for s in sweeps}
    if len(lengths) != 1:
        raise SystemExit(f"the sweeps differ in training lengths, arch or seed: {sorted(map(str, lengths))}")
    rows = [r for s in sweeps for r in s["rows"]]
    chosen, tried = choose(rows, args.budget)
    result = {"args": {**sweeps[0]["args"], "combined_from": list(args.previous)}, "dense_val": sweeps[0]["dense_val"],
              "rows": rows, "chosen": chosen, "tried": tried}
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({"chosen": chosen, "tried": tried}), flush=True)
    return result


def least_bound(rows: list[dict], ratio: float, seed: int) -> dict | None:
    """NOT confirmed: the file of ratio >= `ratio` with the smallest even-half bound, among the swept seed's
    files only (the rows may hold other seeds' sweeps of the same grid, run to stand in for the final)."""
    at = [r for r in rows if r["ratio"] >= ratio and r["seed"] == seed]
    if not at:
        return None
    best = min(at, key=lambda r: (r["even_upper"], r["bytes"]))
    return {**best, "not_confirmed": f"no file passed both halves; smallest even-half bound among >= x{ratio:g}"}


def final(args: argparse.Namespace, data, out: Path) -> dict:
    chosen = json.loads(args.setting) if args.setting else json.loads(Path(args.choice).read_text())["chosen"]
    earlier = [r for path in args.previous for r in json.loads(Path(path).read_text())["rows"]]
    swept = json.loads(Path(args.choice).read_text())["args"]
    if chosen is None and args.if_none_at:
        chosen = least_bound(earlier, args.if_none_at, swept.get("seed", 0))
    if chosen is None:
        raise SystemExit("the sweep chose nothing: no file passed both halves")
    print(json.dumps({"setting": {k: chosen.get(k) for k in (*KEYS, "bytes", "even_upper", "odd_upper", "not_confirmed")}}),
          flush=True)
    for key in ("epochs", "finetune_epochs", "anneal", "init_phi", "init_sd", "ema", "lr", "cosine"):
        if getattr(args, key) is None or key not in ("epochs", "finetune_epochs"):  # lengths: given ones win
            setattr(args, key, swept.get(key, False))
    args.test = True
    cfg = {k: chosen[k] for k in ("kl_weight", "lam", "sigma0")}
    runs, peers, dense_rows = [], [], []
    for seed in args.seeds:
        dense, dense_c = load_dense(args.arch, seed, data)
        dense_rows.append({"seed": seed, "val": 100.0 * float(dense_c.mean()), "test": recipes.accuracy(dense, data.test)})
        args.distill = [chosen.get("distill", 0.0)]
        swept_row = next((r for r in earlier if r["seed"] == seed and all(r.get(k, 0.0) == chosen.get(k, 0.0) for k in KEYS)),
                         None)
        if swept_row is not None:  # the sweep's own file of this seed: scored on test here, once, not retrained
            row = score_swept(swept_row, args.arch, data, out, dense_c, args.confidence)
        else:
            row = run_config(dense, data, args.arch, seed, cfg, [chosen["tau"]], [chosen["qtol"]], args, out, dense_c)[0]
        row["dense_test"], row["drop"] = dense_rows[-1]["test"], dense_rows[-1]["test"] - row["test"]
        runs.append(row)
        for method in args.peer:
            t0 = time.perf_counter()
            r = recipes.compress_classifier(dense, args.arch, data, method, out / f"{method}-seed{seed}.nnc", seed=seed,
                                            progress=False, dense_accuracy=dense_rows[-1]["test"])
            peers.append({"method": method, "seed": seed, "file_bytes": r["file_bytes"], "ratio": r["ratio"],
                          "test": r["compressed_test_accuracy"], "drop": r["accuracy_drop"], "options": r["options"],
                          "seconds": round(time.perf_counter() - t0, 1)})
            print(json.dumps(peers[-1], default=str), flush=True)
        Path(args.json).write_text(json.dumps({"args": vars(args), "chosen": chosen, "dense": dense_rows, "runs": runs,
                                               "peers": peers}, indent=1, default=str) + "\n")
    return {"runs": runs, "peers": peers}


def main() -> None:
    torch.set_num_threads(1)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=("sweep", "final", "choose"))
    ap.add_argument("--data", required=True)
    ap.add_argument("--arch", default="lenet300")
    ap.add_argument("--seed", type=int, default=0, help="sweep: the baseline seed")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="final: baseline seeds")
    ap.add_argument("--choice", help="final: the sweep's JSON (its chosen setting and training lengths)")
    ap.add_argument("--setting", help='final: a setting NOT chosen by the rule, e.g. \'{"kl_weight": 0.02, "lam": 0.001, '
                    '"sigma0": 0.1, "tau": 0.9, "qtol": 0.3}\' (training lengths still from --choice)')
    ap.add_argument("--if-none-at", type=float, default=None, help="final: if the sweep chose nothing, run (labelled NOT "
                    "confirmed) the file of --previous with ratio >= this whose even-half bound is smallest")
    ap.add_argument("--peer", nargs="*", default=[], help="final: methods run through recipes in the same run")
    ap.add_argument("--kl", type=float, nargs="+", default=[0.05])
    ap.add_argument("--lams", type=float, nargs="+", default=[1e-3])
    ap.add_argument("--sds", type=float, nargs="+", default=[0.1])
    ap.add_argument("--taus", type=float, nargs="+", default=[0.9])
    ap.add_argument("--qtols", type=float, nargs="+", default=[0.3])
    ap.add_argument("--distill", type=float, nargs="+", default=[0.0],
                    help="fine-tuning: weights of distillation from the dense model (T = 2) to try [0: plain cross-entropy]")
    ap.add_argument("--qat-epochs", type=int, default=0, help="quantization-aware candidate per file: epochs [0: off]")
    ap.add_argument("--qat-tolerance", type=float, default=1.0, help="its first rung: points below the fine-tuned model")
    ap.add_argument("--qat-lr", type=float, default=3e-4)
    ap.add_argument("--budget", type=float, default=1.0)
    ap.add_argument("--previous", nargs="*", default=[], help="sweep: earlier sweep JSONs whose files take part in the "
                    "choice; final: sweep JSONs whose file of the chosen setting is taken for its seed (not retrained; "
                    "a `sweep --seed S` of the same grid thus stands in for the final's retraining of seed S)")
    ap.add_argument("--confidence", type=float, default=0.95)
    ap.add_argument("--epochs", type=int, default=None, help="variational epochs [10; final: the sweep's]")
    ap.add_argument("--finetune-epochs", type=int, default=None, help="[10; final: the sweep's]")
    ap.add_argument("--anneal", type=float, default=0.0, help="KL annealing, in epochs")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--cosine", action="store_true", help="cosine decay of the variational phase's step size (to 0)")
    ap.add_argument("--init-phi", type=float, default=0.9)
    ap.add_argument("--init-sd", type=float, default=1e-3)
    ap.add_argument("--ema", type=float, default=0.99)
    ap.add_argument("--out", default="/tmp/spike-sweep")
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    args.test = False
    if args.mode == "choose":  # no data, no training: the rule over --previous sweeps, written to --json
        choose_only(args)
        return
    if args.mode == "sweep":
        args.epochs = 10 if args.epochs is None else args.epochs
        args.finetune_epochs = 10 if args.finetune_epochs is None else args.finetune_epochs
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = classifier_runs.load_data(args.data)
    (sweep if args.mode == "sweep" else final)(args, data, out)


if __name__ == "__main__":
    main()
