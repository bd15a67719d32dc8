"""benchmarks/scale_fresh.py: one child process per timed call, and the table's ratio is nncodec's
throughput over the peer's (peer seconds / nncodec seconds), so > 1 means nncodec is faster."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from safetensors.numpy import save_file
from script_modules import load_script

fresh = load_script("benchmarks/scale_fresh.py")


def test_child_times_one_nncodec_decode_and_encode(tmp_path):
    import nncodec

    path, coded = tmp_path / "w.safetensors", tmp_path / "w.nnc"
    w = {"w": np.linspace(-1, 1, 20000, dtype=np.float32)}
    save_file(w, str(path))
    coded.write_bytes(nncodec.save(w))
    for op in ("decode", "encode"):
        out = subprocess.run([sys.executable, "-c", fresh.CHILD, "nncodec", op, str(path), str(coded), "float32"],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        seconds, faults = out.stdout.split()
        assert 0 < float(seconds) < 60 and int(faults) >= 0


def test_table_ratio_is_peer_time_over_ours():
    rows = {f"{p} {op}": {"seconds": s, "faults": 0, "mb_s": 1.0}
            for op in ("encode", "decode") for p, s in (("nncodec", 0.002), ("zipnn", 0.004), ("safetensors", 0.001))}
    report = {"date": "d", "rounds": 1, "load_before": "0", "load_after": "0",
              "checkpoints": {"x": {"raw_bytes": 10, "bytes": {}, "rows": rows}}}
    text = fresh.table(report)
    assert "| zipnn decode | 4.00 | 1 | 0 | 2.00x |" in text
    assert "| safetensors encode | 1.00 | 1 | 0 | 0.50x |" in text
