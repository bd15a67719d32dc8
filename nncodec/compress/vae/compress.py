"""`vae_compress`: one VAE decoder shared by a collection of models, latents per model, residuals.

Pipeline (arXiv 2408.14513, with the decoder counted): flatten each model's float tensors into
chunks (last one zero-padded) -> train a VAE on noisy copies of all chunks (ELBO,
reparameterization, early stopping) -> keep the posterior means as latents -> quantize the
decoder's weights and the latents (coarsest step that adds at most a tolerance x the parameters'
mean square to the reconstruction error: the "reconstruction rule") -> optional residual per model
(quantized true - decoded).

With an `evaluate`, the accuracy budget decides each model's latent precision and residual step
(issue 11 item 3): the candidates are the reconstruction rule's latent step times
`options.latent_factors` (the decoder is shared and fixed); for each, the coarsest residual that keeps
the model's validation score within `max_drop`; the model keeps the candidate whose latents +
residual code to the fewest bytes (really coded by the codec layer). The reconstruction rule's step
is always a candidate, so a model's part is never larger than with that step alone. Without an
`evaluate`, one latent step (the reconstruction rule's) and a fixed residual step, as before.
Every decoded value used for a choice is computed exactly as a reader computes it
(`tensorfile_vae`, `codecs.decoder.run` on one group's `Latents(...).values()`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ...codecs import decoder as decoder_codec
from ...components import QuantTensor, dequantize
from ...confidence import DEFAULT_CONFIDENCE, z_value
from ...convert import to_numpy
from ...dtypes import DTYPES, DType
from ...errors import BadArgumentError
from ...limits import DEFAULT_LIMITS
from ...tensorfile_vae import float_values
from ...tensorwriter import encode_file
from ...vae_components import DecoderSpec, Latents, VaeGroup, VaeSet, VaeTensor
from ..lossless import lossless
from ..uniform import quantize_uniform
from .budget import Evaluate, choose_latents, residual_of
from .chunks import from_chunks, to_chunks

if TYPE_CHECKING:
    from .model import TrainLog

LATENT_STEPS = tuple(float(2.0**-k) for k in range(1, 11))  # 1/2 .. 1/1024, coarse to fine
DECODER_REL_STEPS = tuple(float(2.0**-k) for k in range(0, 9))  # 1 .. 1/256 x the weight's sd
LATENT_FACTORS = (1, 2, 4, 8)  # with evaluate: candidate latent steps, x the reconstruction rule's step
SAMPLE_CHUNKS = 512
_F32 = DTYPES["float32"]


@dataclass(frozen=True)
class VaeOptions:
    latent: int = 64
    chunk: int = 2048
    hidden: int = 256
    activation: str = "relu"
    noise_rel: float = 0.05  # training-noise sd, in units of the parameters' RMS
    epochs: int = 500  # the paper's maximum
    patience: int = 20
    val_copies: int = 20  # the paper's 20 validation copies (training copies are fresh each epoch)
    batch: int = 64
    lr: float = 1e-3
    seed: int = 0
    max_seconds: float = 600.0
    tolerance: float = 0.01  # quantizing decoder / latents may each add this fraction of the parameters' mean square to the MSE
    residual_step: float | None = None  # without evaluate: a fixed residual step (x the residual's sd), None: none
    max_drop: float = 1.0  # with evaluate: the budget, in the score's units (accuracy points)
    confidence: float = DEFAULT_CONFIDENCE  # per-sample evaluate: level of the paired bound (budget.choose_residual)
    latent_factors: tuple[int, ...] = LATENT_FACTORS  # with evaluate: latent step candidates (1 is always one)

    def __post_init__(self) -> None:
        for name in ("latent", "chunk", "hidden", "epochs", "patience", "batch"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise BadArgumentError(f"{name} must be a positive integer, got {v!r}")
        lim = DEFAULT_LIMITS  # a file a reader with the default limits refuses is no use
        if self.chunk > lim.max_vae_chunk or self.latent > lim.max_vae_latent or self.hidden > lim.max_vae_width:
            raise BadArgumentError("chunk, latent or hidden size is beyond the default limits (max_vae_*)")
        if self.activation not in ("relu", "tanh"):
            raise BadArgumentError(f"activation must be relu or tanh, not {self.activation!r}")
        if not (self.noise_rel > 0 and np.isfinite(self.noise_rel)):
            raise BadArgumentError("noise_rel must be positive")
        if self.residual_step is not None and not (self.residual_step > 0 and np.isfinite(self.residual_step)):
            raise BadArgumentError("residual_step must be positive (or None for no residual)")
        z_value(self.confidence)  # BadArgumentError unless in [0.5, 1)
        f = self.latent_factors
        if (not isinstance(f, tuple) or not f or len(f) > 16
                or any(isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 2**20 for k in f)):
            raise BadArgumentError(f"latent_factors must be a tuple of 1 to 16 integers in [1, 2**20], got {f!r}")


@dataclass
class VaeResult:
    data: bytes
    parameters: int  # float parameters coded through the VAE
    latent_numbers: int
    raw_bytes: int  # every input tensor in its own dtype
    models: list[str]
    scores: dict[str, tuple[float, float]] = field(default_factory=dict)  # model -> (original, decoded) on evaluate
    residual_steps: dict[str, float | None] = field(default_factory=dict)
    latent_steps: dict[str, float] = field(default_factory=dict)  # model -> its latent step in the file
    latent_step: float = 0.0  # the reconstruction rule's step (every model's without evaluate)
    decoder_rel_step: float = 0.0
    log: TrainLog | None = None
    bare: bytes | None = None  # with keep_bare: without residuals, latents at `latent_step` (the paper's setting)

    @property
    def paper_ratio(self) -> float:
        """The paper's ratio: parameters / latent numbers (decoder, residual and header left out)."""
        return self.parameters / max(self.latent_numbers, 1)

    @property
    def real_ratio(self) -> float:
        """Raw bytes / file bytes: every byte of the file counted."""
        return self.raw_bytes / len(self.data)


@dataclass
class _Model:
    name: str
    floats: list[tuple[str, DType, np.ndarray]]  # VAE-coded tensors: (full name, dtype, float64 values)
    others: dict[str, Any]  # full name -> lossless component
    chunks: np.ndarray | None = None
    first_chunk: int = 0


def _split(models: Mapping[str, Mapping[str, Any]]) -> tuple[list[_Model], int]:
    out, raw = [], 0
    for model, state in models.items():
        if not isinstance(model, str) or "/" in model:
            raise BadArgumentError(f"model names must be strings without '/', got {model!r}")
        m = _Model(model, [], {})
        for name, value in state.items():
            full = f"{model}/{name}" if model else name
            dt, arr = to_numpy(value, full)
            raw += arr.size * dt.itemsize
            if dt.kind == "f" and arr.size:
                vals = float_values(dt.name, arr.view(dt.storage)) if dt.name == "bfloat16" else arr
                m.floats.append((full, dt, np.asarray(vals, dtype=np.float64)))
            else:
                m.others[full] = lossless(arr, dt)
        out.append(m)
    return out, raw


def _as_collection(tensors: Mapping[str, Any]) -> Mapping[str, Mapping[str, Any]]:
    if not isinstance(tensors, Mapping) or not tensors:
        raise BadArgumentError("vae_compress needs a state dict or a mapping of model names to state dicts")
    if all(isinstance(v, Mapping) for v in tensors.values()):
        return tensors
    if any(isinstance(v, Mapping) for v in tensors.values()):
        raise BadArgumentError("pass either one state dict or a mapping of model names to state dicts, not a mix")
    return {"": tensors}


def _decoder_parts(vae: Any, scale: float) -> dict[str, np.ndarray]:
    """Decoder weights as float32 arrays, the data scale folded into the last layer."""
    lin = [m for m in vae.dec if hasattr(m, "weight")]
    w = {"l0.weight": lin[0].weight, "l0.bias": lin[0].bias, "l1.weight": lin[1].weight * scale,
         "l1.bias": lin[1].bias * scale}
    return {k: v.detach().numpy().astype(np.float32) for k, v in w.items()}


def _quantize(values: np.ndarray, rel: float) -> QuantTensor:
    sd = float(np.std(values)) or 1.0
    return quantize_uniform(values, _F32, np.float32(rel * sd))


def _values(t: QuantTensor) -> np.ndarray:
    return dequantize(t).view(np.float32).reshape(t.shape)


def vae_compress(tensors: Mapping[str, Any], evaluate: Evaluate | None = None, options: VaeOptions | None = None,
                 *, metadata: Mapping[str, str] | None = None, progress: Callable[[str], None] | None = None,
                 keep_bare: bool = False) -> VaeResult:
    """Compress one state dict, or a collection {model name: state dict} sharing one decoder.

    Collection tensors are named "model/tensor". With `evaluate(model, decoded state dict) -> score`
    (higher is better; the state dict is keyed by the model's own tensor names), the budget decides
    each model's latent step (among the reconstruction rule's step x `options.latent_factors`) and
    residual step (the coarsest that keeps its score within `options.max_drop`), the pair that codes
    smallest (budget.py; at most 25 evaluate calls per model with the default 4 candidates, 52 in the
    worst case); without it, the reconstruction rule's latent step and a fixed `options.residual_step`
    (or no residual). Returns the file bytes, the chosen steps and the paper's and real ratios.
    """
    import torch  # imported here: `import nncodec` stays light

    from .model import train_vae

    opt = options or VaeOptions()
    say = progress or (lambda s: None)
    models, raw_bytes = _split(_as_collection(tensors))
    blocks = []
    for m in models:
        m.first_chunk = sum(len(b) for b in blocks)
        m.chunks = to_chunks([v for _, _, v in m.floats], opt.chunk)
        blocks.append(m.chunks)
    x = np.concatenate(blocks) if blocks else np.zeros((0, opt.chunk), np.float32)
    if not len(x):
        raise BadArgumentError("no float parameters to compress")
    n_real = sum(v.size for m in models for _, _, v in m.floats)
    scale = float(np.sqrt((x.astype(np.float64) ** 2).sum() / n_real)) or 1.0
    say(f"training the VAE on {len(x)} chunks of {opt.chunk} ({len(models)} models)")
    vae, log = train_vae(x / scale, latent=opt.latent, hidden=opt.hidden, noise_rel=opt.noise_rel, epochs=opt.epochs,
                         patience=opt.patience, val_copies=opt.val_copies, batch=opt.batch, lr=opt.lr, seed=opt.seed,
                         activation=opt.activation, max_seconds=opt.max_seconds)
    with torch.no_grad():
        mu = vae.encode(torch.from_numpy(x / scale))[0].numpy().astype(np.float32)
    arch = decoder_codec.Arch(opt.chunk, opt.latent, (("linear", "l0.weight", "l0.bias"), (opt.activation,),
                                                      ("linear", "l1.weight", "l1.bias")))
    float_w = _decoder_parts(vae, scale)

    # step choices measure the reconstruction on at most SAMPLE_CHUNKS evenly spaced chunks (a
    # collection of 64 models has ~5,000; the decoder runs in float64 and would dominate the time)
    sample = np.unique(np.linspace(0, len(x) - 1, min(len(x), SAMPLE_CHUNKS)).round().astype(np.int64))

    def mse(weights: dict[str, np.ndarray], z: np.ndarray) -> float:
        return float(((decoder_codec.run(arch, weights, z[sample]).astype(np.float64) - x[sample]) ** 2).mean())

    # quantizing the decoder, then the latents, may each add opt.tolerance x the parameters' mean
    # square to the reconstruction error (an SNR floor; the residual and the budget handle the rest)
    allowed = opt.tolerance * float((x.astype(np.float64) ** 2).sum() / n_real)
    base = mse(float_w, mu)
    dec_rel, dec_q = DECODER_REL_STEPS[-1], None
    for rel in DECODER_REL_STEPS:  # coarse to fine: the first that keeps the reconstruction
        q = {k: _quantize(v, rel) for k, v in float_w.items()}
        if mse({k: _values(t) for k, t in q.items()}, mu) <= base + allowed:
            dec_rel, dec_q = rel, q
            break
    if dec_q is None:
        dec_q = {k: _quantize(v, dec_rel) for k, v in float_w.items()}
    dec_w = {k: _values(t) for k, t in dec_q.items()}
    base_q = mse(dec_w, mu)
    lat_step = LATENT_STEPS[-1]
    for step in LATENT_STEPS:
        if mse(dec_w, np.rint(mu / np.float32(step)).astype(np.float32) * np.float32(step)) <= base_q + allowed:
            lat_step = step
            break
    levels = np.rint(mu / np.float32(lat_step)).astype(np.int64)  # the reconstruction rule's latents
    if evaluate is None:
        decoded = decoder_codec.run(arch, dec_w, Latents(levels, lat_step).values())  # exactly what a reader computes

    result = VaeResult(b"", n_real, int(levels.size), raw_bytes, [m.name for m in models], latent_step=lat_step,
                       decoder_rel_step=dec_rel, log=log)
    groups, bare_groups, out_tensors = [], [], {}
    for g, m in enumerate(models):
        span = slice(m.first_chunk, m.first_chunk + len(m.chunks))
        if evaluate is None:
            step, lv, rel = lat_step, levels[span], opt.residual_step
            cut = from_chunks(decoded[span], [v.shape for _, _, v in m.floats])
        else:  # the budget decides this model's latent step and residual step (budget.py)
            c = choose_latents(m, mu[span], lat_step, arch, dec_w, evaluate, opt)
            step, lv, rel, cut = c.step, c.levels, c.rel, c.cut
            result.scores[m.name] = c.scores
        for (full, dt, v), dv in zip(m.floats, cut, strict=True):
            out_tensors[full] = VaeTensor(dt, tuple(v.shape), g, None if rel is None else residual_of(v, dv, dt, rel))
        out_tensors.update(m.others)
        groups.append(VaeGroup(m.name, 0, Latents(lv, step)))
        bare_groups.append(VaeGroup(m.name, 0, Latents(levels[span], lat_step)))
        result.residual_steps[m.name] = rel
        result.latent_steps[m.name] = step
    spec = DecoderSpec(opt.chunk, opt.latent, arch.layers, dict(dec_q))
    meta = dict(metadata) if metadata else None
    result.data = encode_file(out_tensors, meta, vae=VaeSet((spec,), tuple(groups)))
    if keep_bare:
        bare = {n: VaeTensor(t.dtype, t.shape, t.group) if isinstance(t, VaeTensor) else t for n, t in out_tensors.items()}
        result.bare = encode_file(bare, meta, vae=VaeSet((spec,), tuple(bare_groups)))
    return result
