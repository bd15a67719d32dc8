"""Adapters that drive a training-aware piece (pieces.Pruner) from a framework's own trainer.

    from nncodec.compress.training.adapters.hf import NNCodecCallback          # transformers.Trainer
    from nncodec.compress.training.adapters.lightning import NNCodecCallback   # lightning Trainer

Each module imports its framework when it is imported itself (pip install nncodec[hf] / [lightning]);
nothing else in nncodec imports them.
"""
