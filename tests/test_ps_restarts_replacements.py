"""A lost Ray worker's replacement, each scenario with one outcome: the real Ray driver
(:class:`~downpour.ps.cluster_on_ray.RayCluster`) on stand-in actors whose deaths are scripted
(tests/scripted_ray.py, tests/restart_scripts.py), so when it rejoins, when it is given up and what that gives back,
and the events and report that record each loss are asserted exactly; every step trained once whoever trains it. (On
a real Ray the same scenarios have as many outcomes as Ray's timing: the end-to-end restart is
tests/test_ps_ray_lost_workers.py's.)"""
import html
import logging

import pytest
from restart_scripts import STEPS, _dies_at, _events
from restart_scripts import runtime  # noqa: F401 (a fixture)
from scripted_ray import ScriptedCluster, coordinator, scripted_runtime

from downpour.ps.on_ray import RESTART_SECONDS


def test_a_restart_outlives_the_last_handout_and_trains_the_step_a_later_loss_gives_back(runtime):
    """Worker 1 dies at step 20; its replacement answers only once worker 0 is lost, and worker 0 dies as it is
    granted the run's last step. The replacement rejoins and trains that step (given up once every step is handed
    out, the run would end "every worker was lost after 119 of 120 steps"). (On a real Ray, whether worker 0's last
    step reaches the shard before its actor dies is Ray's timing: a test there would accept lost_workers [0] or
    [1, 0].)"""
    coord = coordinator(2, STEPS)
    # (told=3: the driver looks at its restarts once between worker 0's death and Ray telling it of it)
    c = ScriptedCluster(runtime, coord, restarts=1, script={(1, 0): _dies_at(20), (1, 1): {"up": lambda: 0 in coord.lost},
                                                            (0, 0): {**_dies_at(STEPS - 1), "told": 3}})
    c.run_scripted()
    assert coord.done == STEPS and c.trained() == list(range(STEPS))     # every step, once
    assert coord.lost == [0] and coord.live == {1}
    # worker 1 (steps alternate: 1, 3, ...) dies granted step 21, which its loss hands back to worker 0
    assert (0, 0, 21, 1) in c.pushes and not any(w == 1 and first >= 21 for w, _, first, _ in c.pushes[:-1])
    assert _events(coord) == [("worker-lost", 1, 21), ("worker-lost", 0, STEPS - 1), ("worker-restarted", 1, STEPS - 1),
                              ("not-restarted", 0, STEPS - 1)]
    assert coord.events[3]["reason"] == "cluster.restarts spent"     # worker 1's replacement took the one restart
    assert [(w, life, first) for w, life, first, _ in c.pushes if life == 1] == [(1, 1, STEPS - 1)]


def test_a_restart_still_coming_up_when_the_run_is_over_is_given_up(runtime, caplog):
    """The other outcome on a real Ray: worker 0 trains every step, and the replacement, not up yet, is given up
    once every step is applied (not before: a later loss could have handed steps back)."""
    coord = coordinator(2, STEPS)
    c = ScriptedCluster(runtime, coord, restarts=1, script={(1, 0): _dies_at(20), (1, 1): {"up": lambda: False}})
    caplog.set_level(logging.WARNING, logger="downpour.ps.cluster_on_ray")
    c.run_scripted()
    assert coord.done == STEPS and c.trained() == list(range(STEPS)) and coord.lost == [1]
    assert _events(coord) == [("worker-lost", 1, 21), ("restart-given-up", 1, STEPS)] and c.lives[-1].killed
    assert coord.events[-1]["reason"] == "no steps left for it"
    assert "worker 1 could not be restarted (no steps left for it)" in caplog.text


def test_a_replacement_up_while_the_others_push_without_a_pause_rejoins_at_once(runtime):
    """A restart's answer is taken first, not only when none of its workers' pushes is ready: in a run whose driver is
    the slowest part (here every cycle is done by the time the driver waits) a replacement up three waits after its
    start would be given up at the run's end, "no steps left for it", and never train."""
    coord = coordinator(2, STEPS)
    c = ScriptedCluster(runtime, coord, restarts=1, script={(1, 0): _dies_at(20), (1, 1): {"starts": 3}})
    c.run_scripted()
    assert coord.done == STEPS and c.trained() == list(range(STEPS)) and coord.lost == []
    assert _events(coord) == [("worker-lost", 1, 21), ("worker-restarted", 1, 21)]   # (before: at step 120)
    assert sum(1 for w, life, *_ in c.pushes if (w, life) == (1, 1)) == 49     # of the 98 steps 22..119 (before: 0)


def test_a_replacement_records_the_step_its_seeds_were_derived_from(runtime):
    """A replacement's batch order and torch's RNG are seeded from the step it was started at (``ps.seeds.batch_seed``,
    ``worker_seed``), which its ``worker-restarted`` event records as ``seed_step``: it rejoins later (here a step
    later: up six waits after its start), so the event's own step does not say it."""
    coord = coordinator(2, STEPS)
    c = ScriptedCluster(runtime, coord, restarts=1, script={(1, 0): _dies_at(20), (1, 1): {"starts": 6}})
    c.run_scripted()
    restarted = [e for e in coord.events if e["event"] == "worker-restarted"]
    assert restarted == [{"event": "worker-restarted", "worker": 1, "step": 22, "seed_step": 21}]


def test_a_replacement_that_dies_coming_up_is_named_by_its_own_node_not_its_predecessors(monkeypatch):
    """Worker 1 on node a lost; its replacement, pinned to node b, dies coming up: the restart-failed event and the log
    name node b (the worker-lost before names a, the lost actor's own)."""

    class Pinned(ScriptedCluster):
        def _spawn(self, w, seq, step):
            actor = super()._spawn(w, seq, step)
            self.pins[w, None] = "node-a" if self._incarnation[w] == 1 else "node-b"
            return actor

    coord, runtime = coordinator(2, STEPS), scripted_runtime(monkeypatch, nodes=["node-a", "node-b"])
    c = Pinned(runtime, coord, restarts=2, script={(1, 0): _dies_at(20), (1, 1): {"dead_on_arrival": True}})
    c.run_scripted()
    lost, failed = [e for e in coord.events if e["event"] in ("worker-lost", "restart-failed")]
    assert lost["where"] == "node node-a" and failed["where"] == "node node-b"


def test_a_replacement_that_dies_coming_up_is_restarted_again_from_the_same_budget(runtime):
    coord = coordinator(2, STEPS)
    c = ScriptedCluster(runtime, coord, restarts=2, script={(1, 0): _dies_at(20), (1, 1): {"dead_on_arrival": True}})
    c.run_scripted()
    assert coord.done == STEPS and c.trained() == list(range(STEPS)) and coord.lost == []
    assert [e[0] for e in _events(coord)] == ["worker-lost", "restart-failed", "worker-restarted"]
    assert c.restarts == 0 and [(a.w, a.life) for a in c.lives] == [(0, 0), (1, 0), (1, 1), (1, 2)]
    assert {life for w, life, *_ in c.pushes if w == 1} == {0, 2}      # the third actor trains on


def test_a_replacement_given_up_is_an_event_naming_why_and_when_and_the_report_shows_it(runtime, tmp_path):
    """restarts=1: worker 1's replacement dies coming up (restart-failed, the restart spent), so none follows. A
    restart-given-up event says why, at which step: with its worker-lost and restart-failed and nothing after,
    staleness.json would read the same as a replacement still coming up at a checkpoint."""
    from downpour.analysis.report_cluster import cluster_faults as _cluster_faults
    from downpour.config import load_config
    from downpour.train.rundir import RunDir

    coord = coordinator(2, STEPS)
    c = ScriptedCluster(runtime, coord, restarts=1, script={(1, 0): _dies_at(20), (1, 1): {"dead_on_arrival": True}})
    c.run_scripted()
    assert coord.done == STEPS and c.trained() == list(range(STEPS)) and coord.lost == [1]
    assert _events(coord) == [("worker-lost", 1, 21), ("restart-failed", 1, 21), ("restart-given-up", 1, 21)]
    assert coord.events[-1]["reason"] == "cluster.restarts spent"
    run = RunDir.create(tmp_path / "r", load_config("tica-8x8", ["cluster.runner=simulated"]))
    run.write_json("staleness.json", {"events": coord.events})
    assert "its restart given up at step 21 (cluster.restarts spent)" in html.unescape(_cluster_faults(run))


def test_a_restart_ray_cannot_place_is_given_up_at_its_deadline(runtime, caplog):
    """The only worker is lost and Ray never places its replacement: given up after RESTART_SECONDS (the stand-in
    clock jumps there), and the run ends with every worker lost and what was trained kept, instead of waiting."""
    from downpour.ps.on_ray import RESTART_SECONDS

    coord = coordinator(1, STEPS)
    c = ScriptedCluster(runtime, coord, restarts=1, script={(0, 0): _dies_at(30), (0, 1): {"up": lambda: False}})
    caplog.set_level(logging.WARNING, logger="downpour.ps.cluster_on_ray")
    c.run_scripted()
    assert coord.lost == [0] and not coord.live and coord.done == 30 and c.trained() == list(range(30))
    assert runtime.now >= RESTART_SECONDS and f"not up within {RESTART_SECONDS} s" in caplog.text
    assert _events(coord) == [("worker-lost", 0, 30), ("restart-given-up", 0, 30)]
    assert coord.events[-1]["reason"] == f"not up within {RESTART_SECONDS} s"


def test_a_replacement_given_up_takes_its_partition_actors_with_it(runtime):
    """Model parallelism: a replacement comes with partition actors of its own (holding its filters' memory). Giving
    it up kills them with the worker actor, as a replacement that dies coming up has its own killed (else they live
    on to the run's end)."""
    coord = coordinator(2, STEPS)
    c = ScriptedCluster(runtime, coord, restarts=1, partitions=2,
                        script={(1, 0): _dies_at(20), (1, 1): {"up": lambda: False}})
    c.run_scripted()
    assert _events(coord)[-1][0] == "restart-given-up" and c.lives[-1].killed
    assert [[p.killed for p in parts] for parts in c.parts] == [[False, False], [True, True], [True, True]]
    assert 1 not in c.partition_actors


def test_a_replacement_whose_partition_actors_never_answer_is_given_up_and_its_restart_given_back(runtime, caplog):
    """Model parallelism: worker 1's replacement answers, but its partition actors (0 CPUs, pinned to a node) never do.
    The driver waits RESTART_SECONDS, not for good with a plain ray.get, every survivor with it (the stand-in's get
    raises instead: a real driver would block there), then gives the replacement up, its partitions killed and its
    restart given back (never up, as restarts_left has it), and the others train the rest."""
    from downpour.ps.on_ray import RESTART_SECONDS

    coord = coordinator(2, STEPS)
    c = ScriptedCluster(runtime, coord, restarts=1, partitions=2,
                        script={(1, 0): _dies_at(20), (1, 1): {"parts_up": lambda: False}})
    caplog.set_level(logging.WARNING, logger="downpour.ps.cluster_on_ray")
    c.run_scripted()
    why = f"its partition actors or device did not answer within {RESTART_SECONDS} s"
    assert f"worker 1 could not be restarted ({why})" in caplog.text
    assert [e[0] for e in _events(coord)] == ["worker-lost", "restart-given-up"] and coord.events[-1]["reason"] == why
    assert coord.done == STEPS and c.trained() == list(range(STEPS)) and coord.lost == [1] and c.restarts == 1
    assert c.lives[-1].killed and all(p.killed for p in c.parts[-1])


@pytest.mark.parametrize("n_push", [1, 3])
def test_the_ranges_a_lost_worker_held_are_trained_once_by_the_others_or_its_replacement(runtime, n_push):
    """Worker 1 dies with two cycles queued (steps 1..2 x n_push); worker 2 dies later, restarts spent; each step
    of the budget is trained once, whoever trained it."""
    coord = coordinator(3, STEPS, n_push=n_push)
    c = ScriptedCluster(runtime, coord, restarts=1, script={(1, 0): _dies_at(40), (2, 0): _dies_at(80)})
    c.run_scripted()
    assert coord.done == STEPS and c.trained() == list(range(STEPS))
    assert coord.lost == [2] and [e[0] for e in _events(coord)] == ["worker-lost", "worker-restarted", "worker-lost",
                                                                    "not-restarted"]
    assert coord.events[-1]["reason"] == "cluster.restarts spent"
    assert all(k == n_push for *_, k in c.pushes)         # 120 is a multiple of 3: no range was split


def test_a_restart_under_sync_rejoins_the_round_it_owes_and_no_step_is_trained_twice(runtime):
    coord = coordinator(2, STEPS, "sync", depth=1)
    c = ScriptedCluster(runtime, coord, restarts=1, script={(1, 0): _dies_at(20)})
    c.run_scripted()
    assert coord.done == STEPS and c.trained() == list(range(STEPS)) and coord.lost == []
    told = c.shard_actors[0].told
    assert told[0] == [0] and told[-1] == [0, 1]          # the round closes on worker 0 alone while 1 restarts
    assert max(coord.clocks().values()) - min(coord.clocks().values()) <= 1


def test_a_checkpoint_taken_while_a_replacement_comes_up_resumes_every_step_once(runtime):
    """The server's checkpoint (``state()``) taken with worker 1's replacement not up yet and its steps handed back:
    a resume from it trains every step not applied before it, once."""
    coord = coordinator(2, STEPS)
    saved = {}

    def checkpoint(c):
        if c._starting and not saved and coord.done >= 30:
            saved.update(c.state()[0], trained=c.trained())

    first = ScriptedCluster(runtime, coord, restarts=1, script={(1, 0): _dies_at(20), (1, 1): {"up": lambda: False}})
    first.run_scripted(checkpoint)
    assert saved and saved["step"] == len(saved["trained"])
    again = coordinator(2, STEPS, start=saved["step"], events=coord.events)
    second = ScriptedCluster(runtime, again, restarts=1, saved=saved)
    second.run_scripted()
    assert again.done == STEPS and sorted(saved["trained"] + second.trained()) == list(range(STEPS))


def test_a_replacement_ray_never_places_gives_its_restart_back_for_a_later_loss(monkeypatch, caplog):
    """restarts=1: worker 1 is lost at step 20 and Ray never places its replacement; worker 0 is lost at step 300.
    A replacement given up for no room is no restart: restarts_left (the count a resume or a shard restart starts
    from) leaves it out, as docs/parameter-server.md says, and so does the driver: worker 0's replacement trains the
    last 100 (kept spent, worker 0 would not be restarted and the run end "every worker was lost" after 300 of 400
    steps, lost_workers [1, 0]). (Each wait takes 5 s of the driver's clock: the first replacement's
    120 s run out while worker 0 pushes.)"""
    runtime = scripted_runtime(monkeypatch, tick=5.0)
    coord = coordinator(2, 400)
    c = ScriptedCluster(runtime, coord, restarts=1, script={(1, 0): _dies_at(20), (1, 1): {"up": lambda: False},
                                                            (0, 0): _dies_at(300)})
    caplog.set_level(logging.WARNING, logger="downpour.ps.cluster_on_ray")
    c.run_scripted()
    assert "worker 1 could not be restarted (not up within" in caplog.text
    assert coord.done == 400 and c.trained() == list(range(400)) and coord.lost == [1]
    assert _events(coord) == [("worker-lost", 1, 21), ("restart-given-up", 1, 32), ("worker-lost", 0, 300),
                              ("worker-restarted", 0, 300)]
    assert {life for w, life, *_ in c.pushes if w == 0} == {0, 1}


@pytest.mark.parametrize("consistency", ["async", "sync", "bounded:2"])
def test_a_replacement_past_its_deadline_is_given_up_then_while_the_others_keep_the_driver_busy(monkeypatch,
                                                                                              consistency):
    """The task loop looks at a replacement's deadline after every push, as the piped loop looks every 50 ms, and the
    give-up lands at the step its deadline passed. Looking only when no push is ready (or a worker is lost), a driver
    kept busy (each wait 5 s of its clock, a push always ready) would give one never placed up at the run's end, step
    400 of 400, "no steps left for it", though its 120 s ran out near step 45."""
    from downpour.ps.on_ray import RESTART_SECONDS

    runtime = scripted_runtime(monkeypatch, tick=5.0)
    coord = coordinator(2, 400, consistency, depth=1 if consistency == "sync" else 2)
    c = ScriptedCluster(runtime, coord, restarts=1, script={(1, 0): _dies_at(20), (1, 1): {"up": lambda: False}})
    c.run_scripted()
    assert coord.done == 400 and c.trained() == list(range(400)) and coord.lost == [1]
    lost, given_up = coord.events[-2:]
    assert (lost["event"], given_up["event"]) == ("worker-lost", "restart-given-up")
    assert given_up["reason"] == f"not up within {RESTART_SECONDS} s"
    # one push (one step) a turn; while the restart waits a turn is two waits of 5 s (the wait, then the look at the
    # restart listed before the push it gave: restarts_on_ray.first_ready): the 120 s run out 24 waits, about 12
    # steps, after the loss (before: 400)
    assert lost["step"] + 10 <= given_up["step"] <= lost["step"] + 15


def _faults(coord, tmp_path):
    """The report's Faults line for ``coord``'s events, unescaped."""
    from downpour.analysis.report_cluster import cluster_faults as _cluster_faults
    from downpour.config import load_config
    from downpour.train.rundir import RunDir

    run = RunDir.create(tmp_path / "r", load_config("tica-8x8", ["cluster.runner=simulated"]))
    run.write_json("staleness.json", {"events": coord.events})
    return html.unescape(_cluster_faults(run))


def test_with_no_restarts_each_loss_says_it_was_not_restarted_and_the_report_shows_every_loss(runtime, tmp_path):
    """cluster.restarts = 0, 7 workers, workers 1..6 lost: each outcome is "not-restarted", not a restart-given-up
    "cluster.restarts = 0" (a restart never tried read as one given up), and each loss is one entry of the report's
    Faults line with what came of it (at ten entries at most, an event each, it would show 5 of the 6 losses)."""
    coord = coordinator(7, 240)
    c = ScriptedCluster(runtime, coord, restarts=0, script={(w, 0): _dies_at(20 * w) for w in range(1, 7)})
    c.run_scripted()
    assert coord.done == 240 and c.trained() == list(range(240)) and coord.lost == [1, 2, 3, 4, 5, 6]
    assert [e[0] for e in _events(coord)] == ["worker-lost", "not-restarted"] * 6
    assert {e["reason"] for e in coord.events if e["event"] == "not-restarted"} == {"cluster.restarts = 0"}
    said = _faults(coord, tmp_path)
    assert "given up" not in said and "more (staleness.json" not in said
    for w in range(1, 7):
        assert f"worker {w} lost at step " in said
    assert said.count("(ActorDiedError), not restarted (cluster.restarts = 0)") == 6


def test_a_resume_records_the_workers_it_started_again_and_the_report_says_which_came_back(runtime, tmp_path):
    """restarts=0: worker 1 is lost at step 20 (not restarted) and the run is checkpointed at step 40, then resumed.
    The resume starts every worker again, worker 1 too: a ``resumed`` event names the workers started, and the report
    says worker 1 is back (else its worker-lost / not-restarted reads as gone for good while it trains again)."""
    coord = coordinator(2, STEPS)
    saved = {}

    def checkpoint(c):
        if coord.done >= 40 and not saved:
            saved.update(c.state()[0], trained=c.trained(), events=list(coord.events))

    ScriptedCluster(runtime, coord, restarts=0, script={(1, 0): _dies_at(20)}).run_scripted(checkpoint)
    again = coordinator(2, STEPS, start=saved["step"], events=saved["events"])
    second = ScriptedCluster(runtime, again, restarts=0, saved=saved)
    again.resumed()                     # as run_cluster says it once the driver is up, on either runner
    second.run_scripted()
    assert again.done == STEPS and sorted(saved["trained"] + second.trained()) == list(range(STEPS))
    assert {w for w, *_ in second.pushes} == {0, 1}                     # worker 1 trained again
    assert _events(again) == [("worker-lost", 1, 21), ("not-restarted", 1, 21), ("resumed", [0, 1], saved["step"])]
    said = _faults(again, tmp_path)
    assert (f"worker 1 lost at step 21 on node node-a (ActorDiedError), not restarted (cluster.restarts = 0); the run resumed at step "
            f"{saved['step']} with its 2 workers started (worker 1 back after its loss)") in said
