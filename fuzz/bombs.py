"""Header and container bombs of issue 9 (finding 2, container side), each crafted with correct
checksums and run through every public read path in its own process, under a 4 GiB address-space
limit: prints the outcome, CPU seconds and peak RSS of each (the figures of the closing note).

    nice -n 19 python fuzz/bombs.py            # all classes
    python fuzz/bombs.py empty_31k             # one class, every path
    BOMB_PATHS=load_np,load_pt python fuzz/bombs.py constant_4096
"""

from __future__ import annotations

import base64
import json
import os
import resource
import subprocess
import sys
import time
import zlib

import numpy as np
import zstandard

PATHS = ("open", "info", "components", "load_np", "load_pt", "verify")
AS_LIMIT = 4 << 30


def _file(text: bytes, tail: bytes = b"", zstd: bool = False, level: int = 19) -> bytes:
    from nncodec.container.format import HEADER_JSON, HEADER_ZSTD, PREAMBLE_SIZE, Preamble

    stored = zstandard.ZstdCompressor(level=level, write_content_size=True).compress(text) if zstd else text
    pre = Preamble(1, 0, HEADER_ZSTD if zstd else HEADER_JSON, len(stored), PREAMBLE_SIZE + len(stored) + len(tail),
                   zlib.crc32(stored)).pack()
    return pre + stored + tail


def _padded(tensors: dict, sections: list[bytes], junk: int = 0, target: int = 0, level: int = 3) -> bytes:
    """A zstd-header file; incompressible `junk` keeps the expansion ratio low, an `x-pad` section
    brings the file to `target` bytes (what the per-entry rule asks for)."""
    noise = base64.b64encode(os.urandom(junk)).decode() if junk else ""
    pad = b""
    for _ in range(3):
        table = [[len(s), zlib.crc32(s)] for s in sections] + [[len(pad), zlib.crc32(pad), "x-pad"]]
        header = {"tensors": tensors, "sections": table, **({"x-junk": noise} if noise else {})}
        text = json.dumps(header, separators=(",", ":")).encode()
        body = b"".join(sections)
        size = len(_file(text, body + pad, zstd=True, level=level))
        if size >= target:
            break
        pad = os.urandom(target - size + len(pad) + 64)
    return _file(text, body + pad, zstd=True, level=level)


def craft(name: str) -> bytes:
    if name == "regex_2k":  # the old depth regex: ~118 bytes of stack per string character
        return _file(b'{"x-a":"' + b"a" * 2000 + b'","tensors":{}}')
    if name == "regex_1m":
        return _file(b'{"x-a":"' + b'a\\"' * 330_000 + b'","tensors":{}}')
    if name == "sections_4m":  # 4 M sections in a few KB (zstd)
        return _file(b'{"tensors":{},"sections":[' + b",".join([b"[0,0]"] * 4_000_000) + b"]}", zstd=True, level=3)
    if name == "deep_dicts":
        return _file(b'{"x-d":[' + b",".join([b'{"a":{"b":{"c":{"d":{}}}}}'] * 300_000) + b'],"tensors":{}}',
                     zstd=True, level=3)
    if name == "json_lists_1m":  # the most Python objects per byte a 1 MB JSON header can hold
        return _file(b'{"x-l":[' + b",".join([b"[]"] * 330_000) + b'],"tensors":{}}')
    if name == "json_lists_16x":  # the most Python objects a 1 MB zstd header may expand to
        noise = base64.b64encode(os.urandom(1_000_000)).decode().encode()
        text = b'{"x-n":"' + noise + b'","x-l":[' + b",".join([b"[]"] * 4_700_000) + b'],"tensors":{}}'
        return _file(text, zstd=True, level=3)
    if name in ("empty_700k", "empty_31k"):
        n = 700_000 if name == "empty_700k" else 30_500
        tensors = {f"t{i}": {"dtype": "bool", "shape": [0], "raw": {"s": i, "codec": "copy"}} for i in range(n)}
        if name == "empty_700k":
            table = [[0, 0]] * n
            return _file(json.dumps({"tensors": tensors, "sections": table}, separators=(",", ":")).encode(), zstd=True,
                         level=3)
        return _padded(tensors, [b""] * n, junk=130_000, target=32 * (n + 1) + 64)
    if name == "aliases_x_tensors":  # get_tensor was O(aliases) per call
        n, k = 5_000, 60_000
        tensors = {f"t{i}": {"dtype": "bool", "shape": [0], "raw": {"s": i, "codec": "copy"}} for i in range(n)}
        tensors.update({f"a{i}": {"alias": f"t{i % n}"} for i in range(k)})
        return _padded(tensors, [b""] * n, junk=100_000, target=32 * (n + 1) + 8 * k + 64)
    if name == "constant_4096":  # 4,096 constant float32 tensors of 2^26 elements: 1 TiB in total
        from nncodec.codecs import ans

        n = 2**26
        levels = ans.encode_with_table(np.zeros(n, np.int64))
        step = np.float32(0.5).tobytes()
        tensors, sections = {}, []
        for i in range(4096):
            tensors[f"c{i}"] = {"dtype": "float32", "shape": [n], "q": {"mode": "uniform"},
                                "levels": {"s": 2 * i, "codec": "ans"}, "quantizer": {"s": 2 * i + 1, "codec": "f32"}}
            sections += [levels, step]
        return _padded(tensors, sections, junk=60_000, target=32 * (len(sections) + 1) + 64)
    if name == "wide_empty_shape":
        text = json.dumps({"tensors": {"e": {"dtype": "float32", "shape": [0, 2**53 - 1, 2**53 - 1],
                                             "raw": {"s": 0, "codec": "copy"}}}, "sections": [[0, 0]]}).encode()
        return _file(text)
    raise KeyError(name)


CLASSES = ("regex_2k", "regex_1m", "sections_4m", "deep_dicts", "json_lists_1m", "json_lists_16x", "empty_700k",
           "empty_31k",
           "aliases_x_tensors", "constant_4096", "wide_empty_shape")


def run_path(path: str, file: str) -> None:
    """In the child: one public path on `file`; prints outcome, CPU seconds and peak RSS as JSON."""
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))
    import nncodec

    t0 = time.process_time()
    outcome = "ok"
    try:
        if path == "open":
            nncodec.open(file).close()
        elif path == "info":
            with nncodec.open(file) as f:
                f.info()
        elif path == "components":
            with nncodec.open(file) as f:
                for name in f:
                    f.components(name)
        elif path == "load_np":
            with nncodec.open(file, framework="np") as f:
                f.check_memory()
                for name in f:
                    f.get_tensor(name)
        elif path == "load_pt":
            nncodec.load_file(file)
        elif path == "verify":
            with nncodec.open(file) as f:
                f.verify()
    except nncodec.NNCodecError as e:
        outcome = f"{type(e).__name__}: {str(e)[:90]}"
    except BaseException as e:  # a foreign exception is a finding
        outcome = f"FOREIGN {type(e).__name__}: {str(e)[:90]}"
    cpu = time.process_time() - t0
    rss = _vm_hwm_kb() / 1024  # this process's own peak (ru_maxrss would include the parent's, from before exec)
    print(json.dumps({"outcome": outcome, "cpu_s": round(cpu, 2), "peak_rss_mb": round(rss)}))


def _vm_hwm_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def main(names: list[str]) -> None:
    workdir = os.environ.get("BOMB_DIR", "/tmp/nncodec-bombs")
    os.makedirs(workdir, exist_ok=True)
    for name in names or CLASSES:
        data = craft(name)
        file = os.path.join(workdir, f"{name}.nnc")
        with open(file, "wb") as f:
            f.write(data)
        for path in os.environ.get("BOMB_PATHS", ",".join(PATHS)).split(","):
            t0 = time.time()
            try:
                r = subprocess.run([sys.executable, __file__, "--child", path, file], capture_output=True, text=True,
                                   timeout=300)
                line = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else f"exit {r.returncode}: {r.stderr[-200:]}"
            except subprocess.TimeoutExpired:
                line = "TIMEOUT after 300 s"
            print(f"{name:18} {len(data):>9,} B  {path:10} wall {time.time() - t0:6.1f} s  {line}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        run_path(sys.argv[2], sys.argv[3])
    else:
        main(sys.argv[1:])
