"""Spike-and-slab variational pruning (after Saha, Liu & Liang, "Efficient Model Compression for
Bayesian Neural Networks", arXiv 2411.00273): every Linear/Conv weight gets a Bernoulli inclusion
variable and a Gaussian slab; the posterior inclusion probabilities (PIPs) decide what is pruned,
can be stored in the file (`pip` component) and rank input features.

    from nncodec.compress.spike_slab import spike_slab, save_spike_slab
    model = spike_slab(model, loader, torch.nn.functional.cross_entropy, epochs=10, prior_inclusion=1e-2)
    save_spike_slab(model, "model.nnc", steps=steps, keep_pip=True)

Pieces for your own loop: `SpikeSlab`, a training.pieces.Pruner (penalty / add_gradients / after_step /
masks / prune / freeze_mask / to_state_dict / save, plus pips).
"""

from .elbo import bernoulli_kl, input_feature_pip, lrt_weight_moments, phi_update, slab_kl, spike_slab_kl
from .export import pip_compressor, save_spike_slab, spike_slab_state
from .features import (
    complementary_halves,
    model_feature_pip,
    path_feature_pip,
    select_features,
    selection_frequency,
)
from .procedure import spike_slab
from .variational import SpikeSlab

__all__ = ["spike_slab", "SpikeSlab", "save_spike_slab", "pip_compressor", "spike_slab_state", "phi_update",
           "slab_kl", "bernoulli_kl", "spike_slab_kl", "lrt_weight_moments", "input_feature_pip",
           "path_feature_pip", "model_feature_pip", "select_features",
           "complementary_halves", "selection_frequency"]
