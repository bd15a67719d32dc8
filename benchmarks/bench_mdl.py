"""Dataset description length: nncodec's two-part and prequential codes against classical
compressors, in one run, every nncodec size a file that `nncodec mdl decode` (a fresh process)
turned back into the input.

    nice -n 10 python benchmarks/bench_mdl.py labels --data-dir /work/shared/data/fashion-mnist
    nice -n 10 python benchmarks/bench_mdl.py text --text kjv.txt --codes prequential   # cm, session 5

Labels: the 60,000 Fashion-MNIST training labels (train-labels-idx1-ubyte, unzipped: 60,008 bytes)
given the training images, plus the uniform code (n log2 10 bits) and the iid marginal (n times the
empirical entropy; the table itself not counted); `--split test` codes the 10,000 test labels given
the test images instead: the development set on which every label-model choice was made (MDL
protocol: no coded length of the 60,000 training labels chooses anything). Text: any file; the one
used in the results is the King James Bible, Genesis 1:1 to Joshua 24:33 (Debian package bible-kjv:
`bible -f "gen1:1-jos24:33" > kjv.txt`, 969,448 bytes, public domain).
Label defaults (session 4's model, session 6's training; chosen on the development set): prequential
`mix` = the plain average of two heads (hidden 64) on patch-PCA features of all images (FORMAT.md
§21.5 `patchpca`: 5x5 patches, 16 filters, split ReLU, 4x4 average pooling), Adam lr 5e-4, weight decay
1e-2, batch 64, 4 passes per block, iterate averaging over the last half of each block's steps
(`train.average` 0.5, §21.3), blocks 32, 45, 64, ... growing by sqrt(2); the file's header is compressed
against header dictionary 1 (§4.6). Two-part: one linear `patchpca` head, 10 epochs, lr 3e-4. Session 4:
`--lr-labels 3e-4 --average-labels 0 --first-block-labels 64 --block-ratio-labels 2`. Session 2's
CNN runs: `--arch-labels cnn --lr-labels 1e-3 --wd-labels 0 --two-part-arch cnn`.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from nncodec import mdl
from nncodec.mdl.kinds import SideInfo

BASELINES = [  # name, command (reads stdin, writes stdout)
    ("gzip -9", ["gzip", "-9", "-n", "-c"]),
    ("bzip2 -9", ["bzip2", "-9", "-c"]),
    ("xz -9e", ["xz", "-9e", "-c"]),
    ("zstd -19", ["zstd", "-19", "-c", "-q"]),
    ("zstd --ultra -22", ["zstd", "--ultra", "-22", "-c", "-q"]),
]


def baselines(data: bytes, tmp: Path) -> list[dict]:
    rows = []
    for name, cmd in BASELINES:
        if shutil.which(cmd[0]) is None:
            rows.append({"name": name, "bytes": None, "note": "not installed"})
            continue
        out = subprocess.run(cmd, input=data, capture_output=True, check=True).stdout
        rows.append({"name": name, "bytes": len(out)})
    if shutil.which("zpaq"):
        src, arc = tmp / "input.bin", tmp / "input.zpaq"
        src.write_bytes(data)
        arc.unlink(missing_ok=True)
        t0 = time.perf_counter()
        subprocess.run(["zpaq", "a", str(arc), str(src), "-m5"], capture_output=True, check=True, cwd=tmp)
        rows.append({"name": "zpaq -m5", "bytes": arc.stat().st_size, "seconds": time.perf_counter() - t0})
    else:
        rows.append({"name": "zpaq -m5", "bytes": None, "note": "not installed (apt-get install zpaq)"})
    return rows


PARTIAL: list = []  # (results so far, path): every finished code is written at once (a run may be stopped)
LAST_CHILD_CPU = [0.0]  # CPU seconds of the last fresh-process decode


def decode_in_fresh_process(nnc: Path, out: Path, side: Path | None) -> float:
    cmd = [sys.executable, "-c", "import sys; from nncodec_cli.main import main; sys.argv[0] = 'nncodec'; main()",
           "mdl", "decode", str(nnc), "-o", str(out), "--force"]
    if side is not None:
        cmd += ["--labels-for", str(side)]
    t0, c0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, check=True, capture_output=True)
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    LAST_CHILD_CPU[0] = (c1.ru_utime + c1.ru_stime) - (c0.ru_utime + c0.ru_stime)
    return time.perf_counter() - t0


def run_code(name: str, data: bytes, settings: mdl.EncodeSettings, side: SideInfo | None, side_path: Path | None,
             tmp: Path, levels: tuple[str, ...], keep: str | None = None) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    out, report = mdl.encode(data, settings, side, levels=levels, log=lambda m: print("   ", m, flush=True))
    enc_s, enc_cpu = time.perf_counter() - t0, time.process_time() - c0
    nnc = tmp / f"{name}.nnc"
    nnc.write_bytes(out)
    if keep:  # the files themselves, for inspection (nncodec info) or a later fresh decode
        Path(keep).mkdir(parents=True, exist_ok=True)
        (Path(keep) / f"{name.replace(' ', '_').replace('(', '').replace(')', '')}.nnc").write_bytes(out)
    back = tmp / f"{name}.out"
    dec_s = decode_in_fresh_process(nnc, back, side_path)
    same = back.read_bytes() == data
    if not same:
        raise SystemExit(f"{name}: decode did not reproduce the input")
    inproc = None
    if report.code == "two-part":  # coding speed without process start-up (one thread)
        t0 = time.perf_counter()
        assert mdl.decode(out, side) == data
        inproc = time.perf_counter() - t0
    row = {"name": name, "bytes": len(out), "decode_inprocess_s": inproc, "data_bytes": report.data_bytes, "model_bytes": report.model_bytes,
           "level": report.level, "curve": report.curve, "encode_s": enc_s, "decode_s": dec_s, "decoded_exactly": same,
           "train_loss": report.train_loss, "encode_cpu_s": enc_cpu, "decode_cpu_s": LAST_CHILD_CPU[0],
           "load_average": os.getloadavg(), "finished_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}
    print(f"  {name}: {len(out):,} B, encode {enc_s:.0f} s ({enc_cpu:.0f} s CPU), decode (fresh process) {dec_s:.0f} s "
          f"({LAST_CHILD_CPU[0]:.0f} s CPU), exact; load {os.getloadavg()[0]:.1f}", flush=True)
    if PARTIAL:
        PARTIAL[0]["rows"].append(row)
        Path(PARTIAL[1]).write_text(json.dumps(PARTIAL[0], indent=1))
    return row


def table(rows: list[dict], n: int, unit: str) -> str:
    lines = [f"| code | bytes | bits/{unit} |", "|---|---:|---:|"]
    for r in rows:
        if r.get("bytes") is None:
            lines.append(f"| {r['name']} | – ({r.get('note', '')}) | – |")
        else:
            lines.append(f"| {r['name']} | {r['bytes']:,} | {8 * r['bytes'] / n:.4f} |")
    return "\n".join(lines)


PATCHPCA = {"arch": "patchpca", "shape": [28, 28], "kernel": 5, "filters": 16, "pool": 4, "classes": 10}
MIX_HIDDEN = ([64], [64])  # the heads averaged by the `mix` default (chosen on the dev set and by CPU cost)


def labels_spec(arch: str, hidden: int, channels: str, kernel: int) -> dict:
    """MLP 784-hidden-10; a CNN: 5x5 convolutions of `channels` (comma-separated), each with ReLU
    and 2x2 max-pooling, then a linear layer to the 10 classes (hidden = 0: none before it); a head
    on patch-PCA features (5x5 patches, 16 filters, split ReLU, 4x4 average pooling: 1568 features);
    or `mix`: the equal average of two such heads (hidden 64; seeds s and s + 1)."""
    if arch == "mlp":
        return {"arch": "mlp", "inputs": 784, "hidden": [hidden], "classes": 10}
    if arch == "patchpca":
        return {**PATCHPCA, "hidden": [hidden] if hidden else []}
    if arch == "mix":
        return {"arch": "mix", "members": [{**PATCHPCA, "hidden": list(h)} for h in MIX_HIDDEN], "temps": ["1"],
                "share": "1"}
    return {"arch": "cnn", "shape": [28, 28], "channels": [int(c) for c in channels.split(",")], "kernel": kernel,
            "hidden": [hidden] if hidden else [], "classes": 10}


def labels_bench(args, tmp: Path) -> dict:
    d = Path(args.data_dir)
    prefix = "train" if args.split == "train" else "t10k"  # t10k: the development set (choices are made on it)
    data = gzip.decompress((d / f"{prefix}-labels-idx1-ubyte.gz").read_bytes())
    images = d / f"{prefix}-images-idx3-ubyte.gz"
    side = SideInfo.from_path(images)
    labels = np.frombuffer(data[8:], dtype=np.uint8)
    n = len(labels)
    counts = np.bincount(labels, minlength=10)
    p = counts[counts > 0] / n
    rows = [{"name": "uniform code (n log2 10)", "bytes": math.ceil(n * math.log2(10) / 8)},
            {"name": "iid marginal (n H, table free)", "bytes": math.ceil(-n * float((p * np.log2(p)).sum()) / 8)},
            *baselines(data, tmp)]
    cfg = mdl.TrainConfig(lr=args.lr_labels, batch=64, epochs=args.epochs_labels, min_steps=50,
                          weight_decay=args.wd_labels, average=args.average_labels)
    spec = labels_spec(args.arch_labels, args.hidden_labels, args.channels_labels, args.kernel)
    if args.json:
        PARTIAL[:] = [{"dataset": f"Fashion-MNIST {args.split} labels given images", "n": n, "rows": list(rows),
                       "settings": vars(args)}, args.json + ".partial"]
    if "two-part" in args.codes:
        two_spec = labels_spec(args.two_part_arch, args.two_part_hidden, args.two_part_channels, args.kernel)
        two_cfg = mdl.TrainConfig(lr=args.two_part_lr, batch=64, epochs=args.two_part_epochs, min_steps=50,
                                  weight_decay=args.wd_labels)
        s = mdl.EncodeSettings(kind="labels", spec=two_spec, train=two_cfg, seed=args.seeds[0])
        print("labels two-part", flush=True)
        rows.append(run_code("nncodec two-part", data, s, side, images, tmp, tuple(args.levels_labels.split(","))))
    for seed in args.seeds if "prequential" in args.codes else []:
        s = mdl.EncodeSettings(kind="labels", prequential=True, spec=spec, train=cfg, seed=seed,
                               first_block=args.first_block_labels, block_ratio=args.block_ratio_labels)
        print(f"labels prequential, seed {seed}", flush=True)
        rows.append(run_code(f"nncodec prequential (seed {seed})", data, s, side, images, tmp, (), args.keep))
    return {"dataset": f"Fashion-MNIST {args.split} labels given images", "n": n, "input_bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(), "rows": rows, "unit": "label"}


def text_bench(args, tmp: Path) -> dict:
    data = Path(args.text).read_bytes()
    n = len(data)
    rows = baselines(data, tmp)
    spec = {"arch": "lstm", "alphabet": 256, "emb": args.emb, "hidden": args.hidden}
    cfg = mdl.TrainConfig(lr=3e-3, batch=args.batch_text, seqlen=args.seqlen_text, epochs=args.epochs_text, min_steps=50)
    if args.text_model == "cm" and "prequential" in args.codes:
        # integer context mixing (FORMAT.md §21.7): deterministic, no seed, so one run; its defaults
        # (cm.DEFAULT_CM_SPEC, codes.auto_cm_streams) were chosen on the New Testament, not on this text
        from nncodec.mdl.cm import default_cm_spec

        print("text prequential, cm", flush=True)
        s = mdl.EncodeSettings(kind="bytes", prequential=True, spec=default_cm_spec(n), streams=args.streams_text)
        rows.append(run_code("nncodec prequential (cm)", data, s, None, None, tmp, ()))
    for seed in args.seeds if "prequential" in args.codes and args.text_model == "lstm" else []:
        print(f"text prequential, seed {seed}", flush=True)
        s = mdl.EncodeSettings(kind="bytes", prequential=True, spec=spec, train=cfg, seed=seed)
        rows.append(run_code(f"nncodec prequential (seed {seed})", data, s, None, None, tmp, ()))
    if "two-part" in args.codes:
        print("text two-part", flush=True)
        two_cfg = mdl.TrainConfig(lr=3e-3, batch=args.batch_text, seqlen=args.seqlen_text,
                                  epochs=args.two_part_epochs_text, min_steps=50)
        s = mdl.EncodeSettings(kind="bytes", spec=spec, train=two_cfg, seed=args.seeds[0])
        rows.append(run_code("nncodec two-part", data, s, None, None, tmp, tuple(args.levels.split(","))))
    return {"dataset": f"text {Path(args.text).name}", "n": n, "input_bytes": n,
            "sha256": hashlib.sha256(data).hexdigest(), "rows": rows, "unit": "byte"}


def speed_bench(args) -> None:
    """Coding speed of the two-part code's data pass (encode, then decode) under a seeded model:
    CPU seconds of this process on one thread (the machine is shared, so wall time says little)."""
    from nncodec.mdl.codes import code_block
    from nncodec.mdl.member import DatasetMember
    from nncodec.mdl.models import build
    from nncodec.mdl.sides import DecodeSide, EncodeSide

    rng = np.random.default_rng(0)
    cases = [("labels, MLP 784-16-10", "labels", {"arch": "mlp", "inputs": 784, "hidden": [16], "classes": 10},
              60000, rng.integers(0, 256, (60000, 28, 28), dtype=np.uint8)),
             ("bytes, LSTM emb 16 hidden 64", "bytes", {"arch": "lstm", "alphabet": 256, "emb": 16, "hidden": 64},
              200000, None),
             ("bytes, LSTM emb 16 hidden 128", "bytes", {"arch": "lstm", "alphabet": 256, "emb": 16, "hidden": 128},
              200000, None)]
    for name, kind, spec, n, inputs in cases:
        symbols = rng.integers(0, spec.get("classes", 256), n)
        member = DatasetMember(0, kind, "two-part", n, spec.get("classes", 256), "0" * 64, spec, 0, {}, 128,
                               {"sha256": "0" * 64, "shape": [n, 28, 28]} if kind == "labels" else None)
        model = build(spec, 0)
        code_block(model, member, EncodeSide(symbols), 0, min(n, 4096), inputs)  # warm-up (first-call costs)
        enc = EncodeSide(symbols)
        t0, c0 = time.perf_counter(), time.process_time()
        code_block(model, member, enc, 0, n, inputs)
        payload = enc.coder.finish()
        t1, c1 = time.perf_counter(), time.process_time()
        dec = DecodeSide(payload, n)
        code_block(model, member, dec, 0, n, inputs)
        dec.coder.finish()
        t2, c2 = time.perf_counter(), time.process_time()
        assert np.array_equal(dec.symbols, symbols)
        print(f"{name}: {n:,} symbols; encode {n / (c1 - c0):,.0f} sym/s CPU ({n / (t1 - t0):,.0f} wall), "
              f"decode {n / (c2 - c1):,.0f} sym/s CPU ({n / (t2 - t1):,.0f} wall)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["labels", "text", "speed"])
    ap.add_argument("--data-dir", default="/work/shared/data/fashion-mnist")
    ap.add_argument("--text", help="text file for `text`")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--codes", default="prequential,two-part", help="which nncodec codes to run (comma-separated)")
    ap.add_argument("--epochs-labels", type=float, default=4.0, help="prequential: passes per block over all data so far")
    ap.add_argument("--split", choices=["train", "test"], default="train",
                    help="labels: train = the 60,000 coded labels; test = the 10,000 of the development set")
    ap.add_argument("--arch-labels", choices=["mlp", "cnn", "patchpca", "mix"], default="mix",
                    help="prequential model for labels")
    ap.add_argument("--lr-labels", type=float, default=5e-4, help="labels: Adam learning rate")
    ap.add_argument("--average-labels", type=float, default=0.5,
                    help="labels, prequential: code with the mean of the last iterates of each block's training (0: off)")
    ap.add_argument("--first-block-labels", type=int, default=32, help="labels, prequential: first block")
    ap.add_argument("--block-ratio-labels", type=float, default=2 ** 0.5,
                    help="labels, prequential: each block end is this times the previous one (2 = doubling)")
    ap.add_argument("--keep", help="copy every nncodec file into this directory")
    ap.add_argument("--wd-labels", type=float, default=1e-2, help="labels: Adam weight decay")
    ap.add_argument("--hidden-labels", type=int, default=0, help="hidden width (cnn: 0 = no hidden layer)")
    ap.add_argument("--channels-labels", default="16,32", help="cnn: channels of the 5x5 convolutions")
    ap.add_argument("--kernel", type=int, default=5, help="cnn: convolution kernel size")
    ap.add_argument("--two-part-arch", choices=["mlp", "cnn", "patchpca"], default="patchpca")
    ap.add_argument("--two-part-hidden", type=int, default=0)
    ap.add_argument("--two-part-channels", default="8,16")
    ap.add_argument("--levels-labels", default="4/1,2/1,1/1,1/2,1/4,1/8")
    ap.add_argument("--two-part-epochs", type=float, default=10.0)
    ap.add_argument("--two-part-lr", type=float, default=3e-4, help="labels, two-part: Adam learning rate (session 4's)")
    ap.add_argument("--text-model", choices=["cm", "lstm"], default="cm",
                    help="text, prequential: cm = context mixing (§21.7, deterministic: one run); lstm = session 1's")
    ap.add_argument("--streams-text", type=int, default=None, help="text: lock-step streams [default: automatic]")
    ap.add_argument("--emb", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--epochs-text", type=float, default=2.0)
    ap.add_argument("--batch-text", type=int, default=16)
    ap.add_argument("--seqlen-text", type=int, default=64)
    ap.add_argument("--two-part-epochs-text", type=float, default=3.0)
    ap.add_argument("--levels", default="1/8,1/16,1/32")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    if args.what == "speed":
        return speed_bench(args)
    with tempfile.TemporaryDirectory() as t:
        res = labels_bench(args, Path(t)) if args.what == "labels" else text_bench(args, Path(t))
    res["settings"] = vars(args)
    print(f"\n{res['dataset']}: n = {res['n']:,}, input {res['input_bytes']:,} bytes")
    print(table(res["rows"], res["n"], res["unit"]))
    for r in res["rows"]:
        if r.get("curve"):
            print(f"\nMDL curve ({r['name']}):")
            for c in r["curve"]:
                print(f"  {c['level']:>8}: model part {c['model_bytes']:,} + data {c['data_bytes']:,} = {c['file_bytes']:,}")
        if "encode_s" in r:
            print(f"{r['name']}: encode {r['encode_s']:.1f} s, decode {r['decode_s']:.1f} s "
                  f"({res['n'] / r['decode_s']:,.0f} symbols/s decode incl. process start)")
            if r.get("decode_inprocess_s"):
                print(f"  in-process decode {r['decode_inprocess_s']:.2f} s: "
                      f"{res['n'] / r['decode_inprocess_s']:,.0f} symbols/s on one thread")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
