"""Training-aware pruning (Barth & von Petersenn, "Efficient compression of neural networks and
datasets", arXiv 2505.17469): the network becomes sparse while it trains, then nncodec stores it.

    from nncodec.compress.training import pmmp, save_pruned
    model = pmmp(model, train_loader, torch.nn.functional.cross_entropy, epochs=20, alpha=2e-5)
    nbytes = save_pruned(model, "model.nnc", steps=search_steps(model, metric, limit))

In your own training loop (also under torch.distributed / DDP; see pieces.py):

    pruner = make_pruner("pmmp", model, alpha=1e-3)
    ... loss = loss_fn(model(x), y) + pruner.penalty(); loss.backward(); opt.step(); pruner.after_step()
    pruner.prune(lambda: validation_loss(model), example_inputs=x)    # RGP -> TAMADE -> RGP, mask frozen
    ... fine-tune: opt.step(); pruner.after_step()
    pruner.save("model.nnc")

Adapters: nncodec.compress.training.adapters.hf (Trainer callback), .lightning (Callback).

Methods (each: model, loader of (inputs, targets), mean loss -> the pruned, fine-tuned model):
pmmp, drr, rl1, tamade_prune, layerwise; `prune(..., method=...)` dispatches by name.
Building blocks: PMMP/DRR/L1 regularisers, tamade_threshold, random_gradient_pruning,
layerwise_prune. Export: pruned_compressor, quantized_state_dict, search_steps, save_pruned;
quantization-aware fine-tuning: quantized_weights (in your loop), finetune_quantized (a loop for a pruned model); steps learned with the weights: LearnedSteps.
"""

from .export import pruned_compressor, quantized_state_dict, save_pruned, search_steps, steps_for_levels
from .layerwise import expected_squared_error, layerwise_objective, layerwise_prune
from .learned_steps import LearnedSteps
from .loop import Regularizer, Runtime
from .penalties import DRR, L1, drr_gradient, drr_penalty
from .pieces import CompressionPiece, Pruner, PruneReport
from .pmmp import PMMP, pmmp_bracket, pmmp_gradients, pmmp_penalty
from .procedure import METHODS, Options, drr, layerwise, pmmp, prune, random_gradient_prune, rl1, tamade_prune
from .pruners import PRUNERS, DRRPruner, LayerwisePruner, PMMPPruner, RL1Pruner, TamadePruner, make_pruner
from .quantize_aware import finetune_quantized, quantized_weights
from .rgp import random_gradient_pruning
from .tamade import TamadeResult, tamade, tamade_threshold
from .targets import masks_from_weights, select_parameters

__all__ = [
    "CompressionPiece", "Pruner", "PruneReport", "make_pruner", "PRUNERS", "PMMPPruner", "DRRPruner", "RL1Pruner",
    "TamadePruner", "LayerwisePruner",
    "pmmp", "drr", "rl1", "tamade_prune", "layerwise", "prune", "METHODS", "Options", "random_gradient_prune",
    "PMMP", "DRR", "L1", "Regularizer", "Runtime", "pmmp_bracket", "pmmp_penalty", "pmmp_gradients",
    "drr_penalty", "drr_gradient", "tamade", "tamade_threshold", "TamadeResult", "random_gradient_pruning",
    "layerwise_prune", "layerwise_objective", "expected_squared_error", "select_parameters", "masks_from_weights",
    "pruned_compressor", "quantized_state_dict", "save_pruned", "search_steps", "steps_for_levels",
    "quantized_weights", "finetune_quantized", "LearnedSteps",
]
