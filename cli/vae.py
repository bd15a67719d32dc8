"""`nncodec encode --method vae a.pt b.pt ... -o set.nnc`: models sharing one VAE decoder (issue 11).

Each input becomes one model of the collection, named after its file (stem; a numbered suffix
when two stems collide); its tensors are stored as "model/tensor". The encoder prints the paper's
ratio (parameters / latent numbers) beside the real one (raw bytes / file bytes).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

VAE_OPTIONS: list[Callable[[Callable], Callable]] = [
    click.option("--method", type=click.Choice(["default", "vae"]), default="default", show_default=True,
                 help="vae: one VAE decoder shared by all INPUTs, latents per model (arXiv 2408.14513)."),
    click.option("--latent", type=click.IntRange(1, 4096), default=64, show_default=True,
                 help="VAE: latent numbers per chunk."),
    click.option("--chunk", type=click.IntRange(1, 2**20), default=2048, show_default=True,
                 help="VAE: parameters per chunk (the last chunk is zero-padded)."),
    click.option("--hidden", type=click.IntRange(1, 65536), default=256, show_default=True,
                 help="VAE: hidden units of the encoder and decoder."),
    click.option("--vae-epochs", "vae_epochs", type=click.IntRange(1, 100000), default=500, show_default=True,
                 help="VAE: most training epochs (early stopping on validation reconstruction loss)."),
    click.option("--residual-step", "residual_step", type=click.FloatRange(min=0), default=0.5, show_default=True,
                 help="VAE: quantized residual step, in standard deviations of each tensor's residual (0: none)."),
    click.option("--seed", type=int, default=0, show_default=True, help="VAE: training seed."),
]
VAE_KEYS = ("method", "latent", "chunk", "hidden", "vae_epochs", "residual_step", "seed")


def model_name_for(path: Path, taken: set[str]) -> str:
    stem = path.name.split(".")[0].replace("/", "_") or "model"
    name, k = stem, 2
    while name in taken:
        name, k = f"{stem}-{k}", k + 1
    taken.add(name)
    return name


def encode_vae(sources: tuple[Path, ...], read: Callable[[Path], dict], meta: dict[str, str],
               options: dict[str, Any]) -> tuple[bytes, str]:
    """The file bytes and a summary line with both ratios."""
    from nncodec.compress.vae import VaeOptions, vae_compress

    taken: set[str] = set()
    models = {model_name_for(p, taken): read(p) for p in sources}
    opt = VaeOptions(latent=options["latent"], chunk=options["chunk"], hidden=options["hidden"],
                     epochs=options["vae_epochs"], seed=options["seed"],
                     residual_step=options["residual_step"] or None)
    r = vae_compress(models, options=opt, metadata=meta)
    line = (f"paper's ratio {r.paper_ratio:.1f}x ({r.parameters:,} parameters / {r.latent_numbers:,} latent numbers; "
            f"decoder, residual and header not counted); real ratio {r.real_ratio:.2f}x "
            f"({r.raw_bytes:,} raw bytes / {len(r.data):,} file bytes)")
    return r.data, line


__all__ = ["VAE_OPTIONS", "VAE_KEYS", "encode_vae"]
