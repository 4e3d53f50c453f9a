"""Training data: built-in offline images, folders, videos and arrays, as in-memory float32 tensors.

    from downpour.data import build_dataset
    data = build_dataset(cfg.data, seed=cfg.seed)    # Dataset: x (N, C, H, W), y, info, whitener
    for batch in data.shard(0, 2).batches(64, torch.Generator().manual_seed(0)): ...

``lfw_split()`` and ``digits()`` are the fixed labelled sets the analysis scores neurons on
(``lfw_split(fold=(i, k))``, ``lfw_all()`` and ``lfw_indices()``: lfw's folds, for cross-fitting).
See docs/data.md.
"""
from downpour.data.augment import Augment
from downpour.data.build import build_dataset, check_config
from downpour.data.builtin import NATURAL, digits, lfw_all, lfw_indices, lfw_split
from downpour.data.dataset import Dataset
from downpour.data.preprocess import Preprocess
from downpour.data.whitening import ZCAWhitener

__all__ = ["Augment", "Dataset", "NATURAL", "Preprocess", "ZCAWhitener", "build_dataset",
           "check_config", "digits", "lfw_all", "lfw_indices", "lfw_split"]
