"""``data.source = "gaussian"``: standard normal vectors, the input of the teacher–student task.

x ~ N(0, I_d) with d = ``data.size``, stored as (N, 1, 1, d) so it travels through the same
:class:`~downpour.data.dataset.Dataset` as images; the label of a row is the index of its largest
coordinate, so ``data.split = "by-label"`` gives each worker a different region of input space
(worker 0 the rows where the first coordinates dominate, and so on).
"""
from __future__ import annotations

import numpy as np


def gaussian_samples(n: int, dim: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(x (n, 1, 1, dim) float32, y (n,) int64 = argmax of each row)."""
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x.reshape(n, 1, 1, dim), x.argmax(axis=1).astype(np.int64)
