"""Collections: one .nnc file holding several models, tensors named "model/tensor".

A model is loaded alone: only its own tensors are decoded, and for VAE tensors that means the
shared decoder (once) and that model's latents (spec §19.6). Files without "/" in their tensor
names hold one unnamed model.
"""

from __future__ import annotations

from typing import Any

from .api import NncFile
from .errors import BadArgumentError
from .limits import DEFAULT_LIMITS, Limits


def model_names(f: NncFile) -> list[str]:
    """The models of a collection file, in file order (the prefixes before the first "/")."""
    seen: dict[str, None] = {}
    for name in f.keys():
        if "/" in name:
            seen.setdefault(name.split("/", 1)[0], None)
    return list(seen)


def load_model(source: Any, model: str, *, framework: str = "pt", device: str = "cpu",
               limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """The tensors of one model of a collection, keyed by their names within the model."""
    with NncFile(source, framework=framework, device=device, limits=limits) as f:
        return get_model(f, model)


def get_model(f: NncFile, model: str) -> dict[str, Any]:
    prefix = f"{model}/"
    names = [n for n in f.keys() if n.startswith(prefix)]
    if not names:
        known = ", ".join(model_names(f)) or "none (not a collection)"
        raise BadArgumentError(f"no model named {model!r} in this file; models: {known}")
    return {n[len(prefix):]: f.get_tensor(n) for n in names}
