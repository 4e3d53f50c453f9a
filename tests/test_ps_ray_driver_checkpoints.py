"""What the Ray driver's checkpoint holds, with its actors stood in for (no Ray started): the step while push
answers are still out, the ranges not applied that a resume hands out again (and a damaged one refused), a
checkpoint that fails on the way out, a Ctrl-C as a cycle is handed out or given back."""
from typing import Any

import pytest
import ray
from driver_stand_ins import FakeActor, fake_ray, stand_in  # noqa: F401 (fake_ray: a fixture)

from downpour.ps.consistency import make_consistency
from downpour.ps.coordinator import Coordinator


def test_a_checkpoint_counts_the_pushes_the_shards_applied_before_the_driver_read_their_answers(fake_ray):
    coord = Coordinator(make_consistency("async"), workers=2, total_steps=100)
    for w in (0, 1):
        coord.begin_cycle(w)
        coord.end_compute(w)
        coord.end_cycle(w, 1)
    d = stand_in(coord, [], [FakeActor(), FakeActor()])
    d._pending, d._pushes = {"ref": ("push", 1), "cycle": ("cycle", 0)}, {"ref": ([None], {"steps": 3})}
    d.snapshot()      # (the pushes out at it are the ones its state counts)
    meta, tensors = d.state()
    assert meta == {"step": 5, "clocks": {"0": 1, "1": 2}, "dispatched": 2, "unapplied": []} and tensors == {}


def test_a_resumed_checkpoint_hands_out_again_the_steps_in_flight_at_the_stop_and_each_stage_gets_its_share():
    """The checkpoint keeps the ranges not applied, and the resumed driver hands them out first. Greedy, 60 steps
    (stage 2 from index 30), 4 steps a push: the cycle of steps 28-31 (two of each stage) lands before that of 24-27,
    and the run stops there. A checkpoint of the step count alone, the resume handing out new indices from it, would
    train 28-31 again and 24-27 never: stage 1 would get 28 steps, stage 2 32."""
    from functools import partial

    from downpour.train.setup import stage_for_step

    stage_of = partial(stage_for_step, total=60, n_stages=2, schedule="greedy")
    coord = Coordinator(make_consistency("async"), workers=2, total_steps=60, n_push=4, depth=2, stage_of=stage_of)
    trained = []

    def cycle(c, w):
        first, k = c.first_step(w), c.end_compute(w)
        trained.extend(range(first, first + k))
        c.end_cycle(w, k)

    for _ in range(6):                                          # steps 0-23
        assert coord.begin_cycle(0) == 4
        cycle(coord, 0)
    assert coord.begin_cycle(0) == coord.begin_cycle(1) == 4    # 24-27 at worker 0, 28-31 at worker 1
    cycle(coord, 1)                                             # 28-31 lands first; the run stops
    meta, _ = stand_in(coord, [], [FakeActor(), FakeActor()]).state()
    assert meta["step"] == 28

    resumed = Coordinator(make_consistency("async"), workers=2, total_steps=60, n_push=4, start_step=28,
                          stage_of=stage_of)
    resumed.restore_unapplied(meta, "checkpoints/server.json")      # as _run_once does, resuming on Ray
    while not resumed.finished:
        assert resumed.begin_cycle(0) == 4
        cycle(resumed, 0)
    assert sorted(trained) == list(range(60))                  # each step once
    assert [stage_of(i) for i in trained].count(1) == 30

    old = Coordinator(make_consistency("async"), workers=2, total_steps=60, start_step=28)
    old.restore_unapplied({"step": 28, "clocks": {}}, "server.json")     # a checkpoint from before 2026-12-04: its step
    assert (old.dispatched, old.returned, old.begin_cycle(0), old.first_step(0)) == (28, [], 1, 28)


def test_a_push_the_stop_cut_before_the_shards_applied_it_is_handed_out_again_and_the_resume_finishes(fake_ray):
    """A Ray checkpoint listed as unapplied the ranges given back and those of cycles not pushed yet, but not a push
    sent (end_compute) that the shards never applied: a Ctrl-C between the two (the driver's window before its held
    block) lost its steps. The resume ended one push short of train.steps and never counted as finished: each rerun
    resumed at its last step (cross-fit, 300 steps on Ray, stopped at step 176: dispatched 300, 299 applied). A push
    the shards did apply, its answers unread (in the snapshot, counted in its step), is not handed out again."""
    coord = Coordinator(make_consistency("async"), workers=3, total_steps=12, n_push=2, depth=2)
    trained: list[int] = []

    def cycle(c: Coordinator, w: int) -> None:
        first, k = c.first_step(w), c.end_compute(w)
        trained.extend(range(first, first + k))
        c.end_cycle(w, k)

    for w in (0, 1, 2):
        assert coord.begin_cycle(w) == 2                        # steps 0-1, 2-3, 4-5
    cycle(coord, 0)
    assert coord.begin_cycle(0) == 2                            # 6-7, still computing at the stop
    coord.end_compute(1)                                        # 2-3 sent; the stop cuts it before the shards
    coord.end_compute(2)                                        # 4-5 applied by the shards, their answers unread
    trained.extend(range(4, 6))
    d = stand_in(coord, [], [FakeActor(), FakeActor(), FakeActor()])
    d._pending, d._pushes = {"ref": ("push", 2)}, {"ref": ([None], {"steps": 2})}
    d.snapshot()
    meta, _ = d.state()
    assert (meta["step"], meta["dispatched"], meta["unapplied"]) == (4, 8, [[2, 2], [6, 2]])

    resumed = Coordinator(make_consistency("async"), workers=3, total_steps=12, n_push=2, start_step=meta["step"])
    resumed.restore_unapplied(meta, "checkpoints/server.json")      # as _run_once does, resuming on Ray
    while resumed.begin_cycle(0):
        cycle(resumed, 0)
    assert resumed.finished and sorted(trained) == list(range(12))   # each step once, the run done


def test_a_checkpoint_that_lost_a_push_before_the_fix_hands_out_the_last_steps_again_and_finishes(caplog, tmp_path):
    """A checkpoint written by that stop before 2026-12-06 counts the lost push as handed out and keeps no range of
    it (cross-fit fold-0 of 300 steps: step 299, dispatched 300, unapplied []): the count missing is handed out again,
    the highest indices not in flight, and it finishes (else every resume trains nothing, the run never finishing)."""
    coord = Coordinator(make_consistency("async"), workers=2, total_steps=300, start_step=299)
    coord.restore_unapplied({"step": 299, "dispatched": 300, "unapplied": []}, tmp_path / "checkpoints/server.json")
    assert coord.begin_cycle(0) == 1                            # (not 0: nothing left to hand out)
    assert (coord.first_step(0), coord.handed_out) == (299, True)
    coord.end_cycle(0, coord.end_compute(0))
    assert coord.finished
    assert (f"checkpoint file {str(tmp_path / 'checkpoints/server.json')!r} counts 1 step handed out ('dispatched': "
            "300) that was neither applied ('step': 299) nor kept to hand out again ('unapplied')") in caplog.text
    assert "step index 299 is handed out again in its place" in caplog.text
    stopped = Coordinator(make_consistency("async"), workers=2, total_steps=300, start_step=172)
    # 2 applied, 2 kept, 2 lost
    stopped.restore_unapplied({"dispatched": 176, "unapplied": [[171, 1], [175, 1]]}, "server.json")
    assert stopped.returned == [(171, 1), (173, 2), (175, 1)]     # 173-174 one range: a cycle may take both


def test_a_push_of_n_push_steps_a_damaged_checkpoint_lost_is_handed_out_again_in_one_cycle(caplog):
    """The steps the repair hands out again go back as whole pushes: the push of 10 steps (n_push 10) that a stop
    before 2026-12-06 lost does not come back as 10 cycles of one step, each a hand-off and an apply at every shard."""
    coord = Coordinator(make_consistency("async"), workers=2, total_steps=300, n_push=10, start_step=280)
    coord.restore_unapplied({"dispatched": 300, "unapplied": [[280, 10]]}, "server.json")
    assert coord.returned == [(280, 10), (290, 10)]
    grants = []
    while not coord.handed_out:
        grants.append((coord.begin_cycle(0), coord.first_step(0)))
        coord.end_cycle(0, coord.end_compute(0))
    assert grants == [(10, 280), (10, 290)] and coord.finished
    assert "step indices 290 to 299 are handed out again in their place" in caplog.text


@pytest.mark.parametrize("damaged", [{"dispatched": 32, "unapplied": [[24]]}, {"dispatched": "32", "unapplied": []},
                                     {"unapplied": [[24, 4]]}, {"dispatched": 28, "unapplied": [[24, 8]]},
                                     {"dispatched": 32, "unapplied": [[24, -4]]}])
def test_a_damaged_unapplied_range_in_a_ray_checkpoint_is_a_checkpoint_error(tmp_path, damaged):
    """A hand-damaged 'unapplied' or 'dispatched' in server.json is a CheckpointError naming the file, as every other
    damaged key of it is: not a bare ValueError, TypeError or KeyError from the resumed driver (`downpour train
    --resume` printing a traceback), nor, a range past the steps handed out or of no steps, taken (a range handed
    out again that was applied trains its steps twice)."""
    from downpour.errors import CheckpointError
    from downpour.ps.checkpoint import restoring

    coord = Coordinator(make_consistency("async"), workers=2, total_steps=60, n_push=4, start_step=28)
    with pytest.raises(CheckpointError, match=r"checkpoints/server\.json"):
        with restoring(tmp_path / "checkpoints/server"):        # as _run_once restores it, resuming on Ray
            coord.restore_unapplied({"step": 28, "clocks": {}, **damaged}, tmp_path / "checkpoints/server.json")
    assert (coord.dispatched, coord.returned) == (28, [])       # nothing taken from it


def test_a_checkpoint_that_fails_on_the_way_out_says_in_one_line_where_the_resume_goes_on(tmp_path, caplog):
    """A shard lost for good (cluster.shard_restarts spent) fails the checkpoint on the way out: the warning ran
    Ray's five-line ActorDiedError into the log and did not say the last checkpoint was still there."""
    from downpour.config import load_config
    from downpour.ps.cluster import run_cluster
    from downpour.ps.recorder import Recorder
    from downpour.train.rundir import RunDir

    cfg = load_config("ufldl-sae", ["cluster.runner=simulated", "data.samples=64", "train.batch_size=8",
                                    "train.steps=12", "cluster.workers=2", "train.tensorboard=false"])
    run = RunDir.create(tmp_path / "r", cfg)
    run_cluster(cfg, run)                          # its last checkpoint: step 12
    rec = object.__new__(Recorder)
    rec.run, rec._saved_on_failure, rec._whole = run, False, False     # a Ray driver: no whole state on disk
    rec.coord = Coordinator(make_consistency("async"), 2, 40, start_step=17)

    def settle(on_push):
        raise ray.exceptions.RayError("The actor died unexpectedly before finishing this task.\n\tclass_name: Shard\n"
                                      "\tactor_id: 1234\nThe actor is dead because its worker process has died.")

    rec.driver, rec.on_push = type("Driver", (), {"settle": staticmethod(settle)})(), None
    with caplog.at_level("WARNING", logger="downpour.ps.recorder"):
        rec.save_on_failure()
    assert caplog.messages == [f"stopped at step 17; could not checkpoint the server (RayError: The actor died "
                               f"unexpectedly before finishing this task.); --resume {run.path} goes on from the "
                               f"last checkpoint, at step 12"]


class _StoppedMidway(dict):
    """A coordinator's cycles in flight that take a Ctrl-C as a cycle's range enters (``setdefault``: the count handed
    out already raised) or leaves them (``pop``: not given back yet): the window of a stop between the two."""

    def _stop(self) -> None:
        import os
        import signal
        os.kill(os.getpid(), signal.SIGINT)

    def setdefault(self, *args: Any) -> Any:
        self._stop()
        return super().setdefault(*args)

    def pop(self, *args: Any) -> Any:
        got = super().pop(*args)
        self._stop()
        return got


def test_a_stop_as_a_restart_or_a_loss_hands_out_or_gives_back_a_cycle_keeps_its_steps(fake_ray):
    """A restart's or a loss's dispatch, and a loss, run outside the loops' held blocks: a Ctrl-C between the count
    handed out and the cycle's record in flight (begin_cycle), or between a lost worker's cycles leaving the flight and
    being given back (lose), would lose their steps as the push before the shards does."""
    coord = Coordinator(make_consistency("async"), workers=2, total_steps=12, n_push=2)
    d = stand_in(coord, [FakeActor(set_workers=lambda live: None)], [FakeActor(), FakeActor()])
    coord._inflight = _StoppedMidway()
    with pytest.raises(KeyboardInterrupt):
        d._dispatch(0)
    assert coord.unapplied_state() == {"dispatched": 2, "unapplied": [[0, 2]]}
    with pytest.raises(KeyboardInterrupt):
        d._lost(0, RuntimeError("ActorDiedError"))
    assert coord.unapplied_state() == {"dispatched": 2, "unapplied": [[0, 2]]} and coord.returned == [(0, 2)]
