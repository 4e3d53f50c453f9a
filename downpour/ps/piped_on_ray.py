"""The Ray driver's loop over the workers' channels (:mod:`downpour.ps.channel`), for a run whose shards (with shared
memory) and workers all run on the driver's node: one long serve task per worker, a credit per granted cycle, a report
per push, polled here. A mixin of :class:`~downpour.ps.cluster_on_ray.RayCluster`, which owns the state it reads
(``_channels``, ``_credits``, ``_serving``, the coordinator) and the calls it makes (``_pushed``, ``_lost``,
``_shard_lost``, ``poll_restarts``)."""
from __future__ import annotations

import logging
import time
from typing import Any

import ray
from ray.exceptions import RayError

from downpour.ps import channel
from downpour.ps.shm import SHM_DIR
from downpour.ps.silence import Silent
from downpour.ps.worker import OnPush

log = logging.getLogger("downpour.ps.cluster_on_ray")   # the driver's logger: its records go where the driver's do


class PipedRun:
    """``RayCluster``'s piped half: open a worker's channel, run the loop, notice a serve task's end."""

    _channels: dict[int, channel.DriverEnd]
    _credits: dict[int, int]
    _serving: dict[Any, tuple[int, Any]]
    _starting: dict[int, tuple[Any, float]]

    def _open_channel(self, w: int) -> None:
        """Piped: a new channel to worker ``w``'s (new) actor, and its serve task."""
        old = self._channels.pop(w, None)
        if old is not None:
            old.close()
        end = self._channels[w] = channel.DriverEnd(f"{SHM_DIR}/downpour-{self.run_id}-worker{w}-{self._incarnation[w]}")
        self._credits[w] = 0
        actor = self.worker_actors[w]
        self._serving[actor.serve.remote(str(end.go), str(end.done))] = (w, actor)

    def _run_piped(self, on_push: OnPush) -> None:
        """Piped: poll the workers' channels for reports (and, when none came for a moment, their serve
        tasks for a death, and the busy workers for one silent past its limit: :mod:`downpour.ps.silence`) until no
        live worker has a granted cycle left; then stop the workers. A worker whose cycle never returns, its serve
        task running on, would hold a credit for good, the loop polling its channel forever: it is lost as silent."""
        checked = time.perf_counter()
        while any(self._credits.get(w, 0) for w in self.coord.live) or self._starting:
            t = time.perf_counter()
            with self.silence.listening():   # (a long turn since the last wait was a stall: no worker's silence)
                ready = channel.wait(list(self._channels.values()), 0.05)
            t = self.laps.add("wait", t)
            for end in ready:
                w = next(v for v, e in self._channels.items() if e is end)
                reports = end.reports()
                if w not in self.coord.live:
                    # written as the actor was being killed, read after its loss gave its steps back:
                    # dropped (never applied), as the task path drops a cycle reported after the loss
                    continue
                self._take(w, reports, on_push)
            if not ready or t - checked > 0.05:
                checked = t
                self._check_serving(on_push)
                self.poll_restarts()       # a restarted worker up: its channel opens and it is granted cycles
                self._lose_silent_piped(on_push)
        # the live workers' serve tasks end once stopped; info() waits for them in its one 60 s wait (its questions
        # queue behind them: a serving actor answers nothing else). No wait of their own here first: a stuck serve
        # task would cost 60 s, then 60 s more in info() (scripted: two end waits of 60 s, against one)
        for w in sorted(self.coord.live) + self.coord.waiting:   # (one still waiting: asked in info whether it lives)
            self._channels[w].stop()

    def _read_served(self, done: set[Any]) -> None:
        """The live workers' serve tasks that ended (``done``), read: one that failed after the worker's last push
        loses nothing of the run; said, and not left for Ray to print as an unhandled error."""
        for ref, (w, _) in list(self._serving.items()):
            if ref in done:
                del self._serving[ref]
                try:
                    ray.get(ref)
                except RayError as err:
                    log.warning("worker %d failed after its last push: %s", w, type(err).__name__)

    def _check_serving(self, on_push: OnPush) -> None:
        """Piped: a serve task that ended before the driver said stop is a worker lost (like a failed
        cycle); what it reported before is whole (staged in every inbox first) and applied first."""
        if not self._serving:             # the only worker lost, its restart under way
            return
        done, _ = ray.wait(list(self._serving), num_returns=len(self._serving), timeout=0)
        for ref in done:
            w, actor = self._serving.pop(ref)
            if w in self.coord.lost or actor is not self.worker_actors[w]:
                continue          # a replaced actor's task: its loss was handled
            # one still waiting for the warm start is lost now, at this step, not when it joins or at the run's end at
            # its last step (nor dropped: its first cycle would be awaited forever)
            try:
                ray.get(ref)
                err: Exception = RuntimeError(f"worker {w} stopped serving")
            except RayError as failure:
                err = failure
            self._take(w, self._channels[w].reports(), on_push)
            self._credits[w] = 0
            self._shard_lost(err)  # a dead shard fails every worker's fetch: not the worker's loss
            self._lost(w, err)
            if w in self.coord.lost:         # not restarted: stop polling its channel
                self._channels.pop(w).close()

    def _take(self, w: int, reports: list[dict[str, Any]], on_push: OnPush) -> None:
        """Worker ``w``'s ``reports`` (each a finished cycle's metadata, its gradient staged in every inbox), pushed."""
        for meta in reports:
            self._credits[w] -= 1
            self.silence.spoke(w, busy=self._credits[w] > 0)
            self._pushed(w, meta, [None] * len(self.shard_actors), on_push)

    def _lose_silent_piped(self, on_push: OnPush) -> None:
        """Each busy worker silent past its limit, with no report in its channel, is lost as a dead one is: its actor
        killed (its serve task ends with it), restarted as ``cluster.restarts`` says."""
        for w, silent, limit in self.silence.overdue():
            reports = self._channels[w].reports()
            if reports:
                self._take(w, reports, on_push)     # it spoke just now
                continue
            self._credits[w] = 0
            self._lost(w, Silent(w, silent, limit))
            if w in self.coord.lost:         # not restarted: stop polling its channel
                self._channels.pop(w).close()
