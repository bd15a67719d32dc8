"""The byte table of `nncodec info` and `nncodec demo`: every byte of the file on some row.

Rows: one per tensor (with one indented row per component when it has several), then the
preamble, header, padding and optional sections; the total line is the file size exactly.
"""

from __future__ import annotations

from typing import Any

from nncodec.fidelity import describe as describe_error

from .common import shown

HEADERS = ("name", "dtype", "shape", "part", "codec", "bytes", "bits/param")


def _shape(shape: list[int]) -> str:
    return "x".join(map(str, shape)) if shape else "scalar"


def _bpp(nbytes: int, numel: int) -> str:
    return f"{8 * nbytes / numel:.3f}" if numel else "-"


def report_rows(report: dict[str, Any]) -> list[tuple[str, ...]]:
    """The table rows (without the header line) of a byte report from NncFile.info()."""
    rows: list[tuple[str, ...]] = []
    for t in report["tensors"]:
        if "alias" in t:
            rows.append((t["name"], "", "", f"alias of {t['alias']}", "", "0", "-"))
            continue
        comps = t["components"]
        numel = t["numel"]
        if len(comps) == 1:
            c = comps[0]
            rows.append((t["name"], t["dtype"], _shape(t["shape"]), c["kind"], c["codec"], f"{t['bytes']:,}",
                         _bpp(t["bytes"], numel)))
            continue
        rows.append((t["name"], t["dtype"], _shape(t["shape"]), t["encoding"], "", f"{t['bytes']:,}",
                     _bpp(t["bytes"], numel)))
        for c in comps:
            rows.append(("  " + c["kind"], "", "", c["kind"], c["codec"], f"{c['bytes']:,}", _bpp(c["bytes"], numel)))
    rows = [tuple(shown(cell) for cell in row) for row in rows]  # names, codecs: text from the file
    rows.append(("(preamble)", "", "", "", "", f"{report['preamble_bytes']:,}", ""))
    rows.append(("(header)", "", "", report["header_encoding"], "", f"{report['header_bytes']:,}", ""))
    rows.append(("(padding)", "", "", "", "", f"{report['padding_bytes']:,}", ""))
    if "dataset_bytes" in report:
        rows.append(("(dataset)", "", "", "coded data", "", f"{report['dataset_bytes']:,}", ""))
    if report.get("optional_section_bytes"):
        rows.append(("(optional sections)", "", "", "", "", f"{report['optional_section_bytes']:,}", ""))
    vae = report.get("vae")
    if vae:  # decoder and latent bytes belong to no single tensor (spec §19.7)
        for d in vae["decoders"]:
            rows.append((f"(vae decoder {d['index']})", "", f"{d['latent']}->{d['chunk']}", "decoder", "",
                         f"{d['bytes']:,}", ""))
        for g in vae["groups"]:
            rows.append((f"(vae latents {g['model'] or g['index']})", "", f"{g['chunks']}x{g['latent_numbers'] // max(g['chunks'], 1)}",
                         "latent", g["latent_codec"], f"{g['latent_bytes']:,}", ""))
    return rows


def raw_bytes(report: dict[str, Any]) -> int:
    """What the tensors take uncompressed, each in its own dtype, each storage once (an alias, a tied
    weight, adds nothing): the same definition as nncodec.api.unique_nbytes, used by `encode`."""
    from nncodec.dtypes import DTYPES

    return sum(t["numel"] * DTYPES[t["dtype"]].itemsize for t in report["tensors"] if "alias" not in t)


def format_report(report: dict[str, Any]) -> str:
    """The table as text; its total line equals report['file_bytes']."""
    rows = report_rows(report)
    params = report.get("parameters", 0)
    total = ("total", "", "", "", "", f"{report['file_bytes']:,}", _bpp(report["file_bytes"], params))
    widths = [max(len(r[i]) for r in [HEADERS, *rows, total]) for i in range(len(HEADERS))]
    right = {5, 6}

    def line(r: tuple[str, ...]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()

    rule = "-" * len(line(tuple("-" * w for w in widths)))
    out = [line(HEADERS), rule, *map(line, rows), rule, line(total)]
    raw = raw_bytes(report)
    if raw:
        out.append(f"{params:,} parameters, {raw:,} bytes uncompressed: the file is {report['file_bytes'] / raw:.1%} of that")
    vae = report.get("vae")
    if vae:
        params_vae = sum(g["parameters"] for g in vae["groups"])
        latents = sum(g["latent_numbers"] for g in vae["groups"])
        out.append(f"vae decoder bytes:  {vae['decoder_bytes']:,}")
        out.append(f"vae latent bytes:   {vae['latent_bytes']:,}")
        out.append(f"vae residual bytes: {vae['residual_bytes']:,}")
        rest = report["file_bytes"] - vae["decoder_bytes"] - vae["latent_bytes"] - vae["residual_bytes"]
        out.append(f"other bytes:        {rest:,} (preamble, header, padding, tensors not coded by the VAE)")
        out.append(f"vae: {params_vae:,} parameters from {latents:,} latent numbers (paper's ratio "
                   f"{params_vae / max(latents, 1):.1f}x); real ratio {raw / report['file_bytes']:.2f}x")
    quantized = [t for t in report["tensors"] if "step" in t or "codebook_size" in t or "sparsity" in t]
    if quantized:
        out.append("quantized tensors:")
        for t in quantized:
            step = t.get("step")
            res = (f"step {step:.4g}" if isinstance(step, float) else
                   f"steps {step[0]:.4g}..{step[1]:.4g}" if step else f"codebook of {t.get('codebook_size')}")
            sparsity = f", sparsity {t['sparsity']:.1%}" if "sparsity" in t else ""
            pips = f", PIPs {t['pip_bytes']:,} B ({_bpp(t['pip_bytes'], t['numel'])} bits/weight)" if "pip_bytes" in t else ""
            out.append(f"  {shown(t['name'])}: {res}{sparsity}, {_bpp(t['bytes'], t['numel'])} bits/weight{pips}")
    if report.get("error"):
        out.append(f"lossy: error of the decoded values, measured at encoding ({report.get('error_header_bytes', 0):,} "
                   "header bytes):")
        out.extend(f"  {shown(line)}" for line in describe_error(report["error"]))
    if report.get("metadata"):
        out.append("metadata:")
        for k, v in report["metadata"].items():
            value = v if len(v) <= 60 else v[:57] + "..."
            out.append(f"  {shown(k)} = {shown(value)}")
    return "\n".join(out)
