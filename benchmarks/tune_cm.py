"""Choosing the `cm` model's hyper-parameters (FORMAT.md §21.7) on a text that is NOT the benchmark's:
the King James New Testament (Debian bible-kjv: `bible -f "mat1:1-rev22:21" > nt.txt`, 1,019,475
bytes). Encodes only (the round trip is the tests' job) and prints bytes and bits/byte of the coded
data for the first guess updated by SPEC (JSON), e.g.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/tune_cm.py nt.txt '{"apm": 1}' --streams 64

Session 5 ran the table of RESULTS.md (issue 12, "Text: context mixing") with it, one run at a time.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from nncodec.mdl.cm import CMModel
from nncodec.mdl.cm_driver import code_cm
from nncodec.mdl.sides import EncodeSide

FIRST_GUESS = {"arch": "cm", "orders": [1, 2, 3, 4, 6], "words": 1, "match": 6, "match_bits": 20, "table_bits": 22,
               "limit": 127, "lr": 8, "apm": 0, "mixer": 0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("text")
    ap.add_argument("spec", nargs="?", default="{}", help="JSON members that replace the first guess's")
    ap.add_argument("--streams", type=int, default=64)
    ap.add_argument("--bytes", type=int, default=None, help="only the first BYTES bytes")
    args = ap.parse_args()
    data = Path(args.text).read_bytes()[:args.bytes]
    spec = {**FIRST_GUESS, **json.loads(args.spec)}
    t0 = time.perf_counter()
    side = EncodeSide(np.frombuffer(data, dtype=np.uint8).astype(np.int64))
    code_cm(CMModel(spec), side, len(data), args.streams)
    out = side.coder.finish()
    print(f"{len(out)} B {8 * len(out) / max(1, len(data)):.4f} bits/byte {time.perf_counter() - t0:.1f} s "
          f"streams {args.streams} {json.dumps(json.loads(args.spec))}", flush=True)


if __name__ == "__main__":
    main()
