"""A Downpour worker: one model replica training on its own data shard.

It fetches the parameters every ``n_fetch`` steps, runs the shared training step
(:func:`~downpour.train.step.train_step`), accumulates gradients, and every ``n_push`` steps hands
back one push: the summed gradient cut into one slice per server shard. Between fetches it moves
its own replica with plain SGD, as in DistBelief's Downpour algorithm, so ``n_fetch > 1`` still
trains on fresh local parameters.

No I/O here: the simulator and the Ray actor call :meth:`load`, :meth:`step` and :meth:`take_push`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from torch import Tensor

from downpour.batch import Batch
from downpour.models.base import FeatureModel
from downpour.objectives import Objective
from downpour.train.flat import ParamLayout
from downpour.train.step import NonFiniteLoss, train_step
from downpour.train.telemetry import PartsMean


@dataclass
class Push:
    """One worker's contribution: ``grads[j]`` is the (stop_j - start_j,) slice for shard j."""

    worker: int
    seq: int                     # the worker's push number, 0, 1, 2, ...
    grads: list[Tensor]
    base: list[int]              # per shard, the version the first gradient in it was computed from
    steps: int                   # training steps accumulated in it
    samples: int
    loss: float                  # mean loss over those steps (NaN when none was finite: no mean to give)
    parts: dict[str, float] = field(default_factory=dict)
    skipped: int = 0             # steps whose cost was NaN/Inf (nothing accumulated)
    clock_gap: int = 0           # set by the runner: clocks ahead of the slowest worker when the cycle began
    # the greedy stages its steps trained (None: every stage, a joint schedule): the shards hold the others'
    # tensors still (Shard.live_ranges), which the worker pushed as zeros
    stages: tuple[int, ...] | None = None


OnPush = Callable[[Push, dict], None]   # a runner's callback for each applied push: (the push, its record)


def push_record(results: Sequence[Mapping[str, Any]], clock_gap: int) -> dict[str, Any]:
    """What the runners record of one push from the shards' answers (``PushResult.as_dict()``, the
    Ray shards' dicts): its staleness (mean and max over shards), how many shards accepted it, the
    newest version it produced, and the pushing worker's clock gap."""
    stale = [r["staleness"] for r in results]
    return {"staleness": sum(stale) / len(stale), "staleness_max": max(stale), "clock_gap": clock_gap,
            "accepted": sum(r["accepted"] for r in results), "version": max(r["version"] for r in results)}


class LocalParams:
    """A replica's parameters held in this process: fetched slices written into the model, each
    step's gradient added to the push being built, plain SGD on the replica between fetches."""

    def __init__(self, model: FeatureModel, local_lr: float, n_fetch: int):
        self.model, self.layout, self.local_lr, self.n_fetch = model, ParamLayout(model), local_lr, n_fetch
        self.numel = self.layout.numel
        self._params = self.layout.params(model)     # looked up once: the replica keeps its parameters
        self._acc: torch.Tensor | None = None        # (numel,) summed gradient of this push

    def load(self, slices: Sequence[Tensor]) -> None:
        """Fetched shard slices (one (n_j,) tensor per shard, or the whole (numel,) vector) into the replica."""
        vec = slices[0] if len(slices) == 1 else torch.cat([torch.as_tensor(s) for s in slices])
        self.layout.vector_to_params_list(vec, self._params)

    def add_grads(self) -> None:
        """Add the gradients the last step left in ``.grad`` to the push."""
        g = self.layout.grads_to_vector_list(self._params)   # a fresh (numel,) tensor
        if self._acc is None:
            self._acc = g      # the first gradient of a push is kept as is: no zero-fill, no add
        else:
            self._acc += g
        if self.n_fetch > 1:  # local SGD until the next fetch overwrites the replica
            with torch.no_grad():
                vec = self.layout.params_to_vector_list(self._params).add_(g, alpha=-self.local_lr)
            self.layout.vector_to_params_list(vec, self._params)

    def discard(self) -> None:
        """A skipped step's gradients: nothing to drop here (``train_step`` cleared the replica's)."""

    def drop(self) -> None:
        """The push being built is dropped (:meth:`Worker.drop_push`): its summed gradient goes."""
        self._acc = None

    def take(self, bounds: Sequence[tuple[int, int]], seq: int, base: Sequence[int],
             stages: tuple[int, ...] | None = None) -> list[Tensor]:
        """The push's summed gradient as views sliced per shard; starts the next push. A push whose every
        step was skipped (non-finite costs) has no gradient: it goes as NaN, which every shard rejects
        ("non-finite") and, under sync, counts as the worker's turn. (Zeros were accepted: averaged into
        a sync round they shrank its step; in async they were an update that moved nothing but the clock.)"""
        acc = self._acc if self._acc is not None else torch.full((self.numel,), math.nan)
        self._acc = None       # the push owns those slices now
        return [acc[a:b] for a, b in bounds]


class Worker:
    """``params``: where the replica's parameters live (default :class:`LocalParams`: in this
    process; a model-parallel replica's are in its partitions, see ``ps.partitions_on_ray``). ``reread``: keep the
    batches of the push being built, so a push dropped unsent (:meth:`drop_push`) has its batches trained again."""

    def __init__(self, wid: int, model: FeatureModel, objective: Objective, batches: Iterator[Batch],
                 bounds: Sequence[tuple[int, int]], n_fetch: int = 1, n_push: int = 1, local_lr: float = 0.0,
                 gated: bool = False, seq: int = 0, params: Any = None, reread: bool = False):
        self.wid, self.model, self.objective, self.batches = wid, model, objective, batches
        self.params = params or LocalParams(model, local_lr, n_fetch)
        self.bounds = list(bounds)
        if self.bounds[-1][1] != self.params.numel:
            raise ValueError(f"worker {wid}: shards cover {self.bounds[-1][1]} values, the model has {self.params.numel}")
        self.n_fetch, self.n_push, self.local_lr, self.gated = n_fetch, n_push, local_lr, gated
        self.seq = seq
        self.reread = reread
        self._drawn: list[Batch] = []    # (reread) the batches the push being built drew, in order
        self._again: list[Batch] = []    # (reread) a dropped push's batches, read before the stream's next
        self.steps = 0
        self._since_fetch: int | None = None         # None: never fetched
        self._stage: int | None = None               # the greedy stage of the last step (None: every stage, or none yet)
        self._trained: set[int | None] = set()       # the stages this push's steps trained (None: every stage)
        self._versions = [0] * len(self.bounds)
        self._acc_steps = 0
        self._base: list[int] = []
        self._mean = PartsMean()    # the push's steps: each part over the steps that reported it, samples, loss
        self._skipped = 0

    def fetch_due(self, stage: int | None = None) -> bool:
        """Fetch before the next step (which trains greedy stage ``stage``)? Every n_fetch steps; at a greedy
        run's first step of a new stage, which the coordinator let start once the stage before had landed
        (else, with n_fetch > 1, stage 2's first steps would read a copy of stage 1 fetched before it
        finished); and ``gated`` (a gate that bounds clocks: bounded:K, sync) at the start of every push, so a
        push reads what the gate promises: a sync round's pushes start from one version, and bounded:K's read
        no update older than K clocks (with n_fetch > n_push a cached copy skipped whole cycles: 31 versions
        stale under bounded:0)."""
        if self._since_fetch is None or self._since_fetch >= self.n_fetch:
            return True
        if stage is not None and self._stage is not None and stage != self._stage:
            return True
        return self.gated and self._acc_steps == 0

    def load(self, slices: Sequence[Tensor], versions: Sequence[int]) -> None:
        """Write fetched shard slices (one (n_j,) tensor per shard, or the whole (numel,) vector) into the replica."""
        self.params.load(slices)
        self._versions = list(versions)
        self._since_fetch = 0

    def step(self, stage: int | None = None) -> None:
        """One training step on the next batch of this worker's shard; the gradient is accumulated.

        ``stage``: greedy layer-wise training trains only that stage (1-based); None trains all.
        """
        if self._since_fetch is None:
            raise RuntimeError(f"worker {self.wid}: step before the first fetch")
        if self._acc_steps == 0:
            self._base = list(self._versions)
        self._acc_steps += 1
        self._since_fetch += 1
        self.steps += 1
        self._stage = stage
        self.model.set_stage(stage)
        batch = self._again.pop(0) if self._again else next(self.batches)
        if self.reread:
            self._drawn.append(batch)
        try:
            result = train_step(self.model, self.objective, batch)
        except NonFiniteLoss:
            self._skipped += 1  # the server never sees a poisoned gradient
            # nor does the next step: partitions elsewhere drop what its backward left them (kept, their gradients
            # would stay, and the next step's backward add onto them)
            self.params.discard()
            return
        self.params.add_grads()
        self._trained.add(stage)    # (after the step's gradient: a step skipped for its cost gave none)
        self._mean.add(result.parts, result.samples, result.loss)

    def buffers(self) -> dict[str, Tensor]:
        """The replica's buffers, on the CPU (an RBM's persistent chains): what the run's model file keeps of them,
        as the local loop's keeps its own (not the driver's copy's: it never trains, its buffers stay zeros)."""
        return {name: b.detach().cpu().clone() for name, b in self.model.named_buffers()}

    def take_push(self) -> Push:
        """The accumulated push (the summed gradient, as views sliced per shard); resets the accumulator."""
        finite = self._mean.steps
        parts, samples, loss = self._mean.pop()   # a push across a greedy stage switch: no false cliff in a part
        stages = None if None in self._trained else tuple(sorted(self._trained))
        push = Push(self.wid, self.seq, self.params.take(self.bounds, self.seq, self._base, stages), self._base,
                    self._acc_steps, samples, loss if finite else math.nan,   # 0.0 read as a converged run
                    parts, self._skipped, stages=stages)
        self.seq += 1
        self._acc_steps, self._skipped, self._trained, self._drawn = 0, 0, set(), []
        return push

    def drop_push(self) -> None:
        """Drop the push being built, unsent (its seq is the next push's), and fetch before the next step: a
        model-parallel replica whose partition died mid-cycle (``ps.partition_restarts_on_ray``) goes on with a new
        partition, whose filters the fetch fills, and none of the dropped cycle's half-made gradient. Its batches
        (``reread``) are read again, first, by the next steps: its steps are handed out again
        (``Coordinator.drop_cycles``, to this worker or another); were this worker's stream to go on past them, they
        would be drawn and never trained (n_push batches a drop, more with cycles queued behind it)."""
        self._again, self._drawn = self._drawn + self._again, []
        self.params.drop()
        self._mean.pop()
        self._acc_steps, self._skipped, self._trained, self._since_fetch = 0, 0, set(), None
