"""A worker whose cycle never returns (a node gone silent, a hung data read, a deadlock) is lost after
``cluster.silent_seconds`` (:mod:`downpour.ps.silence`), on both driving loops, and the run goes on: the real driver
on stand-in actors (tests/scripted_ray.py), the seconds the stand-in clock's (no real time passes or is asserted).
Else the task loop's wait has no timeout unless a restart is under way, and the piped loop polls a credit that never
comes back: the run hangs for good."""
from types import SimpleNamespace

import pytest
import scripted_ray
from scripted_ray import ScriptedCluster, coordinator, scripted_runtime

from downpour.ps import piped_on_ray
from downpour.ps.silence import FACTOR, FIRST_FLOOR, FLOOR, STALL, Silence

STEPS = 120


def _events(coord):
    return [(e["event"], e["worker"], e["step"], e["reason"]) for e in coord.events]


def _hangs_at(step):
    """A worker actor whose cycle reaching ``step`` never returns (nor does any after it)."""
    return {"hangs": lambda n, first, k: first + k > step}


@pytest.fixture
def runtime(monkeypatch):
    return scripted_runtime(monkeypatch)


def test_a_worker_whose_cycle_never_returns_is_lost_and_the_others_train_every_step(runtime):
    """3 workers, worker 1's cycle at step 21 never returns: it is lost once silent for 300 s (FLOOR: its first cycle
    is past, every other was instant), killed, and the steps it held are trained by the others (else the driver
    hangs; scripted: ``Hang``, waiting with no timeout on its 2 futures once the others have trained the rest)."""
    coord = coordinator(3, STEPS)
    c = ScriptedCluster(runtime, coord, restarts=0, script={(1, 0): _hangs_at(20)})
    c.run_scripted()
    assert coord.done == STEPS and c.trained() == list(range(STEPS)) and coord.lost == [1]
    assert c.lives[1].killed and runtime.now == FLOOR
    step = coord.events[0]["step"]
    assert _events(coord) == [("worker-lost", 1, step, f"silent for {FLOOR:.0f} s, limit {FLOOR:.0f} s"),
                              ("not-restarted", 1, step, "cluster.restarts = 0")]
    assert not any(w == 1 and first >= 20 for w, _, first, _ in c.pushes)
    assert not c._pending and not c._unread       # its futures, failed once it was killed: read, not left to Ray


def test_a_silent_loss_reads_plainly_in_the_reports_faults_line(runtime, tmp_path):
    """The report's Faults line puts a loss's reason in brackets, and a silent loss's own do not nest in them (not
    "worker 1 lost at step 118 (silent for 300 s (limit 300 s)), not restarted (cluster.restarts = 0)")."""
    import html

    from downpour.analysis.report_cluster import cluster_faults as _cluster_faults
    from downpour.config import load_config
    from downpour.train.rundir import RunDir

    coord = coordinator(3, STEPS)
    ScriptedCluster(runtime, coord, restarts=0, script={(1, 0): _hangs_at(20)}).run_scripted()
    run = RunDir.create(tmp_path / "r", load_config("tica-8x8", ["cluster.runner=simulated"]))
    run.write_json("staleness.json", {"events": coord.events})
    step = coord.events[0]["step"]
    assert html.unescape(_cluster_faults(run)) == (f'<p class="note">Faults: worker 1 lost at step {step} on node '
                                                   f'node-a (silent for {FLOOR:.0f} s, limit {FLOOR:.0f} s), not '
                                                   'restarted (cluster.restarts = 0).</p>')


def test_a_silent_worker_is_restarted_as_cluster_restarts_says_and_its_replacement_trains(runtime):
    coord = coordinator(2, STEPS)
    c = ScriptedCluster(runtime, coord, restarts=1, script={(1, 0): _hangs_at(20)})
    c.run_scripted()
    assert coord.done == STEPS and c.trained() == list(range(STEPS)) and coord.lost == []
    assert [e["event"] for e in coord.events] == ["worker-lost", "worker-restarted"]
    assert coord.events[0]["reason"].startswith("silent for") and c.lives[1].killed
    assert any(life == 1 for w, life, _, _ in c.pushes if w == 1)      # the replacement trained


def test_a_slow_first_cycle_is_a_warm_up_not_a_silence(runtime):
    """Worker 1's first cycle takes 500 s (a fresh actor's warm-up), past FLOOR but within FIRST_FLOOR: not lost."""
    coord = coordinator(2, STEPS)
    c = ScriptedCluster(runtime, coord, restarts=0, script={(1, 0): {"takes": lambda n, first, k: 500.0 * (n == 0)}})
    c.run_scripted()
    assert FLOOR < 500 < FIRST_FLOOR
    assert coord.done == STEPS and coord.lost == [] and runtime.now == 500
    assert {w for w, _, _, _ in c.pushes} == {0, 1}


@pytest.mark.parametrize("cycle, lost", [(0.0, [1]), (20.0, [])])
def test_the_limit_follows_the_longest_silence_the_run_has_seen(runtime, cycle, lost):
    """Worker 1's 20th cycle takes 350 s. Where every cycle is instant the limit is FLOOR (300 s): it is lost there.
    Where every cycle takes 20 s, the limit is 20 x that (400 s): it comes back in time and trains on."""
    coord = coordinator(2, 60)
    takes = {w: {"takes": lambda n, first, k, w=w: 350.0 if (w, n) == (1, 20) else cycle} for w in (0, 1)}
    c = ScriptedCluster(runtime, coord, restarts=0, script={(0, 0): takes[0], (1, 0): takes[1]})
    c.run_scripted()
    assert coord.done == 60 and c.trained() == list(range(60)) and coord.lost == lost
    assert FACTOR * 20 > 350 > FLOOR


def test_cluster_silent_seconds_is_the_limit_for_every_cycle_the_first_too(runtime):
    coord = coordinator(2, STEPS)
    c = ScriptedCluster(runtime, coord, restarts=0, silent_seconds=50.0, script={(1, 0): _hangs_at(1)})
    c.run_scripted()
    assert coord.done == STEPS and coord.lost == [1] and runtime.now == 50
    assert coord.events[0]["reason"] == "silent for 50 s, limit 50 s"


def test_a_worker_idle_for_its_sync_round_is_never_silent(runtime):
    """Under sync a worker waits for the round's other pushes with no cycle granted: that wait is not silence. Worker
    1's cycles take 400 s each; worker 0, instant, waits for it every round (400 s a time) and is never lost."""
    coord = coordinator(2, 12, consistency="sync")
    c = ScriptedCluster(runtime, coord, restarts=0, silent_seconds=450.0,
                        script={(1, 0): {"takes": lambda n, first, k: 400.0}})
    c.run_scripted()
    assert coord.done == 12 and coord.lost == [] and runtime.now == 400 * 6


class FakeEnd:
    """A worker's channel as the piped loop sees it: a granted cycle runs on the stand-in actor at once and its
    report waits here, unless the actor hangs (then nothing ever comes)."""

    def __init__(self, actor):
        self.actor, self.queued, self.closed = actor, [], False

    def grant(self, k, first):
        refs = self.actor.cycle.remote(k, first)
        if not refs[-1].held() and refs[-1].error is None:
            self.queued.append(refs[-1].value)

    def reports(self):
        out, self.queued = self.queued, []
        return out

    def stop(self):
        pass

    def close(self):
        self.closed = True


def _drive_piped(c, runtime, monkeypatch, on_push=lambda cluster: None):
    """Run scripted cluster ``c`` (2 workers) on the piped loop, its channels stand-ins (``FakeEnd``); ``on_push(c)``
    after each push's record."""
    c.piped = True
    c._channels = {w: FakeEnd(c.worker_actors[w]) for w in (0, 1)}
    c._credits = {0: 0, 1: 0}
    c._serving = {scripted_ray.Ref(None, when=lambda w=w: c.lives[w].killed): (w, c.lives[w]) for w in (0, 1)}
    ends = dict(c._channels)

    def wait(chans, timeout):
        ready = [e for e in chans if e.queued]
        if not ready:
            runtime.now += timeout
            if runtime.now > 10 * FIRST_FLOOR:
                raise scripted_ray.Hang(f"the piped loop polls on, nothing reported for {runtime.now:.0f} s")
        return ready

    monkeypatch.setattr(piped_on_ray, "channel", SimpleNamespace(wait=wait))
    monkeypatch.setattr(piped_on_ray, "ray", SimpleNamespace(wait=runtime.wait, get=runtime.get))

    def record(push, rec):
        c.pushes.append((push.worker, push.parts["life"], push.parts["first"], push.parts["steps"]))
        on_push(c)

    c._drive(record)
    return ends


def test_the_piped_loop_loses_a_silent_worker_too(runtime, monkeypatch):
    """The piped loop (a one-node Ray) loses a silent worker after FLOOR, its channel closed, and the other trains
    every step (else it polls the channel for as long as the worker holds a credit: for good)."""
    coord = coordinator(2, STEPS)
    c = ScriptedCluster(runtime, coord, restarts=0, script={(1, 0): _hangs_at(20)})
    ends = _drive_piped(c, runtime, monkeypatch)
    assert coord.done == STEPS and c.trained() == list(range(STEPS)) and coord.lost == [1]
    assert coord.events[0]["reason"] == f"silent for {FLOOR:.0f} s, limit {FLOOR:.0f} s"
    assert c.lives[1].killed and ends[1].closed and 1 not in c._channels
    assert FLOOR <= runtime.now < FLOOR + 1


def test_silence_measures_busy_time_only_and_leaves_first_cycles_out(monkeypatch):
    clock = SimpleNamespace(now=0.0)
    monkeypatch.setattr("downpour.ps.silence.time", SimpleNamespace(monotonic=lambda: clock.now))
    s = Silence()
    s.fresh(0)
    s.busy(0)
    clock.now = 100.0
    s.spoke(0, busy=False)            # the first cycle: 100 s, left out
    assert s.longest == 0 and s.timeout() is None and s.limit(0) == FLOOR
    clock.now = 1000.0                # idle 900 s: not silence
    s.busy(0)
    clock.now = 1030.0
    s.spoke(0, busy=True)
    assert s.longest == 30 and s.limit(0) == FACTOR * 30 and s.timeout() == FACTOR * 30
    clock.now += FACTOR * 30
    assert s.overdue() == [(0, FACTOR * 30, FACTOR * 30)]


def test_a_run_whose_every_cycle_is_slow_loses_no_worker(runtime):
    """Every cycle of both workers takes 350 s (a big batch, many steps a push on a CPU): past FLOOR, so the auto limit
    must learn it from the first cycles. It left them out of the longest silence, so each worker's second cycle was
    lost at 300 s, and each replacement's after it (scripted: lost [0, 1], 'silent for 300 s, limit 300 s')."""
    coord = coordinator(2, 24)
    slow = {"takes": lambda n, first, k: 350.0}
    c = ScriptedCluster(runtime, coord, restarts=0, script={(0, 0): slow, (1, 0): slow})
    c.run_scripted()
    assert FLOOR < 350 < FIRST_FLOOR
    assert coord.done == 24 and c.trained() == list(range(24)) and coord.lost == [] and coord.events == []


def test_a_driver_stall_is_no_workers_silence_but_its_short_turns_are(monkeypatch):
    """A report that came while the driver was away from its wait (a 100 s stall) is read only when it waits again: the
    silence it ends leaves out the turn's time past STALL, not counting the stall; a driver busy with short turns
    (0.5 s each, 10 of them) still counts every second of them."""
    clock = SimpleNamespace(now=0.0)
    monkeypatch.setattr("downpour.ps.silence.time", SimpleNamespace(monotonic=lambda: clock.now))
    s = Silence()
    s.busy(0)
    s.woke()
    clock.now = 100.0                 # the driver's turn: 100 s
    s.waiting()
    s.spoke(0, busy=True)
    assert s.longest == STALL and s.limit(0) == FLOOR
    for _ in range(10):
        s.woke()
        clock.now += 0.5
        s.waiting()
    s.spoke(0, busy=False)
    assert s.longest == 5.0


def test_a_driver_stall_does_not_raise_the_auto_limit(runtime):
    """The driver stalls 1000 s recording a push (a checkpoint on a slow disk), its workers' answers waiting; then worker
    1's cycle at step 60 never returns. The stall is no silence and worker 1 is lost at FLOOR (counted in the silences
    the stall's reports end, FACTOR x 1000 s would be the limit and worker 1 lost after 20000 s)."""
    coord = coordinator(2, STEPS)
    c = ScriptedCluster(runtime, coord, restarts=0, script={(1, 0): _hangs_at(60)})

    def stall(cluster):
        if len(cluster.pushes) == 10:
            runtime.now += 1000.0

    c.run_scripted(stall)
    assert coord.done == STEPS and c.trained() == list(range(STEPS)) and coord.lost == [1]
    assert coord.events[0]["reason"] == f"silent for {FLOOR:.0f} s, limit {FLOOR:.0f} s"


def test_a_driver_stall_does_not_raise_the_auto_limit_on_the_piped_loop_either(runtime, monkeypatch):
    """As on the task loop (above): the piped loop's driver stalls 1000 s recording a push, then worker 1's cycle at
    step 60 never returns. Its stall counts in no silence, and worker 1 is lost at FLOOR here too (counted, FACTOR x
    1000 s would be the limit, and the loop would poll on past the stand-in's 6000 s)."""
    coord = coordinator(2, STEPS)
    c = ScriptedCluster(runtime, coord, restarts=0, script={(1, 0): _hangs_at(60)})

    def stall(cluster):
        if len(cluster.pushes) == 10:
            runtime.now += 1000.0

    _drive_piped(c, runtime, monkeypatch, stall)
    assert coord.done == STEPS and c.trained() == list(range(STEPS)) and coord.lost == [1]
    assert coord.events[0]["reason"] == f"silent for {FLOOR:.0f} s, limit {FLOOR:.0f} s"
