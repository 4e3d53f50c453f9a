"""The in-memory dataset every runner trains on: tensors, provenance, sharding, seeded batches."""
from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, Iterator

import torch
from torch import Tensor

from downpour.batch import Batch

if TYPE_CHECKING:   # only for annotations: dataset.py must not import its own processing steps
    from downpour.data.augment import Augment
    from downpour.data.preprocess import Preprocess
    from downpour.data.whitening import ZCAWhitener


BLOCK_BATCHES = 64          # Dataset.batches gathers up to this many batches' rows at once ...
BLOCK_BYTES = 4 << 20       # ... within this many bytes (large images: one batch at a time)


def shard_range(i: int, n: int, size: int, what: str = "samples") -> tuple[int, int]:
    """[start, stop) of shard ``i`` of ``n`` over ``size`` rows or items: [i*size//n, (i+1)*size//n),
    so the n shards are disjoint, cover everything and differ in size by at most one."""
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"shard {i} of {n}: need 0 <= i < n and n >= 1")
    if n > size:
        raise ValueError(f"cannot split {size} {what} into {n} shards: every worker needs at least one")
    return i * size // n, (i + 1) * size // n


class Dataset:
    """Images or patches held in memory as float32.

    Attributes
    ----------
    x : Tensor, (N, C, H, W) float32
    y : Tensor (N,) int64, or None where the source has no labels
    input_shape : tuple (C, H, W)
    info : dict, JSON-able: source, n_images, n_samples, n_skipped, skipped [{"file", "reason"}], ...
    whitener : ZCAWhitener or None; ``x`` is already whitened, ``whitener.inverse`` undoes it
    augment : Augment or None; applied to every batch that :meth:`batches` yields
    preprocess : Preprocess or None; the fitted normalisation + whitening, replayed by :meth:`prepare`
    """

    def __init__(self, x: Tensor, y: Tensor | None = None, info: dict[str, Any] | None = None,
                 whitener: "ZCAWhitener | None" = None, augment: "Augment | None" = None,
                 preprocess: "Preprocess | None" = None) -> None:
        if not isinstance(x, Tensor) or x.ndim != 4:
            raise ValueError(f"Dataset.x must be a (N, C, H, W) tensor, got {getattr(x, 'shape', type(x))}")
        if x.dtype != torch.float32:
            raise ValueError(f"Dataset.x must be float32, got {x.dtype}")
        if y is not None:
            if y.ndim != 1 or len(y) != len(x):
                raise ValueError(f"Dataset.y must be ({len(x)},), got {tuple(y.shape)}")
            if y.dtype != torch.int64:
                raise ValueError(f"Dataset.y must be int64, got {y.dtype}")
        self.x = x
        self.y = y
        self.info: dict[str, Any] = dict(info or {})
        self.info.setdefault("n_samples", len(x))
        self.whitener = whitener
        self.augment = augment
        self.preprocess = preprocess

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.x.shape[1:])  # type: ignore[return-value]

    def __len__(self) -> int:
        return self.x.shape[0]

    def __repr__(self) -> str:
        labels = "labelled" if self.y is not None else "unlabelled"
        return f"Dataset({self.info.get('source', '?')}, n={len(self)}, shape={self.input_shape}, {labels})"

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (a shard sent to a Ray worker) with only its own rows: a view's pickle holds the whole
        storage it views, so every worker would be sent, and keep, every worker's samples."""
        state = dict(self.__dict__)
        for key in ("x", "y"):
            t = state[key]
            if t is not None and t.untyped_storage().nbytes() > t.numel() * t.element_size():
                state[key] = t.clone(memory_format=torch.contiguous_format)
        return state

    def prepare(self, x: Tensor) -> Tensor:
        """New raw images (M, C, H, W) -> prepared exactly like this set's samples (same normalisation
        statistics, same whitening matrix), e.g. held-out images for analysis. No augmentation."""
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"prepare: images of shape {tuple(x.shape[1:])}, this dataset's are {self.input_shape}")
        if self.preprocess is not None:
            return self.preprocess(x)
        return self.whitener.transform(x.float()) if self.whitener is not None else x.float()

    def shard(self, i: int, n: int) -> "Dataset":
        """Worker ``i`` of ``n``: rows [i*N//n, (i+1)*N//n). The n shards are disjoint and cover all rows.

        Rows are views, not copies (pickled, a shard holds only its own rows). The whitener and
        augmentation are shared with the parent.
        """
        start, stop = shard_range(i, n, len(self))
        info = copy.deepcopy(self.info)
        info["n_samples"] = stop - start
        info["shard"] = {"index": i, "of": n, "start": start, "stop": stop}
        y = None if self.y is None else self.y[start:stop]
        return Dataset(self.x[start:stop], y, info, self.whitener, self.augment, self.preprocess)

    def batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
        """Endless stream of ``Batch(x (B, C, H, W), y (B,) or None)``.

        Every batch has exactly ``batch_size`` rows: the rows are visited in a fresh random order each
        epoch, and a batch that straddles two epochs takes its tail from the next order. The order and
        the augmentation draw only from ``generator``, so a generator seeded the same way gives the
        same batches bit for bit.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        n = len(self)
        if n == 0:
            raise ValueError("cannot draw batches from an empty dataset")
        # Rows are gathered a block of batches at a time (one index_select per block, not per batch: for
        # small rows the per-call cost is most of a step) and each batch is a slice of its block. The block
        # holds only indices already drawn, so the generator is drawn exactly as one batch at a time would.
        row_bytes = self.x[:1].numel() * self.x.element_size()
        per_block = max(1, min(BLOCK_BATCHES, BLOCK_BYTES // max(1, batch_size * row_bytes)))
        pending = torch.empty(0, dtype=torch.int64)
        left = at = 0
        xs = ys = self.x
        while True:
            while len(pending) < batch_size:      # only when the block is used up (it never outruns pending)
                pending = torch.cat([pending, torch.randperm(n, generator=generator)])
            if left == 0:
                left, at = min(len(pending) // batch_size, per_block), 0
                block = pending[:left * batch_size]
                xs = self.x.index_select(0, block)  # x[idx] is ~1000x slower here with 2 intra-op threads (torch 2.13)
                ys = None if self.y is None else self.y.index_select(0, block)
            pending = pending[batch_size:]
            x = xs[at:at + batch_size]
            y = None if ys is None else ys[at:at + batch_size]
            at += batch_size
            left -= 1
            if self.augment is not None:
                x = self.augment(x, generator)
            yield Batch(x, y)
