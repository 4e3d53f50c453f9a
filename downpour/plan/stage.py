"""What a plan is made of: a network's stages (or layers), per example, float32, and a step over the schedule.

:mod:`downpour.plan.network` fills them in (the cat family on paper, :mod:`downpour.plan.cat_formulas`; any other
model from its built layers and torch's count of its training step, :mod:`downpour.plan.counted`);
:mod:`downpour.plan.predict` puts them on a cluster.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

__all__ = ["Stage", "Network", "over_schedule"]


@dataclass(frozen=True)
class Stage:
    """One stage (cat family) or one layer (any other model), per example, float32.

    ``positions``: output positions of the stage's filter (H x W); ``connections``: encoder weights;
    ``params``: trainable weights (encoder, plus the untied decoder); ``flops_fwd_bwd``: forward and
    backward per example (a cat stage's training step; a model's layer on its inference path; the plan JSON row's key
    too, where ``network.flops_train`` is the step's; a plan JSON from before 2026-12-05 names it ``flops_train``);
    ``act_floats``: the values (bytes / 4) one example keeps for the
    backward pass of a training step (a model's layer: what autograd saved while the layer ran). The ``window`` fields describe the spatial layout model parallelism cuts.
    """

    name: str
    out_shape: tuple[int, ...]
    positions: int
    connections: int
    params: int
    flops_fwd: int
    flops_fwd_bwd: int
    act_floats: float
    # spatial layout, cat stages only (zeros elsewhere): input (C, H, W), filter k and step s, pool q and step u, LCN window l
    in_shape: tuple[int, ...] = ()
    maps: int = 0
    kernel: int = 0
    stride: int = 1
    pool: int = 0
    pool_stride: int = 1
    lcn: int = 0
    tied_banks: tuple[int, int] | None = None   # (tH, tW) filter banks when tiled or convolutional; None = untied
    frozen: int = 0                   # weights held but not trained (a Gabor or random first layer's filters)
    decoder: int = 0                  # of ``params``, the untied decoder's (the rest are the encoder's; plan/hub.py)
    copy_floats: float = 0            # per training step, whatever the batch: normalised or expanded filters (plan/held.py),
                                      # a PCD RBM's chains' free energy (plan/counted.py)
    state_floats: float = 0           # the model's buffers (bytes / 4): held whatever the step's graph saves, not trained
                                      # (tica's pooling matrix, an RBM's persistent chains, a cat stage's mask and taps)
    # a cat stage on paper: the part of flops_fwd / flops_fwd_bwd that is its filters' matrix products, what torch's
    # counter counts (it counts no element-wise work: pooling, LCN's arithmetic, normalising the filters); None elsewhere
    products_fwd: float | None = None
    products_train: float | None = None
    # of flops_fwd / flops_fwd_bwd, per example, putting the filters at their norm (once a step, over the batch): split
    # the runner's way an untied stage's partitions do it for their blocks, the replica's process for a tiled one's banks
    norm_fwd: float = 0
    norm_train: float = 0
    # of flops_fwd / flops_fwd_bwd, per example, L2 pooling (forward; trained, backward too) and LCN (forward, where the
    # step reads it: flops_fwd_bwd has it only in a joint step below the top stage, plan/cat_formulas.py cat_stages):
    # timed at their own rate, not the filters' (Rates.pool_lcn_flops_per_core); 0 elsewhere
    pool_lcn_fwd: float = 0
    pool_lcn_train: float = 0
    lcn_trained: bool = True          # a step that trains the stage runs its LCN (a cat stage: joint, below the top)
    fields_floats: float = 0          # of act_floats, the input's receptive fields the untied kernel's forward keeps
                                      # for the weight gradient (plan/held.py kept_fields); 0 elsewhere


@dataclass(frozen=True)
class Network:
    name: str
    input_shape: tuple[int, ...]
    stages: tuple[Stage, ...]
    assumptions: tuple[str, ...] = ()
    schedule: str = "joint"          # train.schedule: "greedy" trains one cat stage per step (:func:`over_schedule`)
    counted: tuple[float, ...] = ()  # not the cat family: torch's count of a training step per example, one per
                                     # greedy stage (:mod:`downpour.plan.counted`); the stages are then its layers
    uncut: str = ""                  # why the model-parallel runner refuses K > 1 (cut_refusal; the paper's pipeline: "")
    banks_shared: bool = True        # K partitions share a tiled stage's banks, as the runner's do (their own shards);
                                     # the paper's pipeline: each partition owns its tiles
    # a greedy cat run's frozen forward passes per step of each stage, the frozen cache answering the rest
    # (plan/cache_hits.py; (): every step runs them, as on data that never recurs); only where one process holds the
    # replica (K = 1)
    frozen_runs: tuple[float, ...] = ()

    @property
    def flops_train(self) -> float:
        """FLOPs of one training example, averaged over the schedule's steps."""
        if self.counted:
            return sum(self.counted) / len(self.counted)
        return over_schedule(self.schedule, [s.flops_fwd_bwd for s in self.stages], [s.flops_fwd for s in self.stages],
                             self.frozen_runs)

    @property
    def products_train(self) -> float:
        """The part of :attr:`flops_train` that is matrix products, what torch's FLOP counter counts: all of it where
        torch counted the step; on paper (the cat family), the filters' products (torch's count of a built cat-demo
        step adds LCN's banded window products, 6.9 k of 2.43 M per example, a frozen stage 1's in stage 2's steps),
        without the element-wise work the formulas count too (pooling, LCN, normalising the filters: cat-demo's
        2.52 MFLOP is 2.43 M of products)."""
        if self.counted:
            return self.flops_train
        return over_schedule(self.schedule, [s.products_train or 0 for s in self.stages],
                             [s.products_fwd or 0 for s in self.stages], self.frozen_runs)

    @property
    def params(self) -> int:
        return sum(s.params for s in self.stages)

    def without_pool_lcn(self) -> "Network":
        """This network with its stages' L2 pooling and LCN FLOPs left out (what the plan times at their own rate)."""
        return replace(self, stages=tuple(replace(s, flops_fwd=s.flops_fwd - s.pool_lcn_fwd, pool_lcn_fwd=0,
                                                  flops_fwd_bwd=s.flops_fwd_bwd - s.pool_lcn_train, pool_lcn_train=0)
                                          for s in self.stages))

    @property
    def connections(self) -> int:
        return sum(s.connections for s in self.stages)



def over_schedule(schedule: str, train: list[float], forward: list[float], runs: Sequence[float] = ()) -> float:
    """Per example, what a training step of stages costing ``train`` (trained) and ``forward`` (forward only) costs,
    averaged over the schedule's steps: joint, every stage trains on its own cost (the sum of ``train``); greedy,
    stage i trains for 1/n of the steps while the stages below it run forward only and the ones above it do not run
    (``CatNet.forward_train``). Planned as joint, cat-demo (greedy) would read 4.42 MFLOP per
    example, 1.7x the 2.60 M its steps take on average (torch counts 3.21 M at stage 1, 1.68 M at stage 2).
    ``runs[i]``: greedy, the forward passes of the stages below i per step of stage i (the frozen cache answers the
    rest: :mod:`downpour.plan.cache_hits`); () : one a step."""
    if schedule != "greedy" or len(train) < 2:
        return sum(train)
    runs = runs or [1.0] * len(train)
    return sum(runs[i] * sum(forward[:i]) + train[i] for i in range(len(train))) / len(train)
