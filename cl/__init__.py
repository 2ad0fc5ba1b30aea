"""Contrastive Explorer core library: data, augmentations, encoders, losses, training, evaluation.

Plain PyTorch, torchvision, scikit-learn and NumPy. Never imports Streamlit.

The names below are the public API; ``import cl`` stays cheap (no torch) and each name is imported
from its module on first use::

    import cl
    made = cl.make_model(cl.TrainConfig(dataset="digits"), "digits.safetensors")
    opened = cl.open_model("digits.safetensors")
    cl.evaluate_model(opened.model, opened.data, "paper")
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_API = {
    # data
    "ImageSet": "data", "load_dataset": "data", "dataset_status": "data", "resolve_data_dir": "data",
    # augmentations
    "AUGMENTATIONS": "augmentations", "get_augmentation": "augmentations", "augment_uint8": "augmentations",
    "augment_to_uint8": "augmentations",
    # encoders
    "ENCODERS": "encoder", "build_encoder": "encoder",
    # losses
    "LOSSES": "losses", "LOSS_CLASSES": "losses", "build_loss": "losses", "PairwiseCosineLoss": "losses",
    "TripletLoss": "losses", "ContrastiveMarginLoss": "losses", "NTXentLoss": "losses", "SupConLoss": "losses",
    "ContrastiveLoss": "losses",
    # samplers
    "draw_negatives": "samplers", "mine_triplets": "samplers", "paper_anchors": "samplers",
    # training
    "TrainConfig": "training", "ResolvedConfig": "training", "resolve_config": "training", "train": "training",
    # the workflows
    "make_model": "workflow", "open_model": "workflow", "train_command": "workflow",
    # evaluation, retrieval, projection
    "embed": "evaluation", "evaluate_model": "evaluation", "evaluate_embeddings": "evaluation",
    "knn_accuracy": "evaluation", "NeighborIndex": "retrieval", "project": "projection",
    # how the space is shaped, and where an image's augmented views land
    "measure": "measures", "measure_embeddings": "measures", "alignment": "measures", "uniformity": "measures",
    "rankme": "measures", "place_views": "placement", "place_in_checkpoint": "placement",
    # checkpoints and export
    "save_checkpoint": "checkpoints", "load_checkpoint": "checkpoints", "read_card": "checkpoints",
    "Card": "checkpoints",
    "export_embeddings": "export", "export_onnx": "onnx_export",
    # training logs for TensorBoard
    "TensorBoardLog": "tensorboard_log",
}

__all__ = sorted(_API)


def __getattr__(name: str):
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'cl' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
