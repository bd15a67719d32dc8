"""Issue 9, findings 1 and 2 (decoder side): no input ends the process, and decoding a tensor never
takes memory out of proportion to the output it declares.

Each file is crafted here (correct CRCs). The ones that could take the machine down if a guard
regressed run in a subprocess under RLIMIT_AS, which asserts a typed NNCodecError and no signal.
The memory model (nncodec/decode_memory.py) is checked against tracemalloc, which sees every numpy
allocation, with the chunk sizes shrunk so that the per-element terms dominate.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import nncodec
from nncodec import components, decode_memory
from nncodec.codecs import ans, levels_ctx, mask, mask_ctx, raw, zstd
from nncodec.codecs.base import EncodeOptions
from nncodec.codecs.binary import encode_uvarints
from nncodec.container.reader import Container
from nncodec.container.writer import assemble
from nncodec.dtypes import DTYPES
from nncodec.tensorfile import open_tensor_file

ROOT = Path(__file__).resolve().parent.parent
STEP = np.array([0.5], "<f4").tobytes()
ONE_SYMBOL = ans.CountTable(3, np.array([1], np.uint64)).to_bytes()  # every level is 3, no words


def quant(dtype: str, shape, parts: list[tuple[str, str, bytes, dict | None]], sections: list[bytes]) -> dict:
    entry = {"dtype": dtype, "shape": list(shape), "q": {"mode": "uniform"}}
    for kind, codec, payload, params in parts + [("quantizer", "f32", STEP, None)]:
        entry[kind] = {"s": len(sections), "codec": codec, **({"p": params} if params else {})}
        sections.append(payload)
    return entry


def one_tensor(entry_parts, dtype="bfloat16", shape=(4,)) -> bytes:
    sections: list[bytes] = []
    return assemble({"tensors": {"t": quant(dtype, shape, entry_parts, sections)}}, sections)


def skewed_stream() -> bytes:
    """A two-symbol table where a symbol costs ~1e-7 bits: a few bytes may claim billions of symbols."""
    return ans.CountTable(0, np.array([2**53 - 2, 1], np.uint64)).to_bytes() + ans.StreamEncoder().to_bytes()


def bf16_levels_bomb(n: int = 2**33) -> bytes:
    return one_tensor([("levels", "ans", skewed_stream(), None)], shape=(n,))


def bf16_mask_bomb(n: int = 2**33) -> bytes:
    return one_tensor([("mask", "ans", skewed_stream(), None), ("levels", "ans", ONE_SYMBOL, None)], shape=(n,))


def vector_with_huge_bool() -> bytes:
    """The bool_and_ints vector with its bool tensor's shape edited to 131072 x 131072 (2**34 elements)."""
    with Container((ROOT / "spec" / "vectors" / "bool_and_ints.nnc").read_bytes()) as c:
        body = {k: v for k, v in c.header.items() if k not in ("sections", "align")}
        sections = [c.read_section(s.index) for s in c.sections]
    body["tensors"]["flags"]["shape"] = [131072, 131072]
    return assemble(body, sections)


# ------------------------------------------------------------------ the process must survive (subprocess)


def run_isolated(data: bytes, tmp_path: Path, address_space: int = 3 * 2**30) -> str:
    """Every public path on `data` in a child under RLIMIT_AS; returns its report, fails on a signal."""
    path = tmp_path / "bomb.nnc"
    path.write_bytes(data)
    script = textwrap.dedent(f"""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, ({address_space}, {address_space}))
        import nncodec
        path = {str(path)!r}
        def attempt(what, fn):
            try:
                fn()
                print(what, "ok")
            except nncodec.NNCodecError as exc:
                print(what, type(exc).__name__)
        def each(method):
            def go():
                with nncodec.open(path, framework="np") as f:
                    for name in f.keys():
                        getattr(f, method)(name)
            return go
        attempt("get_tensor", each("get_tensor"))
        attempt("components", each("components"))
        attempt("load_file", lambda: nncodec.load_file(path))
        attempt("load", lambda: nncodec.load(open(path, "rb").read(), framework="np"))
        def info():
            with nncodec.open(path) as f:
                f.info()
        attempt("info", info)
        def verify():
            with nncodec.open(path) as f:
                f.verify()
        attempt("verify", verify)
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"exit {run.returncode} (a negative code is a signal): {run.stdout}{run.stderr}"
    return run.stdout


@pytest.mark.parametrize("make", [bf16_levels_bomb, bf16_mask_bomb, vector_with_huge_bool])
def test_huge_ans_tensors_are_refused_on_every_path_without_abort(make, tmp_path):
    data = make()
    assert len(data) < 2000
    out = run_isolated(data, tmp_path)
    lines = dict(line.split() for line in out.splitlines())
    assert set(lines) == {"get_tensor", "components", "load_file", "load", "info", "verify"}, out
    for path in ("get_tensor", "components", "load_file", "load", "verify"):
        assert lines[path] == "LimitExceededError", out
    assert lines["info"] == "ok", out  # info reports without decoding a tensor this large


def test_the_memory_check_is_made_before_anything_is_allocated():
    """The 2**33-element files are refused in microseconds: nothing was decoded or allocated."""
    for data in (bf16_levels_bomb(), bf16_mask_bomb(), vector_with_huge_bool()):
        with nncodec.open(data, framework="np") as f:
            name = "flags" if "flags" in f.keys() else "t"
            start = time.perf_counter()
            with pytest.raises(nncodec.LimitExceededError):
                f.get_tensor(name)
            with pytest.raises(nncodec.LimitExceededError):
                f.components(name)
            assert time.perf_counter() - start < 1


def test_a_configurable_cap_refuses_what_would_fit_in_memory():
    data = one_tensor([("levels", "ans", ONE_SYMBOL, None)], shape=(2**20,))
    capped = nncodec.Limits(max_decode_memory_bytes=2**20)
    with nncodec.open(data, framework="np", limits=capped) as f, pytest.raises(nncodec.LimitExceededError, match="limit"):
        f.get_tensor("t")
    with nncodec.open(data, framework="np") as f:
        assert (f.get_tensor("t") == 0x3FC0).all()  # 3 x 0.5 = 1.5 as bfloat16


# ------------------------------------------------------------------ bounded memory (tracemalloc)


def traced_peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_constant_quantized_tensor_costs_its_output_only():
    """235-byte file, bf16 of 2**26 elements: 128 MiB of output (format 1's decoder took 3.3 GiB)."""
    n = 2**26
    data = one_tensor([("levels", "ans", ONE_SYMBOL, None)], shape=(n,))
    assert len(data) < 300
    with nncodec.open(data, framework="np") as f:
        peak = traced_peak(lambda: f.get_tensor("t"))
    assert peak < 2 * n + 32 * 2**20, peak


def test_a_constant_lossless_float64_planes_tensor_costs_its_output_only():
    n = 2**24
    split, widths = raw._stream_widths(DTYPES["float64"])
    one = ans.CountTable(0, np.array([1], np.uint64)).to_bytes()
    part = {"s": 0, "codec": "planes", "p": {"split": split, "streams": [["ans", len(one)]] * len(widths)}}
    data = assemble({"tensors": {"t": {"dtype": "float64", "shape": [n], "raw": part}}}, [one * len(widths)])
    assert len(data) < 300
    with nncodec.open(data, framework="np") as f:
        peak = traced_peak(lambda: f.get_tensor("t"))
    assert peak < 8 * n + 64 * 2**20, peak


def test_a_zero_element_tensor_with_2_29_rows_allocates_nothing_per_row():
    head = encode_uvarints(np.array([2], np.uint64)) + ans.CountTable(0, np.array([1], np.uint64)).to_bytes() * 3
    data = one_tensor([("levels", "ans-rowclass", head + ans.StreamEncoder().to_bytes(), None)],
                      dtype="float32", shape=(2**29, 0))
    with nncodec.open(data, framework="np") as f:
        peak = traced_peak(lambda: (f.get_tensor("t"), f.components("t"), f.info(), f.verify()))
        assert f.get_tensor("t").shape == (2**29, 0)
    assert peak < 2**20, peak


def test_load_file_checks_the_total_of_all_tensors():
    """4,096 constant tensors of 256 MiB each (1 TiB in all, within max_total_decoded_bytes)."""
    sections: list[bytes] = []
    tensors = {f"t{i}": quant("float32", (2**26,), [("levels", "ans", ONE_SYMBOL, None)], sections) for i in range(4096)}
    data = assemble({"tensors": tensors}, sections)
    assert len(data) < 2**20
    start = time.perf_counter()
    with pytest.raises(nncodec.LimitExceededError, match="4096 tensors"):
        nncodec.load(data, framework="np")
    assert time.perf_counter() - start < 10


def test_info_decodes_a_bounded_number_of_elements_for_sparsity(monkeypatch):
    sections: list[bytes] = []
    tensors = {f"t{i}": quant("float32", (2**20,), [("levels", "ans", ONE_SYMBOL, None)], sections) for i in range(2000)}
    data = assemble({"tensors": tensors}, sections)
    assert len(data) < 2**20
    decoded = []
    with nncodec.open(data) as f:
        real = f._tf.components_of
        monkeypatch.setattr(f._tf, "components_of", lambda e: decoded.append(e.name) or real(e))
        report = f.info()
    with_sparsity = [t["name"] for t in report["tensors"] if "sparsity" in t]
    assert with_sparsity == decoded == [f"t{i}" for i in range(2**24 // 2**20)]
    assert all(t["step"] == 0.5 for t in report["tensors"])


def test_ans_rows_decodes_many_rows_in_a_few_calls(monkeypatch):
    rows, row_len = 20_000, 4
    m = np.zeros((rows, row_len), bool)
    m[::2, :1] = True
    m[1::2, :2] = True  # counts alternate 1, 2, 1, 2, ...: no two neighbours share a model
    m[5000:9000] = False
    m[5000:9000, 0] = True  # and a long run of rows with one count
    payload = mask._encode_rows(m.reshape(-1), rows)
    data = one_tensor([("mask", "ans-rows", payload, None), ("levels", "ans", ONE_SYMBOL, None)],
                      dtype="float32", shape=(rows, row_len))
    calls = []
    for method in ("decode_into", "decode_per_symbol"):
        real = getattr(ans.StreamDecoder, method)
        monkeypatch.setattr(ans.StreamDecoder, method, lambda self, *a, _r=real, _m=method: calls.append(_m) or _r(self, *a))
    with nncodec.open(data, framework="np") as f:
        assert np.array_equal(f.components("t").mask, m)
    assert calls == ["decode_per_symbol", "decode_into", "decode_per_symbol"]  # format 1's reader: 20,000 models


def test_get_tensor_with_many_aliases_is_not_quadratic():
    n = 10_000
    tensors = {f"t{i}": {"dtype": "float32", "shape": [0], "raw": {"s": i, "codec": "copy"}} for i in range(n)}
    tensors.update({f"a{i}": {"alias": f"t{i}"} for i in range(n)})
    data = assemble({"tensors": tensors}, [b""] * n)
    start = time.perf_counter()
    with nncodec.open(data, framework="np") as f:
        for name in f.keys():
            f.get_tensor(name)
    assert time.perf_counter() - start < 20  # the old reader: n**2 = 1e8 comparisons (minutes)


# ------------------------------------------------------------------ the model bounds the real peak


def _files(rng) -> dict[str, tuple[bytes, str]]:
    """One file per decode path (codec), 2**18 elements each."""
    n, shape = 2**18, (512, 512)
    out = {}
    w = (rng.standard_normal(n) * 0.05).astype(np.float32)
    for dt, words in (("float32", w.view(np.uint32)), ("float64", w.astype(np.float64).view(np.uint64)),
                      ("bfloat16", (w.view(np.uint32) >> 16).astype(np.uint16)),
                      ("int32", rng.integers(-100, 100, n).astype(np.int32))):
        for enc in (raw.Encoded("copy", words.tobytes()), raw.Encoded("zstd", zstd.compress(words.tobytes(), 3))):
            part = {"s": 0, "codec": enc.codec}
            out[f"raw/{enc.codec}/{dt}"] = (assemble({"tensors": {"t": {"dtype": dt, "shape": [n], "raw": part}}},
                                                     [enc.payload]), dt)
        split, streams = raw._split(words, DTYPES[dt])
        coded = [ans.encode_with_table(s.astype(np.int64), coarsen=()) if k == 0 else s.tobytes()
                 for k, s in enumerate(streams)]
        part = {"s": 0, "codec": "planes", "p": {"split": split, "streams": [["ans" if k == 0 else "copy", len(c)]
                                                                             for k, c in enumerate(coded)]}}
        out[f"raw/planes/{dt}"] = (assemble({"tensors": {"t": {"dtype": dt, "shape": [n], "raw": part}}},
                                            [b"".join(coded)]), dt)
        chunked = raw.encode(words, DTYPES[dt], EncodeOptions(chunk_bytes=2**16, threads=2))  # §23, 2 workers
        part = {"s": 0, "codec": chunked.codec, "p": chunked.params}
        out[f"raw/chunks/{dt}"] = (assemble({"tensors": {"t": {"dtype": dt, "shape": [n], "raw": part}}},
                                            [chunked.payload]), dt)
    m = rng.random(shape) < 0.4
    lv = rng.integers(-7, 8, int(m.sum()))
    lv_zstd = zstd.compress((lv.astype(np.int64) * 2 ^ (lv.astype(np.int64) >> 63)).astype(np.uint8).tobytes())
    masks = {"ans": ans.encode_with_table(m.reshape(-1).astype(np.int64), coarsen=()),
             "ans-rows": mask._encode_rows(m.reshape(-1), shape[0]), "ans-classes": mask_ctx.encode(m),
             "zstd": zstd.compress(np.packbits(m.reshape(-1), bitorder="little").tobytes())}
    counts = levels_ctx.row_counts(shape, m)
    lvs = {"ans": (ans.encode_with_table(lv, coarsen=()), None), "zstd": (lv_zstd, {"width": 1}),
           "ans-rowclass": (levels_ctx.encode(lv, counts), None)}
    for dt in ("bfloat16", "float32"):
        for mc, mp in masks.items():
            for lc, (lp, params) in lvs.items():
                out[f"quant/{mc}+{lc}/{dt}"] = (one_tensor([("mask", mc, mp, None), ("levels", lc, lp, params)],
                                                           dtype=dt, shape=shape), dt)
    return out


def test_the_memory_model_is_never_below_the_measured_peak(monkeypatch):
    monkeypatch.setattr(ans, "CHUNK", 4096)
    monkeypatch.setattr(raw, "_JOIN_BLOCK", 4096)
    monkeypatch.setattr(components, "_BLOCK", 4096)
    monkeypatch.setattr(decode_memory, "WORKING_SET", 2**20)  # what 4096-element chunks need, generously
    report = []
    for name, (data, _) in _files(np.random.default_rng(5)).items():
        tf = open_tensor_file(data, nncodec.DEFAULT_LIMITS)
        try:
            for comps in (False, True):
                model = tf.peak_bytes("t", components=comps)
                peak = traced_peak(lambda c=comps, tf=tf: tf.decode_components("t") if c else tf.decode("t"))
                report.append((name, comps, peak, model))
        finally:
            tf.container.close()
    under = [r for r in report if r[2] > r[3]]
    assert not under, under
    # and the model is not absurdly pessimistic: within 40x the output for every path
    assert all(model < 40 * 2**18 * 4 + 2**21 for *_, model in report)
