"""A greedy schedule's frozen stages, run once per batch of inputs they have seen, not once per step.

In a greedy cat run stage 2 trains on frozen stage 1's output, and the in-memory data set holds fixed crops (no
augmentation by default), visited in a fresh order every epoch: from the second epoch of a stage on, every row's
frozen output has been computed before. :class:`FrozenCache` keeps each row's output, keyed on the batch's shape
and the row's bytes (an exact key: two inputs share an entry only if they are the same bytes, so an augmented or
streamed row that never recurs only misses), and hands a batch back from it when **every** row of the batch is
held and its shape has passed the check below; otherwise the frozen stages run on the whole batch as without a
cache, and its rows are kept. A row's output can depend in its last bits on more than the row: on the batch's size
(the kernels a layer picks by batch size, ``runs_banked``, and an untied layer's GEMM over the batch round a row
differently at 8 rows and at 9, 1e-6), and, on one thread in a batch of 5-7 or 9-11 rows, on its place in the
batch (the GEMM's last columns; measured 2026-12-05 on this project's 2-core VM, torch's CPU BLAS). So rows are
held per batch shape, a batch is answered only from rows computed in batches of its shape, and the first batch of
a shape whose rows are all held is not answered but run, compared with the held rows, and run again rolled by a
row: a shape whose rows come out other than the held ones, or other than moved, is dropped and never held again
(:attr:`exact` False). With that a run is bit for bit the one without the cache
(tests/test_models_frozen_cache.py); the check costs one more frozen forward per shape, only once rows recur (a
step counted on fresh inputs, as ``downpour plan`` counts one, runs the frozen stages once); a run of several
batch sizes (a Sandblaster run's units of a sampled batch) keeps a row once per size.

The frozen weights are compared with the copy the held outputs were made with on every call (a few thousand
values for the main job's stage 1) and everything is dropped when they differ: a parameter server's fetch of
changed weights, or a stage switch. Memory: at most ``limit`` bytes of keys and outputs per model (default
:data:`CACHE_BYTES`); past it, new rows are not kept. The main job's stage 1 holds 4 KiB of input and 4.5 KiB
of output per crop: 8.4 MiB on the local runner for its 2,180 crops, of which 1,012 distinct (lfw's 140 training
images are drawn 9-10 times each to reach data.faces_fraction; a repeat shares its entry), at most that per
worker of two. CPU only (a GPU batch would be copied to the host to be keyed).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

CACHE_BYTES = 64 << 20      # per model: keys and outputs together
_KEYED = (torch.float32, torch.float64)


class FrozenCache:
    """Per-row outputs of a frozen stack, for one set of weights; ``hits`` and ``misses`` count batches."""

    def __init__(self, limit: int = CACHE_BYTES) -> None:
        self.limit = limit
        self.hits = self.misses = 0
        # (frozen tensors, batch shape, dtype) -> whether a row's output is the same wherever it sits in the batch
        self.exact: dict[tuple[int, tuple[int, ...], torch.dtype], bool] = {}
        self.clear()

    def clear(self) -> None:
        self._rows: dict[tuple[tuple[int, ...], bytes], Tensor] = {}
        self._weights: list[Tensor] = []
        self.held = 0        # bytes of keys and outputs

    def __call__(self, weights: Sequence[Tensor], x: Tensor, run: Callable[[Tensor], Tensor]) -> Tensor:
        """``run(x)`` (the frozen stack on the batch ``x``), from the held rows when all of them are; ``weights``:
        every tensor the stack computes with (their number tells stacks of more or fewer stages apart)."""
        if x.device.type != "cpu" or x.dtype not in _KEYED or x.requires_grad:
            return run(x)
        self._check_weights(weights)
        shape = tuple(x.shape)     # per batch size (see above), and a row of other dims is not a held row's bytes
        kind = (len(weights), shape, x.dtype)
        if self.exact.get(kind) is False:
            self.misses += 1
            return run(x)
        keys = [(shape, row.numpy().tobytes()) for row in x.contiguous()]
        held = [self._rows.get(k) for k in keys]
        every = all(h is not None for h in held)
        if every and self.exact.get(kind):
            self.hits += 1
            return torch.stack(held)         # type: ignore[arg-type]
        self.misses += 1
        out = run(x)
        if every:       # a shape's first batch it could answer: run, and checked (see above)
            self.exact[kind] = torch.equal(out, torch.stack(held)) and (  # type: ignore[arg-type]
                len(x) < 2 or torch.equal(run(x.roll(1, 0)), out.roll(1, 0)))
            if not self.exact[kind]:
                self._drop(shape)
            return out
        row_bytes = len(keys[0][1]) + out[0].numel() * out.element_size()
        for key, row in zip(keys, out):
            if key not in self._rows and self.held + row_bytes <= self.limit:
                self._rows[key] = row.clone()
                self.held += row_bytes
        return out

    def _drop(self, shape: tuple[int, ...]) -> None:
        """Forget the rows held for batches of ``shape``."""
        for key in [k for k in self._rows if k[0] == shape]:
            row = self._rows.pop(key)
            self.held -= len(key[1]) + row.numel() * row.element_size()

    def _check_weights(self, now: Sequence[Tensor]) -> None:
        """Drop every held row unless the tensors ``now`` are the ones they were made with."""
        same = len(now) == len(self._weights) and all(
            a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b) for a, b in zip(now, self._weights))
        if not same:
            self.clear()
            self._weights = [t.detach().clone() for t in now]
