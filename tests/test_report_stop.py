"""The report's line on where a stopped run ended (analysis/report_stop.py), first in its training section whichever
runner trained it, from the stop records the runners write: data.json's ``stopped`` (a local or simulated run, on
files or a built-in set), cluster.json's (every worker lost; a Ray run's lost shard), sandblaster.json's. Said once
where two records say one stop; a run that ended says nothing."""
from __future__ import annotations

import html
import json

import numpy as np
import pytest
from PIL import Image

import downpour.ps.recorder as recorder_module
import downpour.train.loop as loop_module
from downpour.analysis.report_training import training_section
from downpour.config import load_config
from downpour.errors import RunError
from downpour.runners import train
from downpour.train.rundir import RunDir

pytestmark = pytest.mark.usefixtures("one_thread")   # (the runs train in this process)

FILES = ["data.source=folder", "data.mode=crops", "data.size=8", "data.fit_sample=8", "data.normalize=patch",
         "data.whiten=none", "train.batch_size=8", "train.log_every=2", "train.tensorboard=false", "train.threads=1",
         "train.steps=4"]
BUILT_IN = ["data.samples=400", "train.batch_size=20", "train.log_every=2", "train.tensorboard=false",
            "train.threads=1", "train.steps=4"]


def _said(run) -> str:
    """The training section (no figures) as a reader sees its text."""
    return html.unescape(training_section(RunDir.open(run.path), {}))


def _folder(root):
    """12 random 16x16 PNGs."""
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / f"im{i:02d}.png")
    return root


def _trained_then_stopped(tmp_path, monkeypatch, sets, stop_in, name, files=True):
    """A run on files (``files``; else the built-in set) trained to its end (4 steps, a model), then resumed to 12
    steps and stopped by Ctrl-C at the 7th call of ``stop_in``'s ``name`` (its loop's step, the simulator's push): the
    report is the model's, at step 4."""
    data = [*FILES, f"data.path={_folder(tmp_path / 'imgs')}"] if files else BUILT_IN
    cfg = load_config("ufldl-sae", [*data, *sets])
    run = RunDir.create(tmp_path / "run", cfg)
    train(cfg, run)
    assert "Stopped" not in _said(run)                             # a run that ended says nothing
    real, calls = getattr(stop_in, name), []

    def ctrl_c_at_the_seventh(*args, **kwargs):
        calls.append(1)
        if len(calls) == 7:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(stop_in, name, ctrl_c_at_the_seventh)
    with pytest.raises(KeyboardInterrupt):
        train(load_config(str(run.path / "config.toml"), ["train.steps=12"]), RunDir.open(run.path), resume=True)
    monkeypatch.undo()
    return RunDir.open(run.path)


@pytest.mark.parametrize("files", [True, False], ids=["files", "built-in"])
@pytest.mark.parametrize("runner, stop_in, name, checkpoint", [
    ("local", loop_module, "train_step", "local.json"),
    ("simulated", recorder_module.Recorder, "on_push", "server.json")])
def test_a_run_stopped_past_its_model_says_where_first_in_its_training_section_and_its_resume_to_the_end_nothing(
        tmp_path, monkeypatch, runner, stop_in, name, checkpoint, files):
    """A resume stopped by Ctrl-C, its model the earlier go's: the local and the simulated runner alike, on files or
    a built-in set, from data.json's ``stopped`` (neither has node_ids, which the placement note needs, nor does a
    local run a summary file); the line before the curves and the staleness, where a reader looks first. The resume
    that ends rewrites data.json without it, or, on a built-in set, removes it."""
    run = _trained_then_stopped(tmp_path, monkeypatch, [f"cluster.runner={runner}"], stop_in, name, files)
    step = run.read_json(f"checkpoints/{checkpoint}")["step"]
    assert 4 < step < 12 and run.model_step() == 4
    said = _said(run)
    line = f"Stopped after step {step} of 12: KeyboardInterrupt."
    assert said.count("Stopped after") == 1 and line in said
    assert said.split("</h2>")[1].lstrip().startswith(f'<p class="note">{line}</p>')     # the section's first words
    train(load_config(str(run.path / "config.toml"), ["train.steps=12"]), run, resume=True)
    assert "Stopped" not in _said(run) and (run.path / "data.json").exists() == files


def test_a_simulated_run_whose_every_worker_was_lost_says_it_stopped_though_it_read_no_files(tmp_path):
    """Every worker lost: the model is saved at the step reached and cluster.json records the stop as data.json does
    (a run on a built-in set writes one to say it), said once, beside the fault that caused it."""
    cfg = load_config("ufldl-sae", ["cluster.runner=simulated", "cluster.workers=1", "cluster.shards=1",
                                    'cluster.faults=["worker 0 at 10"]', "train.steps=20", "train.tensorboard=false",
                                    "train.threads=1", "data.samples=400", "train.batch_size=20"])
    run = RunDir.create(tmp_path / "run", cfg)
    with pytest.raises(RunError, match="every worker was lost"):
        train(cfg, run)
    assert run.read_json("data.json")["stopped"] == run.read_json("cluster.json")["stopped"]
    assert run.model_step() == 10
    said = _said(run)
    assert said.count("Stopped after") == 1 and "Stopped after step 10 of 20: every worker was lost." in said
    assert said.index("Stopped after") < said.index("Faults: worker 0 lost at step 10")


def test_a_ray_run_stopped_by_a_lost_shard_says_it_once_the_summarys_words(tmp_path):
    """A Ray run's lost shard writes cluster.json's ``stopped`` and data.json's alike (one stop, two records): said
    once, in cluster.json's words, and no more in the placement note; of two stops the later one (a cluster.json kept
    from a stop that a resume's Ctrl-C went past)."""
    cfg = load_config("ufldl-sae", ['cluster.runner="ray"', "cluster.workers=2", "cluster.shards=2"])
    run = RunDir.create(tmp_path / "r", cfg)
    a, b = "a" * 56, "b" * 56
    lost = {"event": "shards-lost", "step": 33, "n": 1, "nodes": 2, "node_ids": [a, b],
            "node_addresses": ["10.0.0.1", "10.0.0.2"], "placement": {"shards": [0, 1], "workers": [1, 0]},
            "lost_shards": [1]}
    by = "shard 1 lost at step 33 on node bbbbbbbb at 10.0.0.2 (ActorDiedError)\n  and a line more"
    run.write_json("cluster.json", {"runner": "ray", "checkpoint": 30, "shard_restarts": 0, "shard_events": [lost],
                                    "stopped": {"step": 33, "steps": 60, "by": by}})
    run.write_json("data.json", {"source": "folder", "stopped": {"step": 33, "steps": 60, "by": f"RunError: {by}"}})
    said = _said(run)
    assert said.count("Stopped after") == 1
    assert "Stopped after step 33 of 60: shard 1 lost at step 33 on node bbbbbbbb at 10.0.0.2 (ActorDiedError)." in said
    assert "stop at step 33: shard 0 on node aaaaaaaa" in said          # (the placement note, without the stop)
    run.write_json("data.json", {"source": "folder", "stopped": {"step": 41, "steps": 60, "by": "KeyboardInterrupt"}})
    said = _said(run)
    assert said.count("Stopped after") == 1 and "Stopped after step 41 of 60: KeyboardInterrupt." in said


def test_a_stopped_sandblaster_run_says_its_l_bfgs_iteration_and_a_record_without_by_says_nothing(tmp_path):
    """sandblaster.json's ``stopped`` is said in L-BFGS iterations, on any runner (its simulated run has no nodes);
    a ``stopped`` that says by nothing, or a file that is not JSON, is no stop to report."""
    cfg = load_config("tica-8x8", ['model.name="rica-8x8"', 'cluster.algorithm="sandblaster"',
                                   'cluster.runner="simulated"'])
    run = RunDir.create(tmp_path / "r", cfg)
    run.write_json("sandblaster.json", {"steps": 3, "stopped": {"step": 3, "steps": 10, "by": "KeyboardInterrupt"}})
    assert "Stopped after L-BFGS iteration 3 of 10: KeyboardInterrupt." in _said(run)
    run.write_json("sandblaster.json", {"steps": 3, "stopped": {"step": 3, "steps": 10, "by": ""}})
    (run.path / "data.json").write_text("{not json")
    assert "Stopped" not in _said(run)
    assert json.loads((run.path / "sandblaster.json").read_text())["stopped"]["step"] == 3
