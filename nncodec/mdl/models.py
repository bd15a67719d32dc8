"""Models that give a probability table per symbol, built only from a declarative spec.

A spec is a small JSON object from an allowlist (nothing in a file is executed); the weights
come from the file's tensors (two-part) or from the seeded initialisation (prequential). Two
interfaces, so that other data kinds can plug in their own models:

- a *sequence* model predicts symbol t from the symbols before it: `start(batch)` gives the
  state of `batch` fresh streams, `step(state, prev)` the logits of the next symbol of each;
- a *conditional* model predicts a symbol from side information: `logits(x)` for a batch.

`probabilities(logits)` turns logits into the float64 tables the coder takes (softmax in float64,
so that rounding in the last float32 logit digit cannot flip between platforms' exp kernels less
than it must).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import FormatError
from ..limits import DEFAULT_LIMITS, Limits
from .features import feature_count, patch_pca_features

MAX_WIDTH = 1024  # largest layer width a spec may ask for (bounds what a header can make us allocate)
MAX_LAYERS = 8


def probabilities(logits: torch.Tensor) -> np.ndarray:
    """[B, K] float64 probability tables from logits (softmax computed in float64)."""
    return torch.softmax(logits.detach().to(torch.float64), dim=-1).numpy()


class ByteLSTM(nn.Module):
    """Byte-level LSTM language model: embedding -> 1-layer LSTM -> linear over the alphabet."""

    kind = "sequence"

    def __init__(self, alphabet: int = 256, emb: int = 16, hidden: int = 128) -> None:
        super().__init__()
        self.alphabet = alphabet
        self.embed = nn.Embedding(alphabet, emb)
        self.lstm = nn.LSTM(emb, hidden)
        self.out = nn.Linear(hidden, alphabet)

    def forward(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        """x: [T, B] int64 -> logits [T, B, K] (training and coding share this function)."""
        h, state = self.lstm(self.embed(x), state)
        return self.out(h), state

    def start(self, batch: int) -> Any:
        hidden = self.lstm.hidden_size
        return (torch.zeros(1, batch, hidden), torch.zeros(1, batch, hidden))

    def step(self, state: Any, prev: torch.Tensor) -> tuple[torch.Tensor, Any]:
        logits, state = self.forward(prev.reshape(1, -1), state)
        return logits[0], state


def linear_stack(widths: list[int], activation: type[nn.Module]) -> nn.Sequential:
    """Linear layers through `widths` with `activation` between them (not after the last): the
    parameter names (net.0.weight, net.2.weight, ...) are part of the coded model, so one builder."""
    layers: list[nn.Module] = []
    for i in range(len(widths) - 1):
        layers.append(nn.Linear(widths[i], widths[i + 1]))
        if i < len(widths) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class MLPClassifier(nn.Module):
    """Fully connected classifier over flattened uint8 inputs scaled to [0, 1]."""

    kind = "conditional"

    def __init__(self, inputs: int, hidden: list[int], classes: int) -> None:
        super().__init__()
        self.alphabet = classes
        self.net = linear_stack([inputs, *hidden, classes], nn.ReLU)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.reshape(x.shape[0], -1).to(torch.float32) / 255.0)

    forward = logits


class CNNClassifier(nn.Module):
    """Small convolutional classifier over single-channel uint8 images scaled to [0, 1]: per entry of
    `channels` a k×k convolution (padding k // 2), ReLU and 2×2 max-pooling, then linear layers
    (ReLU between them) to the classes (as the CNNs of Blier & Ollivier 2018, smaller)."""

    kind = "conditional"

    def __init__(self, shape: tuple[int, int], channels: list[int], kernel: int, hidden: list[int],
                 classes: int) -> None:
        super().__init__()
        self.alphabet = classes
        self.shape = shape
        convs: list[nn.Module] = []
        c, h, w = 1, *shape
        for out in channels:
            convs += [nn.Conv2d(c, out, kernel, padding=kernel // 2), nn.ReLU(), nn.MaxPool2d(2)]
            c, h, w = out, h // 2, w // 2
        self.conv = nn.Sequential(*convs)
        self.net = linear_stack([c * h * w, *hidden, classes], nn.ReLU)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], 1, *self.shape).to(torch.float32) / 255.0
        return self.net(self.conv(x).flatten(1))

    forward = logits


class PatchPCAClassifier(nn.Module):
    """A head (linear layers, ReLU between them) on unsupervised patch-PCA features of the images
    (features.py): `prepare` computes the features of ALL inputs once, before any label is coded;
    `logits` takes rows of them. Only the head has parameters (the filters come from the inputs)."""

    kind = "conditional"

    def __init__(self, shape: tuple[int, int], kernel: int, filters: int, pool: int, hidden: list[int],
                 classes: int) -> None:
        super().__init__()
        self.alphabet = classes
        self.shape, self.kernel, self.filters, self.pool = shape, kernel, filters, pool
        self.net = linear_stack([feature_count(shape, filters, pool), *hidden, classes], nn.ReLU)

    def featuriser(self) -> tuple:
        """What identifies the features (members of a mix that share it compute them once)."""
        return ("patchpca", self.shape, self.kernel, self.filters, self.pool)

    def feature_bytes(self, n: int) -> int:
        return 4 * n * feature_count(self.shape, self.filters, self.pool)

    def prepare(self, inputs: np.ndarray) -> np.ndarray:
        return patch_pca_features(inputs, self.shape, self.kernel, self.filters, self.pool)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.to(torch.float32))

    forward = logits


class UniformModel(nn.Module):
    """Every class equally likely (no parameters): the safe member of a mixture before any label."""

    kind = "conditional"

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.alphabet = classes

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(x.shape[0], self.alphabet)

    forward = logits


class GaussRegressor(nn.Module):
    """Real targets coded at a stated precision: target bin k (centre (offset + k)·step) given an
    input vector, under a Gaussian of mean net(x) (a tanh MLP to one output) and scale exp(log_s),
    discretised to the bins (the end bins take the tails). The teacher–student experiment's
    student, as it stands, so its file can be the model part of a two-part code."""

    kind = "conditional"

    def __init__(self, inputs: int, hidden: list[int], classes: int, step: float, offset: int) -> None:
        super().__init__()
        self.alphabet = classes
        self.net = linear_stack([inputs, *hidden, 1], nn.Tanh)
        self.log_s = nn.Parameter(torch.tensor(0.0))
        inner = (offset + torch.arange(classes - 1, dtype=torch.float64) + 0.5) * step  # inner bin edges
        self.register_buffer("edges", inner, persistent=False)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """[B, classes] float64 log-probabilities of the bins (softmax leaves them as they are)."""
        mu = self.net(x.reshape(x.shape[0], -1).to(torch.float32)).to(torch.float64)  # [B, 1]
        s = torch.exp(self.log_s.to(torch.float64))
        inner = torch.special.ndtr((self.edges - mu) / s)
        cdf = torch.cat([torch.zeros_like(mu), inner, torch.ones_like(mu)], dim=1)  # no infinite edge in the graph
        return torch.log(torch.clamp(cdf[:, 1:] - cdf[:, :-1], min=1e-300))

    forward = logits


def _width(spec: dict, key: str, hi: int = MAX_WIDTH) -> int:
    v = spec.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= hi:
        raise FormatError(f"model {key} must be an integer in [1, {hi}], got {v!r}")
    return v


def build(spec: object, seed: int, limits: Limits = DEFAULT_LIMITS) -> Any:
    """The model a spec describes, initialised from `seed` (torch's default init, seeded). Its parameter
    count is checked against `limits.max_dataset_model_parameters` before anything is allocated."""
    if not isinstance(spec, dict) or not isinstance(spec.get("arch"), str):
        raise FormatError("model spec must be an object with an arch name")
    arch = spec["arch"]
    if arch == "mix":
        from .mixture import build_mix  # the mixture builds its members with this function

        return build_mix(spec, seed, limits)
    if arch == "cm":  # integer context mixing, no torch parameters and no randomness (cm.py)
        from .. import decode_memory
        from .cm import CMModel, check_cm_spec, cm_bytes

        need = cm_bytes(check_cm_spec(spec, limits))  # the spec's bounds and max_dataset_cm_bytes
        decode_memory.check("the tables of a cm model", need, limits)  # and this machine's memory
        return CMModel(spec, limits)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if arch == "lstm":
            if set(spec) != {"arch", "alphabet", "emb", "hidden"}:
                raise FormatError(f"lstm spec needs exactly alphabet, emb and hidden, got {sorted(spec)}")
            a, e, h = _width(spec, "alphabet"), _width(spec, "emb"), _width(spec, "hidden")
            _check_params("lstm", lstm_parameters(a, e, h), limits)
            model: nn.Module = ByteLSTM(a, e, h)
        elif arch == "mlp":
            if set(spec) != {"arch", "inputs", "hidden", "classes"}:
                raise FormatError(f"mlp spec needs exactly inputs, hidden and classes, got {sorted(spec)}")
            hidden = spec["hidden"]
            if not isinstance(hidden, list) or len(hidden) > MAX_LAYERS:
                raise FormatError(f"mlp hidden must be a list of at most {MAX_LAYERS} widths")
            widths = [_width({"w": h}, "w") for h in hidden]
            inputs, classes = _width(spec, "inputs", 2**16), _width(spec, "classes")
            _check_params("mlp", _dense_params([inputs, *widths, classes]), limits)
            model = MLPClassifier(inputs, widths, classes)
        elif arch == "cnn":
            model = _cnn(spec, limits)
        elif arch == "gauss":
            model = _gauss(spec, limits)
        elif arch == "patchpca":
            model = _patchpca(spec, limits)
        elif arch == "uniform":
            if set(spec) != {"arch", "classes"}:
                raise FormatError(f"uniform spec needs exactly classes, got {sorted(spec)}")
            model = UniformModel(_width(spec, "classes"))
        else:
            raise FormatError(f"unknown model arch {arch!r} (known: lstm, cm, mlp, cnn, gauss, patchpca, uniform, mix)")
    model.eval()
    return model


def _dense_params(widths: list[int]) -> int:
    return sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=True))


def lstm_parameters(alphabet: int, emb: int, hidden: int) -> int:
    """Parameters of ByteLSTM(alphabet, emb, hidden): embedding, LSTM (4 gates, two biases), output layer."""
    return alphabet * emb + 4 * hidden * (emb + hidden) + 8 * hidden + hidden * alphabet + alphabet


def _check_params(arch: str, params: int, limits: Limits) -> None:
    limits.check(f"the parameter count of the {arch} model (max_dataset_model_parameters)", params, limits.max_dataset_model_parameters)


def _widths(spec: dict, key: str, most: int = MAX_LAYERS, least: int = 0) -> list[int]:
    v = spec.get(key)
    if not isinstance(v, list) or not least <= len(v) <= most:
        raise FormatError(f"model {key} must be a list of {least} to {most} widths")
    return [_width({"w": h}, "w") for h in v]


MAX_CONV = 4  # convolution layers a cnn spec may ask for
MAX_KERNEL = 7
MAX_CNN_ACTIVATIONS = 1 << 16  # values per input after each convolution (coding runs 1024 inputs at once)


def _cnn(spec: dict, limits: Limits) -> nn.Module:
    if set(spec) != {"arch", "shape", "channels", "kernel", "hidden", "classes"}:
        raise FormatError(f"cnn spec needs exactly shape, channels, kernel, hidden and classes, got {sorted(spec)}")
    shape = _widths(spec, "shape", 2, 2)
    channels = _widths(spec, "channels", MAX_CONV, 1)
    kernel = _width(spec, "kernel", MAX_KERNEL)
    if kernel % 2 == 0:
        raise FormatError(f"cnn kernel must be odd, got {kernel}")
    if min(shape) >> len(channels) < 1:
        raise FormatError(f"cnn input {shape} is too small for {len(channels)} pooling layers")
    hidden, classes = _widths(spec, "hidden"), _width(spec, "classes")
    params, c, h, w = 0, 1, shape[0], shape[1]
    for out in channels:  # bounds checked before anything is allocated
        if out * h * w > MAX_CNN_ACTIVATIONS:
            raise FormatError(f"cnn layer of {out} channels over {h}x{w} exceeds {MAX_CNN_ACTIVATIONS} values per input")
        params += c * out * kernel * kernel + out
        c, h, w = out, h // 2, w // 2
    _check_params("cnn", params + _dense_params([c * h * w, *hidden, classes]), limits)
    return CNNClassifier((shape[0], shape[1]), channels, kernel, hidden, classes)


MAX_POOL = 32
MAX_FILTERS = 64


def _patchpca(spec: dict, limits: Limits) -> nn.Module:
    if set(spec) != {"arch", "shape", "kernel", "filters", "pool", "hidden", "classes"}:
        raise FormatError(f"patchpca spec needs exactly shape, kernel, filters, pool, hidden and classes, got {sorted(spec)}")
    shape = _widths(spec, "shape", 2, 2)
    kernel = _width(spec, "kernel", MAX_KERNEL)
    if kernel % 2 == 0:
        raise FormatError(f"patchpca kernel must be odd, got {kernel}")
    filters = _width(spec, "filters", min(MAX_FILTERS, kernel * kernel))
    pool = _width(spec, "pool", MAX_POOL)
    if min(shape) < max(kernel, pool):
        raise FormatError(f"patchpca input {shape} is smaller than its kernel {kernel} or pool {pool}")
    if 2 * filters * shape[0] * shape[1] > MAX_CNN_ACTIVATIONS:
        raise FormatError(f"patchpca of {filters} filters over {shape} exceeds {MAX_CNN_ACTIVATIONS} values per input")
    hidden, classes = _widths(spec, "hidden"), _width(spec, "classes")
    _check_params("patchpca", _dense_params([feature_count((shape[0], shape[1]), filters, pool), *hidden, classes]), limits)
    return PatchPCAClassifier((shape[0], shape[1]), kernel, filters, pool, hidden, classes)


def _gauss(spec: dict, limits: Limits) -> nn.Module:
    if set(spec) != {"arch", "inputs", "hidden", "classes", "step", "offset"}:
        raise FormatError(f"gauss spec needs exactly inputs, hidden, classes, step and offset, got {sorted(spec)}")
    try:
        step = float(spec["step"]) if isinstance(spec["step"], str) else math.nan
    except ValueError:
        step = math.nan
    if not (math.isfinite(step) and step > 0):
        raise FormatError(f"gauss step must be a positive decimal string, got {spec['step']!r}")
    offset = spec["offset"]
    if isinstance(offset, bool) or not isinstance(offset, int) or abs(offset) > 2**31:
        raise FormatError(f"gauss offset must be an integer of at most 2**31 in size, got {offset!r}")
    inputs, hidden, classes = _width(spec, "inputs", 2**16), _widths(spec, "hidden"), _width(spec, "classes")
    _check_params("gauss", _dense_params([inputs, *hidden, 1]) + 1, limits)  # + log_s
    return GaussRegressor(inputs, hidden, classes, step, offset)


def load_weights(model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Put decoded tensors into `model`; names and shapes must match its state dict exactly."""
    own = model.state_dict()
    if set(own) != set(tensors):
        raise FormatError(f"model tensors {sorted(tensors)} do not match the architecture's {sorted(own)}")
    for name, value in tensors.items():
        if tuple(value.shape) != tuple(own[name].shape):
            raise FormatError(f"model tensor {name!r} has shape {tuple(value.shape)}, the architecture needs "
                              f"{tuple(own[name].shape)}")
    model.load_state_dict({k: v.to(torch.float32) for k, v in tensors.items()})
