"""Score the test split once for a file bench_own_loop.py wrote with --skip-test (a sweep run that became a
reported run, e.g. pipeline seed 0 of the chosen configuration): the decoded file, its peer and the dense
model on all test windows; the result JSON gets the test fields it lacks.

    python benchmarks/lm_score_test.py --out DIR RESULT.json [RESULT.json ...]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_own_loop as B  # noqa: E402

from nncodec.api import load_file  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="the directory of the dense model, the files and the results")
    p.add_argument("results", nargs="+")
    a = p.parse_args()
    torch.set_num_threads(1)
    out = Path(a.out)
    config = json.loads((out / "dense.json").read_text())["config"]
    args = argparse.Namespace(**config)
    bench = B.Bench(args)
    model = B.model_dense(bench, out)
    peer = B.build(bench, args.seed)
    peer.load_state_dict(torch.load(out / "dense-peer.pt", weights_only=True))
    peer_test, dense_test = bench.loss(peer, bench.test), bench.loss(model, bench.test)
    for name in a.results:
        path = Path(name)
        r = json.loads(path.read_text())
        if not math.isnan(r.get("test_increase", math.nan)):
            print(f"{path.name}: already scored on test ({100 * r['test_increase']:+.2f} %)")
            continue
        nnc = out / path.name.replace("result-", "lm-").replace(".json", ".nnc")
        test = bench.loss(model, bench.test, load_file(nnc))
        r.update(compressed_test=test, peer_test=peer_test, dense_test=dense_test, test_increase=test / peer_test - 1)
        path.write_text(json.dumps(r, indent=2))
        print(f"{path.name}: test {test:.4f} vs peer {peer_test:.4f}: {100 * r['test_increase']:+.2f} %")


if __name__ == "__main__":
    main()
