"""Sandblaster's Ray pool losing workers (a stand-in Ray on a stand-in clock, no Ray started): a unit's own error ends
the run naming it; a worker silent mid-unit is lost at the silence limit, which neither a late death nor a driver
stall raises; a dead worker's failed unit is read first; a unit that lost its shard point asks the shards before
blaming the worker."""
import pytest
import torch

from downpour.errors import RunError
from downpour.sandblaster.units import split_units

pytestmark = pytest.mark.usefixtures("one_thread")
pytest.importorskip("ray")   # (its tests read Ray's exceptions)


def test_a_unit_that_raises_in_a_live_worker_ends_the_run_naming_the_cause_not_the_workers():
    """Every RayError counted the worker lost: a unit's ValueError went to each worker in turn, and the run
    ended "every worker was lost (worker 1: RayTaskError(ValueError), ...)", the cause only in Ray's log."""
    from ray.exceptions import ActorDiedError, RayTaskError

    from downpour.sandblaster.on_ray import lost_worker

    unit = split_units(torch.arange(8), 4)[2]
    with pytest.raises(RunError, match="sandblaster worker 1 failed on unit 2: ValueError: a pixel is NaN"):
        lost_worker(1, unit, RayTaskError("compute", "traceback", ValueError("a pixel is NaN")))
    assert lost_worker(1, unit, ActorDiedError()) == "ActorDiedError"      # gone: its units go to the others


class _Hang(Exception):
    """The driver waits with no timeout on futures that never come: on a real Ray, forever."""


class _FakeRef:
    def __init__(self, value=None, hangs=False):
        self.value, self.hangs = value, hangs


class _FakeRay:
    """Just what RayPool.evaluate asks of ray, on a stand-in clock: a hanging ref is never ready."""

    def __init__(self):
        self.now, self.killed = 0.0, []

    def wait(self, refs, num_returns=1, timeout=None):
        from scripted_ray import last_ready     # (ray's modules: imported only by the tests on a stand-in of it)

        ready = last_ready([r for r in refs if not r.hangs], num_returns)    # Ray's: any ready ones
        if not ready:
            if timeout is None:
                raise _Hang(f"ray.wait on {len(refs)} futures with no timeout, {self.now:.0f} s in")
            self.now += timeout
        return ready, [r for r in refs if r not in ready]

    def get(self, ref):
        return [r.value for r in ref] if isinstance(ref, list) else ref.value

    def kill(self, actor):
        self.killed.append(actor)


def test_a_sandblaster_worker_silent_mid_unit_is_lost_not_waited_for_forever(monkeypatch):
    """One Ray worker whose third unit never returns (a node gone silent, a hung read): the driver's ray.wait had no
    timeout while no backup was due, and none can be with no free worker: the run hung for good. Now it is lost once
    silent past the limit (downpour/ps/silence.py: 300 s, its first unit long done), its actor killed, and the run ends
    with the error every worker's loss gives."""
    from types import SimpleNamespace

    from downpour.ps import restarts_on_ray, silence
    from downpour.sandblaster import on_ray

    fake = _FakeRay()
    for module in (on_ray, restarts_on_ray):   # (restarts_on_ray: the silent workers' wait and kill, shared)
        monkeypatch.setattr(module, "ray", fake)
    monkeypatch.setattr(on_ray, "time", SimpleNamespace(perf_counter=lambda: fake.now))
    monkeypatch.setattr(silence, "time", SimpleNamespace(monotonic=lambda: fake.now))
    done = []

    def remote(evaluation, unit, rows, total, stage, *point):
        done.append(unit)
        meta = {"loss": 1.0, "parts": {}}
        return [_FakeRef(meta, hangs=len(done) >= 3), _FakeRef(torch.zeros(1), hangs=len(done) >= 3)]

    worker = SimpleNamespace(compute=SimpleNamespace(options=lambda num_returns: SimpleNamespace(remote=remote)))
    shard = SimpleNamespace(point=SimpleNamespace(remote=lambda t: _FakeRef(torch.zeros(1))),
                            accumulate=SimpleNamespace(remote=lambda ev, u, g: _FakeRef(True)))
    pool = on_ray.RayPool.__new__(on_ray.RayPool)
    pool.cfg = SimpleNamespace(cluster=SimpleNamespace(workers=1), sandblaster=SimpleNamespace(units=4, backup_after=0.75))
    pool.shard_actors, pool.worker_actors, pool._pending, pool.busy, pool.lost = [shard], [worker], {}, set(), {}
    pool.silence, pool._unread = silence.Silence(), []
    pool.silence.fresh(0)
    with pytest.raises(RunError, match=r"every worker was lost \(worker 0: silent for 300 s, limit 300 s\)"):
        pool.evaluate(1, torch.arange(8), 1.0, None)
    assert done == [0, 1, 2] and fake.killed == [worker] and fake.now == silence.FLOOR


class _TimedRef(_FakeRef):
    """Ready at ``at`` on the stand-in clock (None: never), its get raising ``error`` if one is given."""

    def __init__(self, value=None, at=None, error=None):
        super().__init__(value, hangs=at is None)
        self.at, self.error = at, error


class _TimedRay(_FakeRay):
    """``_FakeRay`` whose clock runs on to the next ref's time, or the wait's timeout if that comes first."""

    def wait(self, refs, num_returns=1, timeout=None):
        from scripted_ray import last_ready

        def ready():
            return last_ready([r for r in refs if r.at is not None and r.at <= self.now], num_returns)

        if not ready():
            ends = [r.at for r in refs if r.at is not None] + ([self.now + timeout] if timeout is not None else [])
            if not ends:
                raise _Hang(f"ray.wait on {len(refs)} futures with no timeout, {self.now:.0f} s in")
            self.now = min(ends)
        return ready(), [r for r in refs if r not in ready()]

    def get(self, ref):
        for r in ref if isinstance(ref, list) else [ref]:     # (a list: Ray raises its first error)
            if isinstance(r, _TimedRef) and r.error is not None:
                raise r.error
        return super().get(ref)


def _timed_pool(monkeypatch, workers, units, unit, stall=lambda fake, index: None):
    """A RayPool of ``workers`` stand-in workers on ``_TimedRay``'s clock, ``units`` units an evaluation: ``unit(fake,
    w, index)`` gives worker ``w``'s two refs for unit ``index``; ``stall(fake, index)`` runs as the driver hands a
    finished unit's slices to the shard (its turn)."""
    from types import SimpleNamespace

    from downpour.ps import restarts_on_ray, silence
    from downpour.sandblaster import on_ray

    fake = _TimedRay()
    for module in (on_ray, restarts_on_ray):   # (restarts_on_ray: the silent workers' wait and kill, shared)
        monkeypatch.setattr(module, "ray", fake)
    monkeypatch.setattr(on_ray, "time", SimpleNamespace(perf_counter=lambda: fake.now))
    monkeypatch.setattr(silence, "time", SimpleNamespace(monotonic=lambda: fake.now))

    def worker(w):
        def remote(evaluation, index, rows, total, stage, *point):
            return unit(fake, w, index)
        return SimpleNamespace(compute=SimpleNamespace(options=lambda num_returns: SimpleNamespace(remote=remote)))

    def accumulate(ev, index, g):
        stall(fake, index)
        return _TimedRef(True, 0.0)

    shard = SimpleNamespace(point=SimpleNamespace(remote=lambda t: _TimedRef(torch.zeros(1), 0.0)),
                            accumulate=SimpleNamespace(remote=accumulate))
    pool = on_ray.RayPool.__new__(on_ray.RayPool)
    pool.cfg = SimpleNamespace(cluster=SimpleNamespace(workers=workers),
                               sandblaster=SimpleNamespace(units=units, backup_after=1.0))
    pool.shard_actors, pool.worker_actors = [shard], [worker(w) for w in range(workers)]
    pool.group = on_ray.RayShards(pool.shard_actors)     # (the driver reads the shards' answers through it)
    pool._pending, pool.busy, pool.lost = {}, set(), {}
    pool.silence, pool._unread = silence.Silence(workers=workers), []
    return fake, pool


def test_a_sandblaster_worker_that_dies_late_teaches_the_silence_limit_nothing(monkeypatch):
    """A unit that fails (its actor died) after 500 s is no report: Downpour's loops count a silence only once its
    cycle's answer is read, and until 2026-12-05 the pool counted the dead worker's 500 s (its first unit: 2x, so the
    other worker's hung unit was lost at 1000 s, not at the 300 s floor)."""
    from ray.exceptions import RayActorError

    def unit(fake, w, index):
        if w == 0:                   # its actor dies 500 s into its first unit
            return [_TimedRef(at=fake.now + 500, error=RayActorError()) for _ in range(2)]
        at = None if index == 0 else fake.now   # no time a unit, but hangs on worker 0's, handed back to it
        return [_TimedRef({"loss": 1.0, "parts": {}}, at), _TimedRef(torch.zeros(1), at)]

    _, pool = _timed_pool(monkeypatch, 2, 4, unit)
    with pytest.raises(RunError, match=r"worker 0: RayActorError, worker 1: silent for 300 s, limit 300 s\)"):
        pool.evaluate(1, torch.arange(8), 1.0, None)


def test_a_sandblaster_driver_stall_does_not_raise_the_silence_limit(monkeypatch):
    """Downpour's driver stall (ps/silence.py) on the pool: the driver stalls 1000 s handing unit 2's slices on while
    worker 1's second unit (1 s) is done and waits unread, then every later unit hangs on both workers. The silence that
    unit ended counted the stall without the pool's listening() (FACTOR x 1001 s the limit: both lost after
    20020 s); now both are lost at FLOOR."""
    from downpour.ps.silence import FLOOR

    def unit(fake, w, index):
        at = None if index >= 4 else fake.now + 1
        return [_TimedRef({"loss": 1.0, "parts": {}}, at), _TimedRef(torch.zeros(1), at)]

    def stall(fake, index):
        if index == 2:
            fake.now += 1000.0

    _, pool = _timed_pool(monkeypatch, 2, 8, unit, stall)
    lost = f"silent for {FLOOR:.0f} s, limit {FLOOR:.0f} s"
    with pytest.raises(RunError, match=rf"every worker was lost \(worker 0: {lost}, worker 1: {lost}\)"):
        pool.evaluate(1, torch.arange(8), 1.0, None)


def test_a_dead_workers_failed_unit_is_read_before_the_answers_that_came_after_it(monkeypatch):
    """Worker 0's actor died (its unit failed, ready at once) while worker 1's answers keep coming, each ready before
    the driver looks again. Ray's wait answers with any ready unit (the stand-in: the last), and until 2026-12-06 the
    pool took that one: the failed unit was read once worker 1 had nothing else to do, and handed out again at the end.
    Now the oldest ready is read first (``restarts_on_ray.first_ready``): worker 0 is lost before worker 1's second
    unit is handed out."""
    from ray.exceptions import RayActorError

    asked, pools = [], []

    def unit(fake, w, index):
        asked.append((w, index, sorted(pools[0].lost)))
        if w == 0:
            return [_TimedRef(at=fake.now, error=RayActorError()) for _ in range(2)]
        return [_TimedRef({"loss": 1.0, "parts": {}}, fake.now), _TimedRef(torch.zeros(1), fake.now)]

    pools.append(_timed_pool(monkeypatch, 2, 4, unit)[1])
    pools[0].evaluate(1, torch.arange(8), 1.0, None)
    assert [lost for *_, lost in asked] == [[], [], [0], [0], [0]]    # (its unit handed out again, to worker 1)


@pytest.mark.parametrize("shard_alive", [True, False])
def test_a_unit_whose_shard_point_was_lost_asks_the_shards_before_blaming_the_worker(monkeypatch, shard_alive):
    """A shard's node removed while a unit computes: the unit fails reading that shard's point (ObjectLostError, the
    worker alive). It counted the worker lost, and each worker in turn, "every worker was lost", the shard unnamed.
    Now the shards are asked first: a shard gone ends the run naming it; all alive, the worker is lost as before."""
    from types import SimpleNamespace

    from ray.exceptions import ActorDiedError, ObjectLostError

    def unit(fake, w, index):
        if w == 0:
            return [_TimedRef(at=fake.now, error=ObjectLostError("00" * 28, "", "")) for _ in range(2)]
        return [_TimedRef({"loss": 1.0, "parts": {}}, fake.now), _TimedRef(torch.zeros(1), fake.now)]

    fake, pool = _timed_pool(monkeypatch, 2, 4, unit)
    died = ActorDiedError()
    died.actor_id = "ab" * 16
    answer = _TimedRef({"pairs": 0}, 0.0) if shard_alive else _TimedRef(at=0.0, error=died)
    shard = pool.shard_actors[0]
    shard.call = SimpleNamespace(remote=lambda *args: answer)
    pool.group.nodes, pool.group.addresses, pool.group.ids = ["c" * 56], {"c" * 56: "10.0.0.3"}, ["ab" * 16]
    if shard_alive:
        pool.evaluate(1, torch.arange(8), 1.0, None)
        assert list(pool.lost) == [0]
    else:
        with pytest.raises(RunError, match=r"^sandblaster shard 0 was lost on node cccccccc at 10\.0\.0\.3 "):
            pool.evaluate(1, torch.arange(8), 1.0, None)
