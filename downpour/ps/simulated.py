"""The simulated cluster: N workers and M shards in one process, in virtual time.

Virtual time is counted in training steps: a step takes one unit; a push then travels for a
delay drawn from the worker's delay model (``cluster.delay``, see :mod:`downpour.ps.delays`)
before the shards apply it. Under async a worker goes on computing while its push travels.
Events are processed in (virtual time, order of scheduling) order, so a run is a pure function
of config and seed: same seed and config, identical parameters, metrics and staleness log.
"""
from __future__ import annotations

import heapq
from contextlib import nullcontext
from typing import Any, Callable

import torch
from torch import Tensor

from downpour.data.telemetry import batch_position, close_stream, data_report, loader_died
from downpour.ps.checkpoint import SERVER, ShardState, restoring
from downpour.ps.coordinator import Coordinator, restarts_left
from downpour.ps.delays import delay_rngs
from downpour.ps.faults import Fault, parse_faults
from downpour.ps.recorder import ShardLost
from downpour.ps.seeds import LOCAL_FIRST, seeds_local_first
from downpour.ps.setup import ClusterSetup, make_worker
from downpour.ps.shard import Shard
from downpour.ps.sim_rng import WorkerRngs
from downpour.ps.sim_state import restore_whole_state, whole_state
from downpour.ps.worker import OnPush, Push, Worker, push_record
from downpour.train.flat import frozen_params
from downpour.train.signals import signals_held

STEP, ARRIVE = 0, 1


class SimulatedCluster:
    """Runs ``coord``'s budget of steps with ``shards`` (already restored on resume), in this process."""

    nodes: dict[str, dict[str, Any]] | None = None   # one process: environment.json's own record is all there is

    def __init__(self, setup: ClusterSetup, shards: list[Shard], coord: Coordinator,
                 stage_of: Callable[[int], int | None], start_step: int = 0, seqs: dict[int, int] | None = None,
                 saved: dict[str, Any] | None = None):
        cfg = setup.cfg
        self.setup, self.shards, self.coord, self.stage_of = setup, shards, coord, stage_of
        n = cfg.cluster.workers
        seqs, saved = seqs or {}, saved or {}
        sim = saved.get("sim")                          # the whole run as it stood: an exact resume
        streams = saved.get("streams") or [None] * n    # streamed data: each worker's stream goes on where it stood
        self._seed_steps = [s["seed_step"] if s else start_step for s in streams]
        if sim:
            self._seed_steps = list(sim["seed_steps"])
        frozen = self._frozen = frozen_params(setup.model)
        self._local_first = seeds_local_first(saved)   # recorded seed steps go on with the seeds they began with
        self.workers: list[Worker] = [make_worker(cfg, w, setup.data.shard(w, n), setup.bounds, setup.gate.gated,
                                                  self._seed_steps[w], seqs.get(w, 0), stream=streams[w], frozen=frozen,
                                                  local_first=self._local_first)
                                      for w in range(n)]
        # batches each worker's stream gave beyond its steps (an exact resume: its steps go on from the checkpoint's,
        # its stream from the start, the batches already drawn skipped): drawn = steps + offset
        self._drawn_offset = [0] * n
        # each worker's torch RNG, seeded as on Ray (its replicas built: CUDA initialised where they are on a GPU)
        self.torch_rngs = WorkerRngs(setup.rng, cfg.seed, n, start_step, torch.cuda.is_initialized())
        self.delays = setup.delays
        self.rngs = delay_rngs(cfg.seed + start_step, n)
        self.now = float(saved.get("vtime", 0.0))      # a resumed run continues the virtual clock
        self._heap: list[tuple[float, int, int, int, Push | None]] = []   # (time, order, kind, worker, push)
        self._order = 0
        self._left = [0] * n        # steps left in each worker's current cycle
        self._step_index = [0] * n  # the run's index of each worker's next step (its greedy stage's clock)
        self._next_stage: dict[int, int | None] = {}   # that step's stage, asked once when the step starts
        self._blocked: set[int] = set()
        self._wake_after: set[int] | None = None   # inside on_push: the workers the push wakes next (see state)
        self._resume_wake: set[int] | None = None  # an exact resume: the workers the saved push was about to wake
        self._between = True        # between two events (not inside one): the state is whole
        self.faults = parse_faults(cfg)   # cluster.faults: the losses this run is told to have
        self.dead_shard: int | None = None  # a shard lost by one of them: gone, no checkpoint can be taken from it
        self.restarts = restarts_left(cfg.cluster.restarts, coord.events)   # lost workers restarted, as on Ray
        self._starting: dict[int, int] = {}   # lost worker -> its replacement's seed step, until it rejoins
        if sim:
            self._restore(sim, saved.get("tensors", {}), streams)

    def _schedule(self, t: float, kind: int, w: int, push: Push | None = None) -> None:
        heapq.heappush(self._heap, (t, self._order, kind, w, push))
        self._order += 1

    def _start_step(self, w: int, t: float) -> None:
        worker = self.workers[w]
        # the step's stage decides a fetch only between two due ones (a greedy switch, n_fetch > 1): asked then alone
        if worker.fetch_due() or worker.fetch_due(self._stage_at(w)):
            pulled = [s.pull(w) for s in self.shards]
            worker.load([p for p, _ in pulled], [v for _, v in pulled])
        self._schedule(t + 1.0, STEP, w)

    def _stage_at(self, w: int) -> int | None:
        """The greedy stage of ``w``'s next step, kept for the step itself (each step asks ``stage_of`` once)."""
        stage = self._next_stage[w] = self.stage_of(self._step_index[w])
        return stage

    def _try_cycle(self, w: int, t: float) -> None:
        k = self.coord.begin_cycle(w)
        if k == 0:
            self._blocked.add(w)
            return
        self._blocked.discard(w)
        self._left[w] = k
        self._step_index[w] = self.coord.first_step(w)      # the cycle's first step: as Ray's driver asks
        self._start_step(w, t)

    def _wake(self, workers: set[int], t: float) -> None:
        for v in sorted((workers | self._blocked) & self.coord.live):
            self._try_cycle(v, t)

    def lose(self, w: int, reason: str) -> None:
        """Worker ``w`` dies now (between two events, or in ``on_push``: the simulator's stand-in for a Ray
        actor killed): the cycle it was computing is lost, its steps handed out again to the others
        (:meth:`Coordinator.lose`), the pushes it sent still land, and whom it held back (a gate, a warm
        start it ran alone) goes on; restarted if ``cluster.restarts`` allows (:meth:`_respawn`)."""
        if w in self.coord.lost:
            return                              # (lost already: nothing more to lose)
        self._heap = [e for e in self._heap if not (e[2] == STEP and e[3] == w)]
        heapq.heapify(self._heap)
        before = set(self.coord.live)
        self.coord.lose(w, reason)
        self._left[w] = 0
        self._next_stage.pop(w, None)
        self._blocked.discard(w)
        for s in self.shards:
            s.set_workers(self.coord.members())
        self._respawn(w)
        woken = (self.coord.live - before) | ({w} & self.coord.live)
        if self._wake_after is None:           # (inside on_push the push's own wake-up follows)
            self._wake(woken, self.now)
        else:
            self._wake_after |= woken

    def _respawn(self, w: int) -> None:
        """Lost worker ``w`` restarted if ``cluster.restarts`` allows and steps are left, as Ray's driver restarts one
        (``restarts_on_ray``): its replacement is seeded from the step it starts at (``seed_step``) and rejoins once
        the pushes ``w`` sent have landed (:meth:`_rejoin`: at once where none travels; on Ray a sent push is at the
        shards already), which stands in for the new actor coming up. A loss not restarted where restarts were asked
        for: a ``not-restarted`` event, as Ray's (with ``cluster.restarts = 0`` none)."""
        if self.restarts <= 0 or self.coord.handed_out:
            if self.setup.cfg.cluster.restarts:
                why = "cluster.restarts spent" if self.restarts <= 0 else "no steps left for it"
                self.coord.events.append({"event": "not-restarted", "worker": w, "step": self.coord.done, "reason": why})
            return
        self.restarts -= 1
        self._starting[w] = self.coord.done
        self._rejoin(w)

    def _rejoin(self, w: int) -> None:
        """Worker ``w``'s replacement rejoins if it is starting and none of the lost worker's pushes travels: a fresh
        replica (filled by its first fetch), the push numbers going on, its batch order and torch RNG seeded from its
        seed step (``ps.seeds.batch_seed``, ``worker_seed``: Ray's), and a ``worker-restarted`` event with it."""
        if w not in self._starting or self.coord.unapplied(w):
            return
        seed_step, cfg, n = self._starting.pop(w), self.setup.cfg, len(self.workers)
        close_stream(self.workers[w].batches)
        self.workers[w] = make_worker(cfg, w, self.setup.data.shard(w, n), self.setup.bounds, self.setup.gate.gated,
                                      seed_step, self.workers[w].seq, frozen=self._frozen, local_first=self._local_first)
        self._seed_steps[w], self._drawn_offset[w] = seed_step, 0
        self.torch_rngs.restart(w, cfg.seed, seed_step)
        self.coord.rejoin(w, seed_step=seed_step)
        for s in self.shards:
            s.set_workers(self.coord.members())

    def _fault(self, kind: str) -> None:
        """The ``kind`` faults of ``cluster.faults`` the run's step has reached and that have not been taken (a
        restart's or a resume's go: its events hold them), taken now: a worker lost, a shard lost (ShardLost)."""
        for fault in self.faults:
            if fault.kind != kind or fault.step > self.coord.done or fault.fired(self.coord.events):
                continue
            if kind == "worker" and fault.index in self.coord.lost:     # (lost again before its replacement rejoined)
                self._missed(fault)
            elif kind == "worker":
                self.lose(fault.index, fault.reason)
            else:
                self.dead_shard = fault.index
                raise ShardLost(f"shard {fault.index} lost at step {self.coord.done} ({fault.reason})",
                                step=self.coord.done)

    def _missed(self, fault: Fault) -> None:
        """``fault`` found its worker lost still (its replacement waiting for the lost worker's pushes to land, or none
        started: the restarts spent or no steps left): nothing to lose, said by a ``fault-missed`` event whose reason
        names the item (so it is taken once, in a resume's go too)."""
        w = fault.index
        why = "its replacement has not rejoined yet" if w in self._starting else "it was not restarted"
        self.coord.events.append({"event": "fault-missed", "worker": w, "step": self.coord.done,
                                  "reason": f"{fault.reason}: worker {w} is lost already, {why}"})

    def _arrive(self, w: int, push: Push, t: float, on_push: OnPush) -> None:
        results = [s.push(push.worker, g, b, push.seq, push.stages).as_dict()
                   for s, g, b in zip(self.shards, push.grads, push.base)]
        record = push_record(results, push.clock_gap)
        joined = self.coord.end_cycle(w, push.steps)
        if joined or w not in self.coord.live:    # (a lost worker's last push landed: the shards forget it)
            for s in self.shards:
                s.set_workers(self.coord.members())
            self._rejoin(w)                         # (and its replacement, if one is starting, rejoins)
        record["vtime"] = round(t, 6)
        # the push may open the gate for others (bounded, sync), or for w itself, or end a warm start
        wake = self._wake_after = set(joined) | {w}
        try:
            self._fault("worker")               # as a killed worker is noticed: before its push is recorded
            on_push(push, record)               # (a checkpoint taken here saves the whole state)
            self._fault("shard")                # after: the shard dies with the push recorded (and checkpointed)
        finally:
            self._wake_after = None
        self._wake(wake, t)

    def run(self, on_push: OnPush, hold_signals: bool = True) -> None:
        """Until the budget is done. ``hold_signals``: each event whole, so Ctrl-C or SIGTERM lands between two,
        where the state (see :meth:`state`) is exact; a run with no checkpoint to write (a study's in-memory
        simulation, thousands of tiny runs: 7% of their time) goes without."""
        try:
            self._run(on_push, signals_held if hold_signals else nullcontext)
        except Exception as err:    # a worker's loader process killed (the OOM killer): said in one line
            died = [d for d in (close_stream(w.batches) for w in self.workers) if d]   # (and never raised again)
            stop = loader_died(died[0], self.setup.cfg.data, err) if died else err
            if stop is not err:
                raise stop from None
            raise

    def _run(self, on_push: OnPush, held: Callable[[], Any]) -> None:
        with held():
            self._between = False
            self._wake(self._resume_wake if self._resume_wake is not None else set(self.coord.live), self.now)
            self._between = True
        while self._heap:
            with held():
                self._between = False
                self._event(on_push)
                self._between = True
        for s in self.shards:
            s.flush()

    def _event(self, on_push: OnPush) -> None:
        t, _, kind, w, push = heapq.heappop(self._heap)
        self.now = t
        if kind == ARRIVE:
            assert push is not None
            self._arrive(w, push, t, on_push)
            return
        # (not coord.dispatched - left: that counts the cycles handed to others since, and a greedy stage
        # 1 trained 13 of its 15 steps with 3 workers)
        stage = self._next_stage.pop(w) if w in self._next_stage else self.stage_of(self._step_index[w])
        with self.torch_rngs.drawing(w):
            self.workers[w].step(stage)
        self._step_index[w] += 1
        self._left[w] -= 1
        if self._left[w] > 0:
            self._start_step(w, t)
            return
        push = self.workers[w].take_push()
        self.coord.end_compute(w)
        push.clock_gap = self.coord.gaps[w]
        delay = self.delays[w].sample(self.rngs[w])
        if delay == 0:
            self._arrive(w, push, t, on_push)   # no time in flight: applied before w fetches again
        else:
            self._schedule(t + delay, ARRIVE, w, push)
            self._wake({w}, t)                  # async: go on computing while the push travels

    def snapshot(self) -> list[ShardState]:
        """The shards' states now (after :meth:`run`: final, a partial sync round applied; before it, an
        open round is saved as it is). A shard ``cluster.faults`` lost is gone, as on Ray: none."""
        if self.dead_shard is not None:
            raise ShardLost(f"shard {self.dead_shard} is lost", step=self.coord.done)
        return [s.state_dict() for s in self.shards]

    def settle(self, on_push: OnPush) -> None:
        """Nothing to settle: a push is applied and recorded within one event, which a stop never cuts."""

    def state(self) -> tuple[dict[str, Any], dict[str, Tensor]]:
        """The virtual clock and where each worker's streamed data stands (its report goes on from there);
        and, for a checkpoint taken as a push is recorded (every periodic one), the whole state: workers,
        the coordinator's cycles, the pushes travelling, the delay generators, the events to come, each
        worker's torch RNG and DC-ASGD's copies, so a resume is the uninterrupted run's continuation. (A checkpoint
        taken on a failure, mid-event, keeps only the first part: that resume starts the workers afresh, each
        RNG re-seeded at the resume's step as on Ray.)"""
        at = [batch_position(w.batches) for w in self.workers]
        streams = [{"seed_step": k, "position": p} for k, p in zip(self._seed_steps, at)]
        meta: dict[str, Any] = {"vtime": self.now, **({"streams": streams} if all(at) else {}),
                                **({LOCAL_FIRST: True} if self._local_first else {})}
        if self._wake_after is None and not self._between:     # mid-event (a failure): not a state to go on from
            return meta, {}
        sim, tensors = whole_state(self)
        return {**meta, "sim": sim}, tensors

    def _restore(self, sim: dict[str, Any], tensors: dict[str, Tensor], streams: list[Any]) -> None:
        with restoring(f"checkpoints/{SERVER}"):      # its "sim" part damaged: named, not a bare KeyError
            restore_whole_state(self, sim, tensors)
        for w, worker in enumerate(self.workers):
            if streams[w] is None:             # in memory: the same stream, its drawn batches skipped
                for _ in range(sim["drawn"][w]):
                    next(worker.batches)
                self._drawn_offset[w] = sim["drawn"][w] - worker.steps

    def info(self) -> dict[str, Any]:
        """Virtual time, each worker's data report (streamed data: its reads and skipped files), and the first live
        worker's replica's buffers (``model_buffers``, as the Ray runner's first live worker gives them)."""
        live = sorted(self.coord.live)
        return {"virtual_time": round(self.now, 6), "data_workers": self.data_reports(),
                **({"model_buffers": self.workers[live[0]].buffers()} if live else {})}

    def data_reports(self) -> list[dict[str, Any] | None]:
        """Each worker's data report now (None in memory)."""
        return [data_report(w.batches) for w in self.workers]

    def close(self) -> None:
        for w in self.workers:           # streamed data: stop each worker's loader processes
            close = getattr(w.batches, "close", None)
            if close is not None:
                close()
