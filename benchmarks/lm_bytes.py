"""Where the bytes of bench_own_loop.py's .nnc files go (issue 15): per tensor group, mask vs levels,
survivors and bits per survivor, small tensors, header. From the file alone (`nncodec.open(...).info()`).

    python benchmarks/lm_bytes.py FILE.nnc [FILE.nnc ...]
"""

from __future__ import annotations

import argparse

import numpy as np

import nncodec


def group(name: str, shape: list[int]) -> str:
    if len(shape) < 2:
        return "small (LayerNorm weights, biases)"
    if name in ("tok.weight", "pos"):
        return "embeddings (tok, pos)"
    if name.startswith("head."):
        return "unembedding (head)"
    return "block Linear weights"


def breakdown(path: str) -> list[tuple[str, int, int, int, int, int]]:
    """(group, bytes, mask bytes, level bytes, parameters, survivors) per group; header as its own row."""
    f = nncodec.open(path, framework="np")
    info = f.info()
    rows: dict[str, list[int]] = {}
    for t in info["tensors"]:
        g = group(t["name"], t["shape"])
        r = rows.setdefault(g, [0, 0, 0, 0, 0])
        parts = {c["kind"]: c["bytes"] for c in t.get("components", [])}
        survivors = int(np.count_nonzero(f.get_tensor(t["name"])))
        r[0] += t["bytes"]
        r[1] += parts.get("mask", 0)
        r[2] += parts.get("levels", 0)
        r[3] += t["numel"]
        r[4] += survivors
    out = [(g, *v) for g, v in rows.items()]
    out.append(("header + preamble", info["header_bytes"] + info["preamble_bytes"] + info["padding_bytes"], 0, 0, 0, 0))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+")
    for path in p.parse_args().files:
        rows = breakdown(path)
        total = sum(r[1] for r in rows)
        print(f"\n{path}: {total:,} B\n")
        print("| group | bytes | share | mask B | levels B | parameters | survivors | bits/parameter | bits/survivor |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for g, b, m, lv, n, s in rows:
            bp = f"{8 * b / n:.2f}" if n else ""
            bs = f"{8 * b / s:.2f}" if s else ""
            print(f"| {g} | {b:,} | {100 * b / total:.1f} % | {m:,} | {lv:,} | {n:,} | {s:,} | {bp} | {bs} |")


if __name__ == "__main__":
    main()
