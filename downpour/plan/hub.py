"""A split replica's own process, as the Ray runner runs it: the machine it takes, the bytes it moves and the work
it runs itself (:func:`replica_flops`).

With K >= 2 partitions the Ray runner (``ps/cluster_on_ray.py``, ``ps/partitions_on_ray.py``) starts, beside a
replica's K partition actors, the replica's own process (its worker actor): an actor of its own, the only one of the
replica that reserves a CPU. The plan gives it a machine, as it gives every process one, and so does the runner on a
cluster of that many nodes (``ps/connect_on_ray.spot``: partitions, then the replicas' processes, then the shards,
one index round-robin over the nodes; docs/plan.md). It keeps the
weightless pooling, LCN and cost of every stage and the tiled stages' shared banks, and each call of a stage goes
through it:

- forward, it sends each partition its block's input window and gets back the block's codes and, while training,
  the window's reconstruction (tied, or through the untied decoder); backward, it sends the gradients of both, and a
  lent bank's gradient comes back (per example, a trained stage: 3 windows + 2 code blocks; forward only, a greedy
  step's stages below the trained one: a window and a code block; a frozen stage trained at its cost: 2 windows + a
  code block, no gradient to send, unless it has an untied decoder, whose gradient needs the reconstruction's: 3
  windows + a code block, the codes' gradient not sent, as the frozen encoder drops it: ``Stage.decoder``);
- every call lends each partition its block's share of a tiled stage's banks, and a call that decodes (not a
  forward-only one) its untied decoder's banks too (:func:`lends_banks`, :func:`lent`).

The partitions never talk to each other: there is no halo exchange between them (DistBelief's pipeline, which the
paper's network is planned as, has one, and no such process: :func:`hub_runs`).
"""
from __future__ import annotations

from typing import Any

from downpour.parallel.blocks import split_blocks
from downpour.plan.stage import Network, Stage, over_schedule

__all__ = ["block_copies", "block_held", "codes_size", "filter_flops", "hub_runs", "lends_banks", "lent", "machines_of",
           "replica_flops", "replica_held", "replica_machines", "replica_memory", "stage_calls", "windows"]


def codes_size(stage: Stage) -> tuple[int, int]:
    """(Ho, Wo): the stage's filter output, the grid a model-parallel replica cuts into blocks."""
    h, w = stage.in_shape[1:]
    return (h - stage.kernel) // stage.stride + 1, (w - stage.kernel) // stage.stride + 1


def hub_runs(net: Network, k: int) -> bool:
    """Whether ``k`` partitions of ``net`` run as the Ray runner runs them, through their replica's own process:
    any split network but the paper's (planned as DistBelief's pipeline, ``Network.banks_shared`` False)."""
    return k > 1 and net.banks_shared


def replica_machines(net: Network, r: int, k: int) -> int:
    """Machines the ``r`` replicas' own processes take beside their partitions (module docstring): a machine each,
    as the plan gives every process, where :func:`hub_runs`. Without them ``--config main
    --replicas 3 --partitions 2 --shards 2`` would read 8 machines, where the runner starts 11 actors."""
    return r if hub_runs(net, k) else 0


def machines_of(net: Network, r: int, k: int, s: int) -> int:
    """Machines a layout of ``r`` replicas of ``k`` partitions and ``s`` shards takes."""
    return r * k + replica_machines(net, r, k) + s


def windows(net: Network, k: int) -> dict[str, Any]:
    """Floats per example a step moves between the replica and its ``k`` partitions for the stages' calls (module
    docstring), by the schedule: ``largest`` the most one partition sends and receives (stage by stage), ``replica``
    all K together, the replica's own link, and ``replica_by_stage`` that of a greedy step of each stage; 0 where
    :func:`hub_runs` is not. DistBelief's halo between partitions is not what the runner moves (the main job split in
    2: 2.98 kB per example on each partition's link, where the runner moves 26.35 kB to and from the largest, 51.25 kB
    through the replica). A frozen encoder's codes' gradient is not counted (the runner does not send it): the main
    job at ``model.decoder=untied`` under a Gabor first layer moves 41.25 kB through the replica, 51.25 kB with it."""
    if not hub_runs(net, k):
        return {"largest": 0.0, "replica": 0.0, "replica_by_stage": [0.0] * len(net.stages)}
    trained = {"largest": [], "replica": []}
    forward = {"largest": [], "replica": []}
    for stage in net.stages:
        per = _calls(stage, k)
        for who, pick in (("largest", max), ("replica", sum)):
            trained[who].append(pick(t for t, _ in per))
            forward[who].append(pick(f for _, f in per))
    out: dict = {who: over_schedule(net.schedule, trained[who], forward[who]) for who in trained}
    # a greedy step of each stage: the stages below it forward only (over_schedule's mean is of these)
    out["replica_by_stage"] = [sum(forward["replica"][:i]) + t for i, t in enumerate(trained["replica"])]
    return out


def _calls(stage: Stage, k: int) -> list[tuple[int, int]]:
    """Floats per example of each of ``k`` blocks' calls of ``stage``: (trained, forward only); [(0, 0)] off the grid."""
    if not stage.in_shape:
        return [(0, 0)]
    encoder = stage.params > stage.decoder
    # trained: the window, then codes and reconstruction back; the gradients of the reconstruction (a decoder or
    # encoder trains) and of the codes (the encoder trains)
    return [(2 * win + codes + win * (stage.params > 0) + codes * encoder, win + codes)
            for win, codes in _block_floats(stage, k)]


def _block_floats(stage: Stage, k: int) -> list[tuple[int, int]]:
    """(input window, codes block) floats per example of each of ``k`` blocks of ``stage``, as the runner cuts them."""
    c, m = stage.in_shape[0], stage.out_shape[0]
    return [(c * (b.in_rows.stop - b.in_rows.start) * (b.in_cols.stop - b.in_cols.start),
             m * (b.rows.stop - b.rows.start) * (b.cols.stop - b.cols.start))
            for b in split_blocks(codes_size(stage), stage.kernel, stage.stride, k)]


def block_held(stage: Stage, k: int) -> float:
    """Floats per example the largest of ``k`` partition actors keeps from a trained call of ``stage`` to its backward
    (``PartitionActor.encode``'s graph): the input window, which the encoder's weight gradient saves (not a frozen
    encoder's: its codes have no graph; a block's untied kernel keeps no receptive fields, ``untied_apply``'s
    ``keep_fields``), the block's codes and the window's reconstruction (both kept for the backward
    call, whatever trains). Pooling, LCN and the cost run in the replica's process (:func:`replica_held`); a
    forward-only call keeps nothing. DistBelief's share, the stage's activations (pooling and the cost's included) over
    K plus the input, pooling and LCN halos, overstates it: the main job split in 2 would read 1.02 MB a step where its
    largest partition keeps 496.6 kB."""
    return float(max(win * (stage.params > stage.decoder) + codes + win for win, codes in _block_floats(stage, k)))


def block_copies(stage: Stage, k: int) -> float:
    """Floats the largest of ``k`` partition actors keeps per trained call of tiled ``stage``, whatever the batch: the
    lent banks expanded to one per position of its block (``PartitionActor.encode`` expands them always), saved by the
    encoder where it trains and by the untied decoder (a tied one decodes with the encoder's same tensor). The replica
    normalises the banks before lending them (``model.filter_norm``: those copies are its own). A partition's share of
    the stage's copies (:mod:`downpour.plan.held`: encoder and decoder expanded apart, as a whole replica's tiled layer
    runs on a CPU) overstates it: the main job split in 2 would read 1.33 MB where its largest partition keeps
    665.6 kB."""
    c, m = stage.in_shape[0], stage.out_shape[0]
    most = max((b.rows.stop - b.rows.start) * (b.cols.stop - b.cols.start)
               for b in split_blocks(codes_size(stage), stage.kernel, stage.stride, k))
    return float(m * c * stage.kernel ** 2 * most * ((stage.params > stage.decoder) + (stage.decoder > 0)))


def replica_held(stage: Stage) -> float:
    """Floats per example the replica's process keeps from a trained step of ``stage`` to its backward: the stage's
    activations (``Stage.act_floats``, :mod:`downpour.plan.held`) on the whole replica's maps, but for what the filters
    save, which its partitions keep (:func:`block_held`): the input, where the encoder trains; a frozen encoder's codes,
    where its untied decoder trains (the replica keeps the residual alone: its codes have no graph there)."""
    if not stage.act_floats:
        return 0.0
    c, h, w = stage.in_shape
    m, (oh, ow) = stage.out_shape[0], codes_size(stage)
    # (and the receptive fields a whole stage's encoder keeps, plan/held.py: the partitions run it, keeping none)
    return stage.act_floats - stage.fields_floats - (c * h * w if stage.params > stage.decoder else m * oh * ow)


def replica_memory(net: Network, k: int, batch: int) -> dict[str, float]:
    """Bytes the replica's process of ``k`` partitions holds in a step of ``batch`` examples, the partitions' way of
    counting (weights and one gradient, the push; the optimiser's state is on the shards, and the replica's local
    steps between fetches are plain SGD, stateless): the tiled stages' shared banks (frozen ones too) and their
    gradient; its ``LocalParams`` of the trained banks (``PartitionParams.link_shared``): the fetch vector, apart from
    the banks, and the push's summed gradient, beside the step's (67.58 kB for the main job
    split in 2); the model's buffers (the stages' masks and LCN taps: the replica runs every stage whole);
    what the whole replica's maps keep for the backward (:func:`replica_held`: a greedy step's of its largest stage,
    as a partition's); and a step's windows, code blocks, reconstructions and their gradients to and from its
    partitions (:func:`windows`), counted as if all held at once (they are freed as each call returns). All 0 where
    :func:`hub_runs` is not (where it runs, the replica's process has a machine of its own:
    :func:`replica_machines`)."""
    keys = ("replica_weight_bytes", "replica_grad_bytes", "replica_fetch_push_bytes", "replica_state_bytes",
            "replica_act_bytes", "replica_calls_bytes", "replica_memory_bytes")
    if not hub_runs(net, k):
        return dict.fromkeys(keys, 0.0)
    shared = [s for s in net.stages if lends_banks(net, s, k)]
    held = [4 * batch * replica_held(s) for s in net.stages]
    calls = windows(net, k)
    greedy = net.schedule == "greedy"
    trained = 4 * sum(s.params for s in shared)
    out = dict(zip(keys, (4 * sum(s.params + s.frozen for s in shared), trained, 2 * trained,
                          4 * sum(s.state_floats for s in net.stages), max(held) if greedy else sum(held),
                          4 * batch * (max(calls["replica_by_stage"]) if greedy else calls["replica"]))))
    out["replica_memory_bytes"] = sum(out.values())
    return out


def filter_flops(stage: Stage) -> tuple[float, float]:
    """(trained, forward only) FLOPs per example of ``stage``'s filter work, what a split replica's partitions share
    between them by their blocks: the encoder's and decoder's products and, untied, normalising their own filters.
    The rest of the stage (pooling, LCN, a tiled stage's banks normalised before they are lent) is its replica's
    process's (:func:`replica_flops`)."""
    untied = stage.tied_banks is None
    return ((stage.products_train or 0.0) + stage.norm_train * untied,
            (stage.products_fwd or 0.0) + stage.norm_fwd * untied)


def replica_flops(net: Network, k: int) -> dict[str, Any]:
    """FLOPs per example the replica's process of ``k`` partitions runs itself, on the whole replica's maps, while its
    partitions wait (and they compute while it waits: ``RemoteFilter``'s calls return before it goes on): every
    stage's work but the filters' (:func:`filter_flops`), by the schedule (``train``) and a greedy step of each stage
    (``by_stage``); 0 where :func:`hub_runs` is not. Taking the step as its largest partition's share of every stage's
    FLOPs, pooling and LCN included, with the replica's process computing nothing, misreads it (the main job split in
    2 would read compute 157.9 µs, step 14.2 ms)."""
    if not hub_runs(net, k):
        return {"train": 0.0, "by_stage": [0.0] * len(net.stages)}
    own = [filter_flops(s) for s in net.stages]
    trained = [s.flops_fwd_bwd - t for s, (t, _) in zip(net.stages, own)]
    forward = [s.flops_fwd - f for s, (_, f) in zip(net.stages, own)]
    return {"train": over_schedule(net.schedule, trained, forward),
            "by_stage": [sum(forward[:i]) + t for i, t in enumerate(trained)]}


def stage_calls(net: Network, stage: Stage, k: int) -> float:
    """Floats per example a trained call of ``stage`` moves to and from the largest of ``k`` partitions (the plan
    table's ``calls/ex``: the runner's partitions exchange no halo); 0 where :func:`hub_runs` is not."""
    return float(max(t for t, _ in _calls(stage, k))) if hub_runs(net, k) else 0.0


def lends_banks(net: Network, stage: Stage, k: int) -> bool:
    """Whether ``k`` partitions of ``net`` borrow ``stage``'s banks from their replica, as the model-parallel runner
    lends them (``ps/partitions_on_ray.py``): a tiled stage's shared banks are the replica's, which fetches and pushes
    their shards itself, once a cycle, and sends each partition its block's banks with every call (their gradient
    coming back); so a partition's own fetch and push carry its untied filters only."""
    return hub_runs(net, k) and stage.tied_banks is not None and bool(stage.in_shape)


def lent(net: Network, k: int) -> dict[str, float]:
    """Floats a step moves between the replica and its partitions for the shared banks, by the schedule (a greedy
    step lends the stages it runs, and gets back the trained one's gradient): ``largest`` the most one partition
    receives and returns, ``replica`` all K together (:func:`~downpour.parallel.partition.block_banks`: a block
    borrows min(tH, h) x min(tW, w) banks, frozen ones too, and a trained stage's untied decoder banks; the trained
    ones' gradient comes back). A forward-only call borrows the encoder's banks alone (the decoder's too
    would read 151.55 kB a step for the main job at ``model.decoder=untied``, split in 2, where the runner lends
    143.36 kB)."""
    borrowed = []       # per stage: the banks each block borrows (none where nothing is lent), of how many
    for stage in net.stages:
        if lends_banks(net, stage, k):
            th, tw = stage.tied_banks
            borrowed.append(([min(th, b.out_size[0]) * min(tw, b.out_size[1])
                              for b in split_blocks(codes_size(stage), stage.kernel, stage.stride, k)], th * tw))
        else:
            borrowed.append(([0], 1))
    out = {}
    for who, pick in (("largest", max), ("replica", sum)):
        # trained: the encoder's banks and the decoder's, the trained ones' gradients back; forward, the encoder's
        trained = [pick(n) * (s.params + s.frozen + s.params) / banks for s, (n, banks) in zip(net.stages, borrowed)]
        forward = [pick(n) * (s.params + s.frozen - s.decoder) / banks for s, (n, banks) in zip(net.stages, borrowed)]
        out[who] = over_schedule(net.schedule, trained, forward)
    return out

