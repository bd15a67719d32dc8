"""The peer of benchmarks/scale_memory.py: nncodec before issue 13 (commit 29625be) against this tree,
interleaved on one freshly built 1 GB real-weight sharded checkpoint (encode to one .nnc, then decode
that same file to .safetensors with each). The old code is run from an export of that commit:

    git archive 29625be nncodec cli | tar -x -C /tmp/nnc_main
    mkdir /tmp/nnc_main/pkgs && ln -s ../nncodec /tmp/nnc_main/pkgs/nncodec && ln -s ../cli /tmp/nnc_main/pkgs/nncodec_cli
    python benchmarks/scale_memory_peer.py        # writes /work/artifacts/scale/results/scale_memory_peer.json

Its result is shown as the "peer" table of scale_memory's report (measured 22:00 UTC, load ~0.9).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scale_memory as sm  # noqa: E402

OLD = "/tmp/nnc_main/pkgs"
OUT = Path("/work/artifacts/scale/results/scale_memory_peer.json")


def main() -> None:
    folder = Path("/work/artifacts/scale/mem-peer/real-1gb")
    info = sm.build(folder, 10**9, 250 * 10**6, sm._real_tiles(sm.SOURCE), seed=10)
    idx = folder / "model.safetensors.index.json"
    out = {"checkpoint": info, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_average": os.getloadavg()}

    def both(label: str, argv: list[str]) -> None:
        for who, env in (("nncodec 29625be (before issue 13)", {"PYTHONPATH": OLD}), ("nncodec wip2-stream", {})):
            os.environ.pop("PYTHONPATH", None)
            os.environ.update(env)
            out[f"{label} / {who}"] = sm.measure(argv)
            print(label, who, out[f"{label} / {who}"], flush=True)

    try:
        both("encode -> one .nnc", ["encode", str(idx), "-o", str(folder / "m.nnc"), "-q", "--force"])
        both("decode one .nnc -> .safetensors", ["decode", str(folder / "m.nnc"), "-o", str(folder / "o.safetensors"),
                                                  "-q", "--force"])
    finally:
        shutil.rmtree(folder.parent, ignore_errors=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
