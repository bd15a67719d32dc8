"""`nncodec info`: every byte of a file attributed to the preamble, the header, padding, an optional
or dataset section, or one component of one tensor (spec §14); the parts add up to the file size."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import fidelity, tensorfile_vae
from .container import strict_json
from .container.format import PREAMBLE_SIZE, is_optional
from .errors import CorruptFileError, LimitExceededError

if TYPE_CHECKING:
    from .tensorfile import TensorEntry, TensorFile

SPARSITY_BUDGET = 2**24  # elements `info` decodes, over all tensors, to report sparsity

def quant_fields(tf: TensorFile, e: TensorEntry, budget: list[int]) -> dict:
    """step(s) or codebook size and the fraction of zero weights of a quantized tensor, for
    `info`. Sparsity needs the components decoded, so it is reported only while the tensors
    decoded for it total at most SPARSITY_BUDGET elements (`budget[0]` is what is left): a small
    file declaring thousands of big tensors must not make `info` decode them all."""
    if "raw" in e.parts or e.vae_group is not None:
        return {}
    if e.numel > budget[0]:
        values, nonzero = tf._quantizer_values(e), None
    else:
        budget[0] -= e.numel
        try:
            t = tf.components_of(e)
        except MemoryError:
            raise LimitExceededError(f"out of memory while decoding tensor {e.name!r} for its sparsity") from None
        values = t.quantizer.values
        lv = t.levels if t.quantizer.mode == "uniform" else values[t.levels]
        nonzero = int(np.count_nonzero(lv))
    out: dict = {}
    if e.quant_mode == "codebook":
        out["codebook_size"] = int(values.size)
    elif values.size == 1:
        out["step"] = float(values[0])
    elif values.size:
        out["step"] = [float(values.min()), float(values.max())]
    if nonzero is not None:
        out["sparsity"] = 1.0 - nonzero / e.numel if e.numel else 0.0
    return out

def build(tf: TensorFile) -> dict:
    """Every byte of the file attributed to the preamble, the header, padding, an optional
    section, or one component of one tensor; the parts add up to the file size exactly."""
    c = tf.container
    tf.validate_all()
    tensors = []
    budget = [SPARSITY_BUDGET]
    for name in tf.names:
        if name in tf.aliases:
            tensors.append({"name": name, "alias": tf.aliases[name], "bytes": 0, "components": []})
            continue
        e = tf.entries[name]
        comps = [{"kind": p.kind, "codec": p.codec, "bytes": c.sections[p.section].length,
                  **({"params": p.params} if p.params else {})} for p in e.parts.values()]
        total = sum(x["bytes"] for x in comps)
        table = tf.chunk_table(e)
        if table is not None:  # §23: one raw component; how many chunks, and which codecs they use
            comps[0]["chunks"] = table.count
            comps[0]["chunk_codecs"] = {c: table.codecs.count(c) for c in sorted(set(table.codecs))}
        encoding = "raw" if "raw" in e.parts else f"quantized/{e.quant_mode}"
        if e.vae_group is not None:
            encoding = f"vae/group {e.vae_group}" + (" + residual" if e.parts else "")
        tensors.append({"name": name, "dtype": e.dtype.name, "shape": list(e.shape), "numel": e.numel,
                        "encoding": encoding,
                        "bytes": total, "bits_per_param": 8 * total / e.numel if e.numel else 0.0,
                        **({"pip_bytes": c.sections[e.parts["pip"].section].length} if "pip" in e.parts else {}),
                        **quant_fields(tf, e, budget), "components": comps})
    optional = [{"index": s.index, "kind": s.kind, "bytes": s.length} for s in c.sections if is_optional(s.kind)]
    dataset = sum(s.length for s in c.sections if s.kind == "dataset")
    padding = c.padding_bytes
    report = {
        "file_bytes": c.file_size,
        "version": f"{c.preamble.major}.{c.preamble.minor}",
        "preamble_bytes": PREAMBLE_SIZE,
        "header_bytes": c.header_bytes,
        "header_encoding": {0: "json", 1: "zstd", 2: "indexed", 3: "indexed+zstd", 5: "zstd+dict",
                            7: "indexed+zstd+dict"}[c.preamble.header_encoding],
        "padding_bytes": padding,
        "optional_section_bytes": sum(o["bytes"] for o in optional),
        **({"dataset_bytes": dataset} if "dataset" in c.header else {}),
        "tensors": tensors,
        "metadata": tf.metadata,
    }
    if tf.error_summary is not None:
        member = c.header.get(fidelity.HEADER_KEY)
        report["error"] = tf.error_summary
        # its JSON text in the header, with key and comma (before the header's zstd compression, if any)
        report["error_header_bytes"] = len(strict_json.dumps({fidelity.HEADER_KEY: member})) - 1
    if tf.vae.groups or tf.vae.archs:
        report["vae"] = tensorfile_vae.vae_report(tf.vae, tensors)
    accounted = (PREAMBLE_SIZE + c.header_bytes + padding + report["optional_section_bytes"] + dataset + sum(t["bytes"] for t in tensors)
                 + report.get("vae", {}).get("decoder_bytes", 0) + report.get("vae", {}).get("latent_bytes", 0))
    if accounted != c.file_size:
        raise CorruptFileError(f"byte accounting found {accounted} bytes in a {c.file_size}-byte file")
    report["parameters"] = sum(t.get("numel", 0) for t in tensors)
    return report


