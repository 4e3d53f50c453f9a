"""A resumed run's summary ``seconds`` is the training's seconds over every go together, the time between a stop and
its resume left out, alike for Sandblaster (sandblaster.json) and Downpour (cluster.json): a resume of 29 s said
411, its first go's 382 counted in (the local runner counts alike). Each runner's clock is a stand-in that ticks one second a read and jumps 1000
between the goes (the idle): the resume's ``seconds`` counts the first go's and its own ticks, and no jump."""
import dataclasses
import types

import pytest
from sandblaster_runs import _cfg

from downpour.config import load_config
from downpour.runners import train
from downpour.train.rundir import RunDir

pytestmark = pytest.mark.usefixtures("one_thread")


class _Clock:
    """Every clock a module reads (perf_counter, monotonic, time): one second a read, ``idle`` added by hand."""

    def __init__(self):
        self.now, self.reads = 0.0, 0

    def __call__(self) -> float:
        self.now, self.reads = self.now + 1.0, self.reads + 1
        return self.now


@pytest.mark.parametrize("module, cfg", [
    ("downpour.sandblaster.run", lambda: _cfg("sandblaster.units=2")),
    ("downpour.ps.recorder", lambda: load_config("tica-8x8", [
        "cluster.runner=simulated", "cluster.workers=1", "model.name=rica-8x8", "model.hidden=16", "data.samples=300",
        "train.tensorboard=false"])),
    ("downpour.train.loop", lambda: load_config("tica-8x8", [
        "cluster.runner=local", "model.name=rica-8x8", "model.hidden=16", "data.samples=300",
        "train.tensorboard=false"]))], ids=["sandblaster", "downpour", "local"])
def test_a_resumes_seconds_are_every_gos_training_together_without_the_time_between(tmp_path, monkeypatch, module,
                                                                                  cfg):
    import time
    clock = _Clock()
    monkeypatch.setattr(f"{module}.time", types.SimpleNamespace(perf_counter=clock, monotonic=clock, time=clock,
                                                                sleep=time.sleep))
    cfg = cfg()
    first = train(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=2)),
                  RunDir.create(tmp_path / "run", dataclasses.replace(cfg, train=dataclasses.replace(cfg.train,
                                                                                                        steps=2))))
    clock.now += 1000.0                # the run stopped, left a while, then resumed
    before = clock.reads
    resumed = train(load_config(str(tmp_path / "run" / "config.toml"), ["train.steps=4"]),
                    RunDir.open(tmp_path / "run"), resume=True)
    assert resumed["resumed_from"] == 2 and resumed["steps"] == 4
    assert 0 < first["seconds"] < resumed["seconds"]
    # the first go's seconds, then at most one a read of the resume's clock: never the 1000 between them
    assert resumed["seconds"] - first["seconds"] <= clock.reads - before
    # this go's own beside them: its own ticks, never the 1000 between; the rest the first go's as its checkpoint
    # carried them (taken before its summary's last reads); a first go's own are all its seconds
    assert first["seconds_this_go"] == first["seconds"]
    assert 0 < resumed["seconds_this_go"] <= clock.reads - before
    assert 0 < resumed["seconds"] - resumed["seconds_this_go"] <= first["seconds"]


def test_the_placement_note_of_a_resumed_run_says_its_training_seconds_are_every_gos(tmp_path):
    """"training 411.0 s" of a resume that ran 29 s read as the resume's: the note says they are every go's."""
    import html

    from downpour.analysis.report_placement import placement_note

    cfg = load_config("tica-8x8", ['model.name="rica-8x8"', 'cluster.algorithm="sandblaster"', 'cluster.runner="ray"'])
    run = RunDir.create(tmp_path / "r", cfg)
    summary = {"steps": 6, "seconds": 411.0, "start_seconds": 4.25, "nodes": 1, "node_ids": ["a" * 56],
               "node_addresses": ["10.0.0.1"], "placement": {"shards": [0], "workers": [0]}}
    for resumed_from, said in ((3, ", every go's together (the last a resume at step 3; the time between them left "
                                   "out)"), (0, "")):
        run.write_json("sandblaster.json", {**summary, "resumed_from": resumed_from})
        assert html.unescape(placement_note(run)) == (
            '<p class="note">Placement (sandblaster.json): 1 node; node aaaaaaaa at 10.0.0.1: shard 0, worker 0; start '
            f"4.2 s (joining Ray, every actor up), training 411.0 s{said}.</p>")
