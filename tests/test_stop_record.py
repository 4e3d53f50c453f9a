"""A second Ctrl-C while a stopped run writes what it did (its last checkpoint, data.json): it waits for the record,
said in one line, and a third leaves at once. Else the second cuts the record: the stop's checkpoint lost (a run
without an earlier one trained again from step 0), a temporary file left beside it."""
import json
import os
import signal

import pytest
from ctrl_c import ctrl_c_after_push

import downpour.ps.recorder as recorder_module
import downpour.train.checkpoint as checkpoint_module
import downpour.train.loop as loop
from downpour.config import load_config
from downpour.ps.cluster import run_cluster
from downpour.train.loop import run_local
from downpour.train.rundir import RunDir

pytestmark = pytest.mark.usefixtures("one_thread")   # (its trainings run in this process)

SAE = ["data.samples=500", "train.batch_size=20", "train.tensorboard=false", "train.threads=1", "train.steps=30",
       "train.checkpoint_every=0"]
SIM = ["cluster.runner=simulated", "cluster.workers=3", "cluster.shards=2", "cluster.delay=uniform:0:3",
       "train.steps=31", "train.lr=0.02", "train.log_every=10", "train.tensorboard=false"]


def _ctrl_c_in_the_stops_write(monkeypatch, times=1):
    """``times`` Ctrl-Cs (SIGINT, as a user's) in the first tensors file written once the run is stopping (``stopping``
    set), its temporary file written, not yet renamed: a write cut half way. Returns ``stopping``."""
    write, stopping = checkpoint_module.write_tensors, []

    def write_then_ctrl_c(tensors, path, layouts=None):
        write(tensors, path, layouts)
        if stopping == [True]:
            stopping.append(False)
            for _ in range(times):
                os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(checkpoint_module, "write_tensors", write_then_ctrl_c)
    return stopping


def _stopped_at_step(monkeypatch, n, stopping):
    """KeyboardInterrupt raised by the n-th train_step call of the local loop, ``stopping`` set with it."""
    real, calls = loop.train_step, []

    def step(*args):
        calls.append(1)
        if len(calls) == n:
            stopping.append(True)
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(loop, "train_step", step)


def test_a_second_ctrl_c_in_the_local_stops_checkpoint_waits_for_it(tmp_path, monkeypatch, capsys):
    cfg = load_config("ufldl-sae", SAE)
    run = RunDir.create(tmp_path / "r", cfg)
    _stopped_at_step(monkeypatch, 12, _ctrl_c_in_the_stops_write(monkeypatch))
    with pytest.raises(KeyboardInterrupt):
        run_local(cfg, run)
    monkeypatch.undo()
    assert json.loads((run.checkpoints / "local.json").read_text())["step"] == 11
    assert capsys.readouterr().err.count("saving the run's checkpoint and stop record first") == 1
    assert sorted(p.name for p in run.checkpoints.iterdir()) == ["local.json", "local.safetensors"]
    summary = run_local(load_config(str(run.path / "config.toml")), RunDir.open(run.path), resume=True)
    assert summary["resumed_from"] == 11 and RunDir.open(run.path).model_step() == 30


def test_a_third_ctrl_c_leaves_at_once_and_keeps_the_checkpoint_before(tmp_path, monkeypatch, capsys):
    """(a write that hangs never keeps the user in): the stop's checkpoint cut, the one of step 10 stands."""
    cfg = load_config("ufldl-sae", [*SAE, "train.checkpoint_every=10"])
    run = RunDir.create(tmp_path / "r", cfg)
    _stopped_at_step(monkeypatch, 15, _ctrl_c_in_the_stops_write(monkeypatch, times=2))
    with pytest.raises(KeyboardInterrupt):
        run_local(cfg, run)
    monkeypatch.undo()
    assert capsys.readouterr().err.count("saving the run's checkpoint and stop record first") == 1
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert json.loads((run.checkpoints / "local.json").read_text())["step"] == 10
    summary = run_local(load_config(str(run.path / "config.toml")), RunDir.open(run.path), resume=True)
    assert summary["resumed_from"] == 10 and RunDir.open(run.path).model_step() == 30


def test_a_second_ctrl_c_in_the_simulated_clusters_stop_checkpoint_waits_for_it(tmp_path, monkeypatch, capsys):
    cfg = load_config("teacher-student", SIM)
    once = RunDir.create(tmp_path / "once", cfg)     # the same stop, one Ctrl-C: where its checkpoint stands
    ctrl_c_after_push(monkeypatch, 7)
    with pytest.raises(KeyboardInterrupt):
        run_cluster(cfg, once)
    stopped_at = json.loads((once.checkpoints / "server.json").read_text())["step"]
    stopping = _ctrl_c_in_the_stops_write(monkeypatch)
    save = recorder_module.Recorder.save_on_failure

    def saving(self, err=None):
        stopping.append(True)
        save(self, err)

    monkeypatch.setattr(recorder_module.Recorder, "save_on_failure", saving)
    run = RunDir.create(tmp_path / "twice", cfg)
    with pytest.raises(KeyboardInterrupt):
        run_cluster(cfg, run)
    monkeypatch.undo()
    assert stopping == [True, False]           # (the second Ctrl-C came, in the stop's checkpoint)
    assert json.loads((run.checkpoints / "server.json").read_text())["step"] == stopped_at
    assert capsys.readouterr().err.count("saving the run's checkpoint and stop record first") == 1
    assert not [p.name for p in run.checkpoints.iterdir() if p.name.endswith(".tmp")]
    summary = run_cluster(load_config(str(run.path / "config.toml")), RunDir.open(run.path), resume=True)
    assert summary["resumed_from"] == stopped_at and RunDir.open(run.path).model_step() == 31


def test_a_held_block_inside_a_stop_record_lets_the_third_ctrl_c_out(capsys):
    """(a checkpoint's own held block, say): its handlers would only note the stops, and a hung write kept the user in."""
    from downpour.train.signals import signals_held, stop_record

    reached = []
    with pytest.raises(KeyboardInterrupt), stop_record():
        with signals_held():
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
            reached.append(1)
    assert not reached and capsys.readouterr().err.count("stop record first") == 1


def test_a_second_ctrl_c_in_sandblasters_stop_checkpoint_waits_for_it(tmp_path, monkeypatch, capsys):
    import downpour.sandblaster.lbfgs as lbfgs
    from downpour.preflight import check_run_config
    from downpour.runners import train

    cfg = check_run_config(load_config("tica-8x8", [
        "cluster.runner=simulated", "cluster.algorithm=sandblaster", "train.threads=1", "train.tensorboard=false",
        "model.name=rica-8x8", "data.samples=300", "sandblaster.units=4", "train.steps=5", "cluster.workers=2",
        "sandblaster.batch=100", "cluster.checkpoint_every=0"]))
    stopping = _ctrl_c_in_the_stops_write(monkeypatch)
    real, calls = lbfgs.Coordinator._evaluate, []

    def stop_at_the_fourth(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 4:                         # inside iteration 2 or 3
            stopping.append(True)
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(lbfgs.Coordinator, "_evaluate", stop_at_the_fourth)
    run = RunDir.create(tmp_path / "r", cfg)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, run)
    monkeypatch.undo()
    assert stopping == [True, False]
    assert capsys.readouterr().err.count("saving the run's checkpoint and sandblaster.json first") == 1
    assert sorted(p.name for p in run.checkpoints.iterdir()) == ["sandblaster.json", "sandblaster.safetensors"]
    # the second Ctrl-C waited for the stop's sandblaster.json too (a stopped run writes one)
    assert run.read_json("sandblaster.json")["stopped"]["by"] == "KeyboardInterrupt"
    summary = train(load_config(str(run.path / "config.toml")), RunDir.open(run.path), resume=True)
    assert summary["resumed_from"] > 0 and RunDir.open(run.path).model_step() == 5


def test_a_ctrl_c_while_a_held_block_puts_its_handlers_back_leaves_none_of_its_own(monkeypatch):
    """The Ctrl-C (a third, or one just as the block ends) lands as SIGINT's handler is put back: it raised there, and
    SIGTERM kept the block's noting handler, so every later SIGTERM (``timeout``, a scheduler) was noted and dropped."""
    from downpour.train.signals import signals_held, stop_record

    real, kills = signal.signal, []

    def put_back_then_ctrl_c(signum, handler):
        before = real(signum, handler)
        if signum == signal.SIGINT and handler is signal.default_int_handler and not kills:
            kills.append(1)
            os.kill(os.getpid(), signal.SIGINT)
        return before

    term = signal.getsignal(signal.SIGTERM)
    for block in (signals_held, stop_record):
        kills.clear()
        monkeypatch.setattr(signal, "signal", put_back_then_ctrl_c)
        with pytest.raises(KeyboardInterrupt), block():
            pass
        monkeypatch.undo()
        assert kills and signal.getsignal(signal.SIGTERM) is term
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_second_ctrl_c_in_a_stop_with_no_step_to_checkpoint_names_the_stop_record_alone(tmp_path, monkeypatch, capsys):
    """Stopped in its first step: no checkpoint is written, and the line said one was being saved."""
    cfg = load_config("ufldl-sae", SAE)
    run = RunDir.create(tmp_path / "r", cfg)
    _stopped_at_step(monkeypatch, 1, [])
    real = loop.record_stopped

    def ctrl_c_then_record(*args):
        os.kill(os.getpid(), signal.SIGINT)
        real(*args)

    monkeypatch.setattr(loop, "record_stopped", ctrl_c_then_record)
    with pytest.raises(KeyboardInterrupt):
        run_local(cfg, run)
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert err.count("saving the run's stop record first") == 1 and "checkpoint and stop record" not in err
    assert not run.checkpoints.exists() or not list(run.checkpoints.iterdir())     # (none written: none to name)


def test_a_stop_records_by_keeps_the_errors_whole_message():
    """data.json's and sandblaster.json's ``stopped.by``: the error's type and every line of its message (a worker's
    error raised through Ray carries its traceback's lines after a first line naming only the actor; the run directory
    keeps no log to find them in), the type alone for a Ctrl-C."""
    from downpour.errors import RunError, stopped_by

    said = "ray::Worker.evaluate() (pid=7, ip=10.0.0.1)\n  File \"worker.py\", line 3\nValueError: a bad unit"
    assert stopped_by(RunError(said)) == f"RunError: {said}"
    assert stopped_by(KeyboardInterrupt()) == "KeyboardInterrupt"


def test_a_stop_by_sigterm_is_worded_alike_in_the_stop_record_and_the_shards_lost_event():
    """A SIGTERM (raised as Terminated) in data.json's ``stopped.by`` and the report's stop line reads as a cluster's
    ``shards-lost`` event words it, not as the exception's type and its "signal 15"."""
    from downpour.errors import stopped_by, stopped_entry
    from downpour.ps.cluster import _how
    from downpour.train.signals import Terminated

    stop = Terminated(f"signal {int(signal.SIGTERM)}")
    assert stopped_by(stop) == _how(stop) == "terminated (SIGTERM)"
    assert stopped_entry(3, 10, stop) == {"step": 3, "steps": 10, "by": "terminated (SIGTERM)"}
    assert _how(KeyboardInterrupt()) == "interrupted (Ctrl-C or SIGTERM)"
