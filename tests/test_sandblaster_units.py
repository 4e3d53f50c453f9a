"""Sandblaster's units: each added once whatever the backups and late copies do, backed up only when late and not once
done, backups keeping a 10x straggler from setting the pace (virtual time, the simulator), and the summary's word on
a copy still computing at the end."""
import json

import pytest
import torch
from sandblaster_runs import _cfg, _full_batch

from downpour.preflight import check_run_config
from downpour.runners import train
from downpour.sandblaster.history import HistoryShard
from downpour.sandblaster.run import make_shards
from downpour.sandblaster.simulated import SimulatedPool
from downpour.sandblaster.units import UnitScheduler, batch_rows, split_units
from downpour.train.rundir import RunDir

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_free_worker_backs_up_a_late_unit_not_one_already_done():
    """A unit whose backup won is done while its original still runs: it was the oldest single-copy
    "candidate", so a free worker got a third copy of it (5 of 15 backups in a simulated run)."""
    s = UnitScheduler(split_units(torch.arange(40), 4), 0.0)
    for w in range(3):
        s.next_for(w, 0.0)                      # units 0, 1, 2
    s.finish(0, 0, 1.0)
    assert s.next_for(0, 1.0)[0].index == 3     # the queue's last unit
    s.finish(1, 1, 1.0)
    unit, backup = s.next_for(1, 2.0)
    assert (unit.index, backup) == (2, True)    # unit 2 is late: backed up on worker 1
    s.finish(2, 1, 3.0)                         # the backup wins; worker 2 still runs the original
    got = s.next_for(1, 3.0)
    assert got is None or (got[0].index, got[1]) == (3, True)    # unit 3 (outstanding) or nothing, never 2 again


def test_every_unit_is_added_once_even_with_backups_and_late_copies():
    # backups from the first free worker on, a 10x straggler whose copies run on into the next evaluations
    cfg = _cfg("sandblaster.precision=float64", "sandblaster.units=10", "sandblaster.backup_after=0",
               "cluster.workers=4", "cluster.shards=2", "cluster.delay=straggler:0:10")
    cfg = check_run_config(cfg)
    fg, w0, setup = _full_batch(cfg)
    shards = make_shards(setup)
    pool = SimulatedPool(setup, shards)
    backups = duplicates = 0
    for evaluation in range(1, 5):   # a new sample of 200 examples each time: a late copy's rows are not this batch's
        rows = batch_rows(len(setup.data), 200, 0, evaluation)
        f, g = fg(w0, rows)
        pool.group.call("begin", evaluation)
        ev = pool.evaluate(evaluation, rows, 0.0, None)
        acc = torch.cat([s.vector("acc") for s in shards])
        assert (acc - g).abs().max() < 1e-12 and ev.loss == pytest.approx(f, rel=1e-12)
        assert sum(ev.counts.won.values()) == 10                 # each unit used once
        backups, duplicates = backups + ev.counts.backups, duplicates + ev.counts.duplicates
    assert backups > 0 and duplicates > 0                        # the straggler's copies lost, and were dropped
    assert all(s.duplicates == 0 for s in shards)                # the pool never even offered one twice


def test_a_shard_refuses_a_unit_twice_and_a_unit_of_a_finished_evaluation():
    shard = HistoryShard(0, torch.zeros(3, dtype=torch.float64), history=2)
    shard.begin(1)
    assert shard.accumulate(1, 0, torch.ones(3)) and not shard.accumulate(1, 0, torch.ones(3))
    shard.begin(2)
    assert not shard.accumulate(1, 1, torch.ones(3))              # late: evaluation 1 is over
    assert shard.accumulate(2, 0, torch.full((3,), 2.0))
    assert shard.vector("acc").tolist() == [2.0, 2.0, 2.0] and shard.duplicates == 2


def test_the_scheduler_backs_up_only_late_units_once_the_queue_is_empty_and_enough_are_done():
    sched = UnitScheduler(split_units(torch.arange(8), 4), backup_after=0.5)
    assert [sched.next_for(w, 0.0)[0].index for w in range(3)] == [0, 1, 2]      # worker 2 is slow
    assert sched.finish(0, 0, 1.0) and sched.next_for(0, 1.0)[0].index == 3      # the queue empties
    assert sched.next_for(1, 1.0) is None                                        # 1 of 4 done < 2: no backup yet
    assert sched.finish(1, 1, 1.0)
    assert sched.next_for(1, 1.0) is None                                        # 2 done, but unit 2 is not late yet
    assert sched.backup_due() == 1.5                                             # 1.5 x the median time (1)
    unit, backup = sched.next_for(1, 1.5)
    assert (unit.index, backup) == (2, True)
    assert not sched.finish(3, 1, 1.8)                    # not a copy it handed out (a late one of another batch)
    assert sched.finish(3, 0, 2.0) and sched.finish(2, 1, 2.5) and not sched.finish(2, 2, 10.0)
    assert sched.complete
    c = sched.counts
    assert (c.dispatched, c.backups, c.backups_won, c.duplicates) == (5, 1, 1, 2)


def _batch_times(tmp_path, name, *overrides):
    cfg = _cfg("cluster.workers=4", "sandblaster.units=12", "train.steps=3", *overrides)
    summary = train(cfg, RunDir.create(tmp_path / name, cfg))
    return [b["span"] for b in json.loads((tmp_path / name / "sandblaster.json").read_text())["batches"]], summary


def test_backups_keep_a_10x_straggler_from_setting_the_pace(tmp_path):
    normal, _ = _batch_times(tmp_path, "normal", "cluster.delay=constant:0")
    backed, s = _batch_times(tmp_path, "backups", "cluster.delay=straggler:0:10", "sandblaster.backup_after=0.75")
    waiting, _ = _batch_times(tmp_path, "no-backups", "cluster.delay=straggler:0:10", "sandblaster.backup_after=1")
    base = sum(normal) / len(normal)
    assert max(backed) <= 1.5 * base and s["backups_won"] > 0
    assert sum(waiting) / len(waiting) >= 3 * base


def test_the_summary_says_a_copy_still_computing_at_the_end_was_not_counted():
    """On Ray (a stand-in: the scheduler as the Ray pool drives it) a backup won while its original still ran at the
    end: per_worker added up to 49 against units_dispatched 50, unsaid, until 2026-12-06."""
    sched = UnitScheduler(split_units(torch.arange(4), 2), backup_after=0.5)
    sched.next_for(0, 0.0), sched.next_for(1, 0.0)            # worker 1 is slow
    assert sched.finish(0, 0, 1.0) and sched.next_for(0, 1.5) == (sched.units[1], True)
    assert sched.finish(1, 0, 2.0) and sched.complete           # the backup won; worker 1's copy still computes
    said = sched.counts.per_worker_summary(2)
    assert said["per_worker"] == {"0": {"units": 2, "used": 2}, "1": {"units": 0, "used": 0}}
    assert sched.counts.dispatched == 3 and said["uncounted_copies"] == 1
    assert said["uncounted_why"].startswith("1 unit copy of units_dispatched = 3 never finished here (still computing")
    assert not sched.finish(1, 1, 9.0) and "uncounted_copies" not in sched.counts.per_worker_summary(2)   # it came in
