"""Each simulated worker's own torch RNG: the random numbers its training draws (an RBM's Gibbs samples, a
denoising cost's noise, dropout), seeded as a Ray worker's process seeds its own (:func:`~downpour.ps.seeds.worker_rng`:
worker 0 from step 0 goes on from the run's RNG once the initial model is drawn, every other worker and every
re-seed from :func:`~downpour.ps.seeds.worker_seed`), so a simulated run draws what the same run on Ray draws.

The models draw from torch's global RNG, so :meth:`WorkerRngs.drawing` swaps a worker's state in around its step and
out after (3.5 us of CPU a step: bench/sim_rng.py). One shared state for every simulated worker, drawn on in the
order the events run, would give a run of 2+ workers other numbers than on Ray (a one-worker run the same).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import Tensor

from downpour.ps.seeds import seed_rng, worker_rng, worker_seed

State = tuple[Tensor, Tensor | None]   # torch's CPU state, and the current GPU's (None: no GPU in use)


def seeded(start: int | Tensor, seed: int, gpu: bool) -> State:
    """The states :func:`~downpour.ps.seeds.seed_rng` leaves from ``start``; the global RNG is left as it was."""
    with torch.random.fork_rng(devices=range(torch.cuda.device_count()) if gpu else []):   # (manual_seed seeds each)
        seed_rng(seed, start)
        return torch.get_rng_state(), torch.cuda.get_rng_state() if gpu else None


class WorkerRngs:
    """The torch RNG states of ``n`` workers started at ``start_step`` (a resume's step: each worker re-seeded as a
    Ray resume's is; :meth:`restore` then puts back a whole-state checkpoint's; :meth:`restart` re-seeds a lost worker's
    replacement as Ray seeds one). ``gpu``: the replicas draw on a GPU too (CUDA is
    initialised once they are built there), whose state each worker keeps beside the CPU's."""

    def __init__(self, run_rng: Tensor, seed: int, n: int, start_step: int, gpu: bool):
        self.gpu = gpu
        self.states = [seeded(worker_rng(run_rng, seed, w, start_step), seed, gpu) for w in range(n)]

    def restart(self, w: int, seed: int, seed_step: int) -> None:
        """Worker ``w``'s replacement (``cluster.restarts``), seeded from ``seed_step`` as Ray seeds a replacement's
        process (its ``worker-restarted`` event's ``seed_step``; a step past 0: never the run's own state)."""
        self.states[w] = seeded(worker_seed(seed, w, seed_step), seed, self.gpu)

    @contextmanager
    def drawing(self, w: int) -> Iterator[None]:
        """Worker ``w``'s state in torch's global RNG for the block, and kept from it after."""
        cpu, cuda = self.states[w]
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state(cuda)
        try:
            yield
        finally:
            self.states[w] = torch.get_rng_state(), torch.cuda.get_rng_state() if self.gpu else None

    def state(self, prefix: str) -> dict[str, Tensor]:
        """Each worker's states, named ``{prefix}w{w}.torch_rng`` (and ``cuda_rng``)."""
        out = {}
        for w, (cpu, cuda) in enumerate(self.states):
            out[f"{prefix}w{w}.torch_rng"] = cpu.clone()
            if cuda is not None:
                out[f"{prefix}w{w}.cuda_rng"] = cuda.clone()
        return out

    def restore(self, tensors: dict[str, Tensor], prefix: str) -> None:
        """Each worker's saved states: the resume goes on bit for bit. A GPU state is taken where this run uses a
        GPU (a checkpoint written on CPU and resumed on a GPU keeps the GPU's seeded ones).

        A checkpoint written before 2026-12-05 kept one state, ``{prefix}torch_rng`` (``cuda_rng``), which every
        worker drew on from in turn: worker 0 goes on from it and the others keep their re-seeds (each from
        :func:`~downpour.ps.seeds.worker_seed` at the resume's step, as a Ray resume seeds them). A one-worker run
        goes on bit for bit; one of 2+ workers draws other numbers than it would have without the stop (its shared
        draws cannot be replayed by per-worker states), which only such an old file does."""
        per_worker = f"{prefix}w0.torch_rng" in tensors     # (then every worker's state is there: one missing is
        if not per_worker:                                  # a damaged file, named by the KeyError, not re-seeded)
            tensors = {f"{prefix}w0.{kind}": t for kind in ("torch_rng", "cuda_rng")
                       if (t := tensors.get(f"{prefix}{kind}")) is not None}
        for w, (cpu, cuda) in enumerate(self.states):
            saved_cuda = tensors.get(f"{prefix}w{w}.cuda_rng")
            key = f"{prefix}w{w}.torch_rng"
            self.states[w] = (tensors[key] if per_worker else tensors.get(key, cpu),
                              saved_cuda if saved_cuda is not None and cuda is not None else cuda)
