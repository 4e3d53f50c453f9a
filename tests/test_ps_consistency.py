"""Consistency gates, the coordinator's budget / warm start / worker loss, delay models."""
import numpy as np
import pytest

from downpour.config import ConfigError
from downpour.ps.consistency import make_consistency
from downpour.ps.coordinator import Coordinator
from downpour.ps.delays import delay_rngs, make_delays


def test_async_never_waits_bounded_waits_at_k_sync_in_lockstep():
    for spec, allowed_gap in (("async", 10), ("bounded:2", 2), ("sync", 0)):
        gate = make_consistency(spec)
        gate.join(0)
        gate.join(1)
        for _ in range(allowed_gap):
            assert gate.may_start(0)
            gate.tick(0)
        assert gate.gap(0) == allowed_gap and gate.may_start(0)
        gate.tick(0)
        assert gate.may_start(0) == (spec == "async")
        gate.leave(1)                          # the slow worker died: nobody is held back by it
        assert gate.may_start(0)


def test_bad_consistency_is_an_error():
    for spec in ("bounded:x", "bounded:-1", "eventual"):
        with pytest.raises(ConfigError, match="cluster.consistency"):
            make_consistency(spec)


def _cycle(coord, w):
    return coord.end_cycle(w, coord.end_compute(w))


def test_coordinator_budget_warm_start_and_loss():
    coord = Coordinator(make_consistency("async"), workers=3, total_steps=10, n_push=2, warm_start=4)
    assert coord.live == {0}
    assert coord.begin_cycle(1) == 0           # not joined yet
    assert coord.begin_cycle(0) == 2 and coord.begin_cycle(0) == 0   # already running
    assert _cycle(coord, 0) == []
    assert coord.begin_cycle(0) == 2
    assert _cycle(coord, 0) == [1, 2]          # 4 steps done: the others join
    assert coord.begin_cycle(1) == 2 and coord.begin_cycle(2) == 2 and coord.begin_cycle(0) == 2
    coord.lose(2, "killed")                    # its 2 uncomputed steps go back to the budget
    assert coord.dispatched == 10 and coord.returned == [(6, 2)] and not coord.handed_out
    _cycle(coord, 1)
    assert coord.begin_cycle(1) == 2 and coord.begin_cycle(1) == 0
    _cycle(coord, 0)
    _cycle(coord, 1)
    assert coord.finished and coord.done == 10 and coord.lost == [2]
    assert [e["event"] for e in coord.events] == ["joined", "worker-lost"]


def test_a_lost_workers_steps_are_handed_out_again_by_their_own_indices():
    """A loss does not lower ``dispatched`` for the drivers to take a cycle's first step as ``dispatched - k``: a later
    grant would repeat steps 2-3, still in flight at worker 1, and steps 0-1 never be handed out."""
    coord = Coordinator(make_consistency("async"), workers=3, total_steps=8, n_push=2)
    firsts = []

    def grant(w):
        k = coord.begin_cycle(w)
        firsts.append(coord.first_step(w))
        return k

    assert grant(0) == 2 and grant(1) == 2     # steps 0-1 at worker 0, 2-3 at worker 1
    coord.lose(0, "killed")
    assert grant(2) == 2                       # steps 0-1 again, not 2-3
    _cycle(coord, 1)
    assert grant(1) == 2
    _cycle(coord, 2)
    assert grant(2) == 2 and coord.handed_out and coord.begin_cycle(1) == 0
    _cycle(coord, 1)
    _cycle(coord, 2)
    assert firsts == [0, 2, 0, 4, 6] and coord.done == 8 and coord.finished


def test_a_lost_greedy_stage_1_range_is_trained_before_stage_2_starts():
    """Steps 2 and 3 (stage 1 of 2) in flight, worker 0 lost with step 2: step 2 comes first, and stage 2 waits for it
    (else the next grant repeats step 3 and the stage switch lets stage 2 start with stage 1 one step short)."""
    coord = Coordinator(make_consistency("async"), workers=3, total_steps=8, stage_of=lambda i: 1 + i * 2 // 8)
    for w in (0, 1):                           # steps 0 and 1 applied
        coord.begin_cycle(w)
        _cycle(coord, w)
    assert coord.begin_cycle(0) == 1 and coord.begin_cycle(1) == 1
    assert coord.done == 2 and [coord.first_step(w) for w in (0, 1)] == [2, 3]
    coord.lose(0, "killed")
    assert coord.begin_cycle(2) == 1 and coord.first_step(2) == 2
    _cycle(coord, 1)                           # step 3 lands; step 2 is still at worker 2
    assert coord.begin_cycle(1) == 0           # stage 2's first step waits for it
    _cycle(coord, 2)
    assert coord.begin_cycle(1) == 1 and coord.first_step(1) == 4


def test_a_restarted_worker_rejoins_level_with_the_slowest():
    coord = Coordinator(make_consistency("bounded:1"), workers=2, total_steps=20)
    for _ in range(3):
        coord.begin_cycle(0)
        _cycle(coord, 0)
        coord.begin_cycle(1)
        _cycle(coord, 1)
    coord.begin_cycle(1)
    coord.lose(1, "killed")
    coord.rejoin(1)
    assert coord.live == {0, 1} and coord.lost == [] and coord.clocks() == {0: 3, 1: 3}
    assert coord.begin_cycle(1) == 1 and coord.events[-1]["event"] == "worker-restarted"


def test_a_worker_lost_before_a_resumes_checkpoint_joins_the_resume_level_with_the_slowest():
    """Ray's resume starts every worker afresh, one lost for good too, from the checkpoint's clocks (``clocks()``),
    which no longer hold the lost one's: it joins at the slowest saved clock, not at 0 (worker 0 did: the other's
    gap read its 5 pushes, and under bounded:1 it could not start until worker 0 had pushed 5 times alone)."""
    for spec in ("async", "bounded:1"):
        coord = Coordinator(make_consistency(spec), workers=2, total_steps=20)
        coord.lose(0, "killed")
        for _ in range(5):
            coord.begin_cycle(1)
            _cycle(coord, 1)
        saved = coord.clocks()
        assert saved == {1: 5} and coord.done == 5
        resumed = Coordinator(make_consistency(spec), workers=2, total_steps=20, start_step=5, clocks=saved)
        assert resumed.clocks() == {0: 5, 1: 5}, spec
        assert resumed.begin_cycle(1) == 1 and resumed.begin_cycle(0) == 1
        resumed.end_compute(1)
        assert resumed.gaps[1] == 0 and resumed.max_gap == 0, spec


def test_a_restarted_worker_is_not_let_into_the_sync_round_it_already_pushed_into():
    """Worker 2 pushed into round 1 and died before it closed: restarted level with the slowest it would
    push into round 1 again, and the round's mean would count it twice."""
    coord = Coordinator(make_consistency("sync"), workers=3, total_steps=100)
    for w in range(3):
        coord.begin_cycle(w)
        _cycle(coord, w)                      # round 0 closes
    coord.begin_cycle(2)
    _cycle(coord, 2)                          # round 1: worker 2 pushed
    coord.lose(2, "killed")
    coord.rejoin(2)
    assert coord.clocks()[2] == 2 and coord.begin_cycle(2) == 0
    for w in (0, 1):
        coord.begin_cycle(w)
        _cycle(coord, w)                      # round 1 closes
    assert coord.begin_cycle(2) == 1


def test_losing_the_warm_starts_only_worker_starts_the_others():
    coord = Coordinator(make_consistency("async"), workers=3, total_steps=20, warm_start=10)
    coord.begin_cycle(0)
    coord.lose(0, "killed")
    assert coord.live == {1, 2} and not coord.finished and coord.begin_cycle(1) == 1
    assert [e["event"] for e in coord.events] == ["worker-lost", "joined"]


def test_async_pipelines_bounded_waits_for_its_own_push():
    for spec, pipelined in (("async", True), ("bounded:5", False)):
        coord = Coordinator(make_consistency(spec), workers=1, total_steps=10)
        coord.begin_cycle(0)
        steps = coord.end_compute(0)          # push sent, not applied yet
        assert (coord.begin_cycle(0) > 0) == pipelined
        coord.end_cycle(0, steps)
        assert coord.begin_cycle(0) > 0 or pipelined


def test_sync_coordinator_lets_no_worker_start_a_round_early():
    coord = Coordinator(make_consistency("sync"), workers=2, total_steps=100)
    assert coord.begin_cycle(0) == 1 and coord.begin_cycle(1) == 1
    _cycle(coord, 0)
    assert coord.begin_cycle(0) == 0           # worker 1 has not pushed round 0 yet
    _cycle(coord, 1)
    assert coord.begin_cycle(0) == 1


def test_delay_models_are_seeded_and_validated():
    a = [d.sample(r) for d, r in zip(make_delays("exponential:2", 3), delay_rngs(5, 3))]
    b = [d.sample(r) for d, r in zip(make_delays("exponential:2", 3), delay_rngs(5, 3))]
    assert a == b and len(set(a)) == 3
    rng = np.random.default_rng(0)
    straggler = make_delays("straggler:1:5", 3)
    assert [d.sample(rng) for d in straggler] == [1.0, 1.0, 5.0]
    assert all(2 <= make_delays("uniform:2:3", 1)[0].sample(rng) <= 3 for _ in range(20))
    for spec in ("constant", "constant:-1", "uniform:3:2", "normal:1", "exponential:x"):
        with pytest.raises(ConfigError, match="cluster.delay"):
            make_delays(spec, 2)


def test_a_greedy_stages_first_cycle_waits_until_the_stage_before_has_landed():
    """The first cycle of a stage waits for every step handed out before it; later ones do not. Else a cycle of stage
    2 handed out while pushes of stage 1 are still on their way lands them among stage 2's (on Ray a metrics row
    averages both stages, and stage 1 goes on moving under stage 2)."""
    def greedy(total):
        return lambda i: 1 + i * 2 // total

    coord = Coordinator(make_consistency("async"), workers=2, total_steps=8, depth=2, stage_of=greedy(8))
    assert [coord.begin_cycle(w) for w in (0, 0, 1, 1)] == [1, 1, 1, 1]    # steps 0-3: stage 1
    _cycle(coord, 0)
    assert coord.begin_cycle(0) == 0           # step 4 is stage 2's first: steps 1-3 are not applied yet
    _cycle(coord, 1)
    _cycle(coord, 0)
    assert coord.begin_cycle(0) == 0
    _cycle(coord, 1)
    assert coord.begin_cycle(0) == 1 and coord.begin_cycle(1) == 1 and coord.begin_cycle(1) == 1   # steps 4-6
    _cycle(coord, 0)                           # the same stage: its next cycle does not wait for the others'
    assert coord.begin_cycle(0) == 1 and coord.finished is False

    # n_push = 2 and the switch at step 3: the cycle of steps 2-3 crosses it, the next (4-5) waits for it
    coord = Coordinator(make_consistency("async"), workers=2, total_steps=6, n_push=2, depth=2, stage_of=greedy(6))
    assert coord.begin_cycle(0) == 2 and coord.begin_cycle(1) == 2
    _cycle(coord, 0)
    assert coord.begin_cycle(0) == 0
    _cycle(coord, 1)
    assert coord.begin_cycle(0) == 2

    # joint training (every stage at every step) never waits
    coord = Coordinator(make_consistency("async"), workers=2, total_steps=8, depth=2, stage_of=lambda i: None)
    assert [coord.begin_cycle(w) for w in (0, 0, 1, 1, 0)] == [1, 1, 1, 1, 0]    # (the last: its queue is full)
