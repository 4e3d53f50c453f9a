"""Workers waiting for the warm start, lost and restarted: the real Ray driver
(:class:`~downpour.ps.cluster_on_ray.RayCluster`) on stand-in actors whose deaths are scripted
(tests/scripted_ray.py, tests/restart_scripts.py). Lost at the step they died, restarted to wait again or no more,
looked at in one wait, a watch question read once answered; the run's end asks live and waiting workers at once."""
import pytest
import scripted_ray
from restart_scripts import STEPS, _dies_at, _events
from restart_scripts import runtime  # noqa: F401 (a fixture)
from scripted_ray import ScriptedCluster, coordinator, scripted_runtime


def _kill_first_actor(coord, w, step):
    """A hook for ``run_scripted``: worker ``w``'s first actor dies once ``step`` steps are done, whether or not it
    has a cycle (one waiting for the warm start has none that could fail)."""
    def hook(c):
        if coord.done >= step and c.lives[w].life == 0:
            c.lives[w].dead = True
    return hook


def test_a_worker_that_dies_waiting_for_a_warm_start_the_run_never_ends_is_lost_at_the_step_it_died(monkeypatch):
    """cluster.warm_start past train.steps: workers 1 and 2 never join, and worker 1's actor dies at step 20. No cycle
    of its failed, so nothing else sees its death (lost_workers [], on a real Ray too, on both loops: the piped one is
    tests/test_ps_ray_lost_workers.py's; or found at the run's end, its loss recorded at step 120). The driver asks
    each waiting worker whether it lives every WATCH_SECONDS (here a wait is 0.1 s: 10 waits, about 10 steps) and
    takes its loss then; worker 2, alive, is not lost."""
    from downpour.ps.restarts_on_ray import WATCH_SECONDS

    runtime = scripted_runtime(monkeypatch, tick=0.1)
    coord = coordinator(3, STEPS, warm_start=STEPS + 100)
    c = ScriptedCluster(runtime, coord, restarts=0)

    c.run_scripted(_kill_first_actor(coord, 1, 20))
    c.info()                                  # what the run asks once its steps are done (cluster.json's fields)
    assert coord.done == STEPS and c.trained() == list(range(STEPS)) and coord.live == {0}
    assert coord.lost == [1] and [e[:2] for e in _events(coord)] == [("worker-lost", 1), ("not-restarted", 1)]
    assert 20 <= coord.events[0]["step"] <= 20 + WATCH_SECONDS / 0.1 + 3      # (a death is told 2 waits late)
    assert coord.events[0]["reason"] == "ActorDiedError while it waited for the warm start"
    assert coord.events[1]["reason"] == "cluster.restarts = 0"


def test_the_workers_waiting_for_the_warm_start_are_looked_at_in_one_wait(monkeypatch):
    """Five workers wait for a warm start past the run, each asked whether it lives every WATCH_SECONDS: each loop
    turn looks at their unanswered questions in one look over all of them (and one over the answers of workers that
    joined), not one ray.wait each (up to 5 looks a turn)."""
    runtime = scripted_runtime(monkeypatch, tick=0.1)
    coord = coordinator(6, STEPS, warm_start=STEPS + 100)
    c = ScriptedCluster(runtime, coord, restarts=0)
    looks, watch = [], c.watch_waiting

    def counted() -> None:
        before = runtime.waits
        watch()
        looks.append(runtime.waits - before)

    monkeypatch.setattr(c, "watch_waiting", counted)
    c.run_scripted()
    assert coord.done == STEPS and coord.live == {0} and coord.lost == []
    assert max(looks) == 1 and len(looks) >= STEPS


def test_a_worker_lost_waiting_for_the_warm_start_is_restarted_and_waits_again(monkeypatch):
    """warm_start 60 of 120, restarts=1: worker 1 dies at step 20 while it waits. Its replacement waits for the warm
    start like the first actor (worker 0 trains steps 0..59 alone) and joins with worker 2 at step 60."""
    runtime = scripted_runtime(monkeypatch, tick=0.1)
    coord = coordinator(3, STEPS, warm_start=60)
    c = ScriptedCluster(runtime, coord, restarts=1)

    c.run_scripted(_kill_first_actor(coord, 1, 20))
    assert coord.done == STEPS and c.trained() == list(range(STEPS)) and coord.lost == [] and coord.live == {0, 1, 2}
    kinds = [e[0] for e in _events(coord)]
    assert kinds == ["worker-lost", "worker-restarted", "joined"] and _events(coord)[2] == ("joined", [1, 2], 60)
    assert _events(coord)[0][2] < 60 and {w for w, _, first, _ in c.pushes if first < 60} == {0}
    assert any(w == 1 and life == 1 for w, life, *_ in c.pushes)      # the replacement trained after the warm start


@pytest.mark.parametrize("replacement_up", ["after worker 0's loss", "before it"])
def test_once_the_warm_starts_only_worker_dies_a_replacement_of_a_waiting_worker_waits_no_more(monkeypatch,
                                                                                               replacement_up):
    """warm_start 100 of 120, restarts=3: worker 1 dies at step 10 while it waits, worker 0 at step 30, which ends the
    warm start (worker 2, and worker 1's replacement if up and waiting again, join at step 30). A replacement up
    after that joins at once, not waiting for step 100 while 0 and 2 train (its first step 104), and one replacing a
    worker that joined at 30 and died at step 50 does not wait for step 100 either (a stale mark)."""
    runtime = scripted_runtime(monkeypatch, tick=0.1)
    coord = coordinator(3, STEPS, warm_start=100)
    script = {(0, 0): _dies_at(30)}
    if replacement_up == "after worker 0's loss":
        script[(1, 1)] = {"up": lambda: 0 in coord.lost or coord.done > 30}
    else:
        script[(1, 1)] = _dies_at(50)
    c = ScriptedCluster(runtime, coord, restarts=3, script=script)

    c.run_scripted(_kill_first_actor(coord, 1, 10))
    assert coord.done == STEPS and c.trained() == list(range(STEPS)) and coord.lost == [] and coord.live == {0, 1, 2}
    assert not any(e[0] == "joined" and e[2] == 100 for e in _events(coord))
    last = max(life for w, life, *_ in c.pushes if w == 1)
    assert min(first for w, life, first, _ in c.pushes if w == 1 and life == last) < 60


def test_the_run_end_asks_live_and_waiting_workers_in_one_wait(runtime):
    """Worker 0 trains (live), workers 1 and 2 wait for a warm start past the run; at its end worker 0 and worker 1
    hang (a node gone silent). One wait of 60 s for all (not 60 s for the live ones, then 60 s more for the waiting
    ones: 120 s of the stand-in clock); both silent ones are lost, no restart left for them."""
    coord = coordinator(3, STEPS, warm_start=STEPS + 100)
    c = ScriptedCluster(runtime, coord, restarts=1)
    c.run_scripted()
    c.lives[1].up = lambda: False
    c.lives[0].data_report = type(c.lives[0].cycle)(lambda: scripted_ray.Ref({}, when=lambda: False))
    before = runtime.now
    c.info()
    assert runtime.now - before == 60
    assert coord.lost == [0, 1] and [e["event"] for e in coord.events] == ["worker-lost", "not-restarted"] * 2
    assert [e["reason"] for e in coord.events] == ["GetTimeoutError after its last push", "no steps left for it",
                                                  "GetTimeoutError while it waited for the warm start",
                                                  "no steps left for it"]


def test_the_run_end_asks_every_worker_still_waiting_at_once(runtime):
    """Workers 1, 2 and 3 never join (warm start past the run); 1 and 2 hang (a node gone silent: their answer never
    comes), 3 answers. info() waits once, 60 s, for all of them, not one at a time, 60 s each (120 s of the
    stand-in clock for two silent workers; 16 on a lost node: 16 minutes)."""
    coord = coordinator(4, STEPS, warm_start=STEPS + 100)
    c = ScriptedCluster(runtime, coord, restarts=1)
    c.run_scripted()
    for w in (1, 2):
        c.lives[w].up = lambda: False
    before = runtime.now
    c.info()
    assert coord.lost == [1, 2] and coord.live == {0}
    assert [e["reason"] for e in coord.events if e["event"] == "worker-lost"] == \
        ["GetTimeoutError while it waited for the warm start"] * 2
    assert runtime.now - before == 60


def test_a_watch_question_unanswered_when_its_worker_joins_is_read_once_it_answers(monkeypatch):
    """warm_start 60 of 120: worker 2 waits, and the driver asks it once a second whether it lives; its answer is
    held back to step 80, past its join. A question left when its worker joined is read once it answers (unread, an
    actor that died would have Ray print its error as "Unhandled error" at clean-up)."""
    runtime = scripted_runtime(monkeypatch, tick=0.1)
    coord = coordinator(3, STEPS, warm_start=60)
    c = ScriptedCluster(runtime, coord, restarts=0, script={(2, 0): {"up": lambda: coord.done >= 80}})
    asked, node = [], c.lives[2].node.fn
    c.lives[2].node.fn = lambda: asked.append(node()) or asked[-1]
    c.run_scripted()
    assert coord.done == STEPS and c.trained() == list(range(STEPS)) and coord.lost == []
    assert asked and all(ref.read for ref in asked) and not c._watching and not c._unread
