"""The seeds a cluster run's workers draw from, one formula each, shared by the simulator and the Ray runner so that
both draw the same numbers: a worker's batch order (:func:`batch_seed`), torch's RNG in a worker's process
(:func:`worker_seed`, :func:`worker_rng`, :func:`seed_rng`) and in a model-parallel partition's
(:func:`partition_seed`); and whether a checkpoint's seed steps were seeded with worker 0 on the local loop's stream
(:data:`LOCAL_FIRST`, :func:`seeds_local_first`)."""
from __future__ import annotations

from typing import Any

import torch


def batch_seed(seed: int, wid: int, start_step: int, local_first: bool = True) -> int:
    """A worker's batch-order seed; a resumed run reseeds from the step it resumes at. Worker 0's stream
    from step 0 is the local loop's (``seed + 1``), so one worker without staleness trains the local run
    bit for bit; the others, and every re-seed, differ from it and from one another. ``local_first=False``:
    worker 0's seed before 2026-12-05 (the formula the others keep), which a checkpoint written before then
    goes on with (:data:`LOCAL_FIRST`)."""
    if local_first and wid == 0 and start_step == 0:
        return seed + 1
    return seed * 1_000_003 + 7919 * (wid + 1) + start_step


def worker_seed(seed: int, wid: int, start_step: int) -> int:
    """The seed of torch's RNG in Ray worker ``wid``'s process (the random numbers its training draws: an RBM's Gibbs
    samples, a denoising cost's noise, dropout), started or restarted at ``start_step`` (a replacement's, recorded
    as ``seed_step`` in its ``worker-restarted`` event; a resume's: the step it resumes at), as :func:`batch_seed`
    re-seeds its batch order; another multiplier, so a worker's two generators never share a seed."""
    return seed * 1_000_003 + 15_485_863 * (wid + 1) + start_step


def partition_seed(seed: int, wid: int, p: int, start_step: int) -> int:
    """The seed of torch's RNG in the process of Ray worker ``wid``'s partition ``p`` (model parallelism), started with
    its worker at ``start_step``: :func:`worker_seed`'s, moved by a third multiplier, so no partition shares its
    worker's seed or another's. A partition draws nothing (its block's codes and reconstruction; the cost's noise and
    dropout are its worker's, a frozen stage's filters come drawn from the run's model); seeded all the same, a draw
    added there would repeat with ``--seed``."""
    return worker_seed(seed, wid, start_step) + 32_452_843 * (p + 1)


def worker_rng(run_rng: torch.Tensor, seed: int, wid: int, start_step: int) -> int | torch.Tensor:
    """What Ray worker ``wid``'s process seeds torch's RNG from (:func:`seed_rng`): worker 0 from step 0 draws on from
    the run's RNG state once its initial model is drawn (``run_rng``: :attr:`~downpour.ps.setup.ClusterSetup.rng`),
    as the local loop does, so a one-worker run draws the local run's random numbers; every other worker, and every re-seed, from
    :func:`worker_seed`; the simulator's workers too, each its own state (:mod:`downpour.ps.sim_rng`). (A Ray
    worker that did not seed torch would begin at a random seed, and a sync run of rbm-digits would never repeat.)"""
    return run_rng if wid == 0 and start_step == 0 else worker_seed(seed, wid, start_step)


def seed_rng(seed: int, start: int | torch.Tensor) -> None:
    """Seed this process's torch RNG from :func:`worker_rng`'s ``start``: an int seeds the CPU's and every GPU's; a
    CPU state is set over ``seed`` (the run's), which then seeds the GPUs', as the local loop's are."""
    torch.manual_seed(seed if isinstance(start, torch.Tensor) else start)
    if isinstance(start, torch.Tensor):
        torch.set_rng_state(start)


# a checkpoint's key saying its streams' seed steps were seeded by batch_seed(..., local_first=True); one written
# before 2026-12-05 lacks it, and its worker 0 goes on with the stream it began (a resume never changes a stream)
LOCAL_FIRST = "batch_seeds_local_first"


def seeds_local_first(saved: dict[str, Any]) -> bool:
    """Whether a checkpoint's recorded seed steps (a simulator's whole state or its streams) were seeded with
    worker 0 on the local loop's stream; a fresh run (none recorded) is."""
    return bool(saved.get(LOCAL_FIRST)) or not (saved.get("sim") or saved.get("streams"))
