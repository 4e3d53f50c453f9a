"""A shard lost just after a checkpoint written with a push in flight, on the Ray driver with its actors stood in for
(no Ray started): the loss's step is the step the checkpoint holds, so that the error, the warning, cluster.json,
staleness.json and the report's stop line (all from the loss's step and the coordinator's) are not behind the
checkpoint a resume goes on from. On a 2-node Ray (2026-12-07) a checkpoint at step 20 with worker 1's push in flight
held step 21 (every shard had applied it: a shard runs the driver's calls in order), and the shard lost just after
it stopped the run "at step 20", its resume going on "from step 21". The simulator cannot reach it: its pushes are
whole events, none in flight at a checkpoint."""
import pytest
import ray
from driver_stand_ins import FakeActor, Ref, fake_ray, stand_in  # noqa: F401 (fake_ray: a fixture)

import downpour.ps.restarts_on_ray as restarts_module
import downpour.ps.shards_on_ray as shards_module
from downpour.ps.consistency import make_consistency
from downpour.ps.coordinator import Coordinator
from downpour.ps.recorder import ShardLost


def _sent(d, w: int, answer: object) -> Ref:
    """Worker ``w``'s next push of 1 step handed to the shards, its answer (``answer``) not read yet (a shard on another
    node)."""
    d.coord.begin_cycle(w)
    d.coord.end_compute(w)
    ref = Ref(answer)
    d._pending[ref], d._pushes[ref] = ("push", w), ([ref], {"steps": 1})
    return ref


def _checkpointed_at_20_with_a_push_in_flight():
    """20 steps recorded, worker 1's push of step 21 in flight when the server is snapshotted (its checkpoint holds
    step 21), and worker 0's sent after it, in no checkpoint."""
    coord = Coordinator(make_consistency("async"), workers=2, total_steps=60)
    for step in range(20):
        coord.begin_cycle(step % 2)
        coord.end_compute(step % 2)
        coord.end_cycle(step % 2, 1)
    d = stand_in(coord, [FakeActor(state_dict=lambda: ({}, {})) for _ in range(2)], [FakeActor(), FakeActor()])
    d.placement = {"shards": ["n", "m"], "workers": ["n", "m"]}
    in_flight = _sent(d, 1, ray.exceptions.RayError("its node is gone"))   # (its shard's answer: never to come)
    d.snapshot()
    assert d.state()[0]["step"] == 21      # the checkpoint's step
    _sent(d, 0, {})
    return d, in_flight


@pytest.mark.parametrize("read", ["unread", "read by the task loop"])
def test_a_shard_lost_after_a_checkpoint_with_a_push_in_flight_is_lost_at_the_checkpoints_step(
        fake_ray, monkeypatch, read):
    """The push the checkpoint counted is counted in the loss's step, whether its answers were still out when another
    failure showed the loss or the task loop's read of them failed (the loop takes it off its futures first); the one
    sent after the snapshot is not (no checkpoint holds it: the resume trains it again)."""
    d, _ = _checkpointed_at_20_with_a_push_in_flight()
    d._dead_shards = lambda: [1]
    with pytest.raises(ShardLost, match=r"^shard 1 lost at step 21 on node m \(RayError\)$") as lost:
        if read == "unread":
            d._shard_lost(ray.exceptions.RayError("a worker's fetch failed"))
        else:
            monkeypatch.setattr(shards_module, "ray", fake_ray)
            d._run_tasks(lambda push, record: None)
    assert lost.value.step == d.coord.done == 21 == d.state()[0]["step"]     # (worker 0's push, still out: in neither)
    assert d.coord.clocks() == {0: 10, 1: 11}


def test_a_head_gone_after_a_checkpoint_with_a_push_in_flight_is_lost_at_the_checkpoints_step(fake_ray, monkeypatch):
    """The shards went with the head: its loss is at the step they held, as a lost shard's."""
    d, _ = _checkpointed_at_20_with_a_push_in_flight()
    monkeypatch.setattr(restarts_module, "head_answers", lambda timeout: False)
    with pytest.raises(ShardLost, match=r"^the Ray cluster's head no longer answers \(worker 0 lost at step 21\)$") \
            as lost:
        d._head_answers(0)
    assert lost.value.step == d.coord.done == 21


def test_a_shard_lost_with_no_checkpoint_since_its_push_was_sent_is_lost_at_the_step_the_driver_read(fake_ray):
    """A push no snapshot saw is not counted, nor one the driver read after the snapshot (counted once)."""
    d, in_flight = _checkpointed_at_20_with_a_push_in_flight()
    del d._pending[in_flight], d._pushes[in_flight]     # read: recorded as every push is
    d.coord.end_cycle(1, 1)
    d._dead_shards = lambda: [1]
    with pytest.raises(ShardLost, match=r"^shard 1 lost at step 21 on ") as lost:
        d._shard_lost(RuntimeError("its node is gone"))
    assert lost.value.step == d.coord.done == 21


def test_a_shard_taken_for_lost_that_answers_is_not_checkpointed_on_the_way_out_ahead_of_its_stop(fake_ray):
    """Shard 1 silent 10 s is taken for lost at step 21 (the push the checkpoint counted), yet its stand-in answers the
    checkpoint on the way out: the shards then hold worker 0's push sent after the snapshot, which the stop does not
    count. The checkpoint is refused (the warning says "could not checkpoint the server at step 21 (RuntimeError:
    ...)"), and a resume goes on from the last one, at most the stop's step: counted, it held step 22, a stop at 21
    whose resume went on "from step 22" (the 2-node shard test's race); at step 21, it would hold that push's update
    and counters all the same, and the resume would apply those steps twice."""
    d, _ = _checkpointed_at_20_with_a_push_in_flight()
    d._dead_shards = lambda: [1]        # (silent: its stand-in's state_dict still answers)
    with pytest.raises(ShardLost, match=r"^shard 1 lost at step 21 ") as lost:
        d._shard_lost(ray.exceptions.GetTimeoutError("no answer within 10 s"))
    with pytest.raises(RuntimeError, match=r"^the shards hold 1 push sent after step 21, the lost shard's, whose "
                                           r"answers were not read$"):
        d.snapshot()
    assert lost.value.step == d.coord.done == 21


def test_a_shard_taken_for_lost_that_answers_with_no_push_sent_since_is_checkpointed_at_the_stops_step(fake_ray):
    """With no push sent after the snapshot, the shards hold what the stop counts: the checkpoint on the way out is
    taken, at the stop's step, and a restart or resume goes on from it."""
    d, in_flight = _checkpointed_at_20_with_a_push_in_flight()
    (later,) = [ref for ref in d._pushes if ref is not in_flight]
    del d._pending[later], d._pushes[later]      # worker 0's: read, as every push is
    d.coord.end_cycle(0, 1)
    d._dead_shards = lambda: [1]
    with pytest.raises(ShardLost, match=r"^shard 1 lost at step 22 ") as lost:
        d._shard_lost(ray.exceptions.GetTimeoutError("no answer within 10 s"))
    assert len(d.snapshot()) == 2 and d.state()[0]["step"] == lost.value.step == 22
