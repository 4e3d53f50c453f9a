"""A resume of a run trained on a labelled image folder, after the folder changed (else a class folder added between
a run and its --resume renumbers the classes, the sorted folder names: 'cat' 0 -> 1, 'dog' 1 -> 2, and the resumed
steps train every image under another label, said only as 'the file list changed')."""
import json

import numpy as np
import pytest
from PIL import Image

from downpour.config import load_config
from downpour.errors import DataError
from downpour.runners import train
from downpour.train.rundir import RunDir

BASE = ["data.source=folder", "data.labels=true", "train.batch_size=8", "train.log_every=2", "train.tensorboard=false",
        "train.threads=1", "data.loader_workers=0", "data.prefetch=8"]
RUNNERS = {"local": [], "simulated": ["cluster.runner=simulated", "cluster.workers=2"],
           "sandblaster": ["cluster.runner=simulated", "cluster.algorithm=sandblaster", "cluster.workers=2",
                           "sandblaster.units=4"]}


def _class(root, name, grey, n=6):
    (root / name).mkdir(parents=True)
    rng = np.random.default_rng(grey)
    for i in range(n):
        Image.fromarray(np.clip(rng.normal(grey, 20, (8, 8)), 0, 255).astype(np.uint8)).save(root / name / f"{i}.png")


def _start(tmp_path, runner, pipeline):
    folder = tmp_path / "images"
    _class(folder, "cat", 50)
    _class(folder, "dog", 200)
    cfg = load_config("cnn-digits", [*BASE, *RUNNERS[runner], f"data.path={folder}", f"data.pipeline={pipeline}",
                                     "train.steps=4"])
    run = RunDir.create(tmp_path / "run", cfg)
    train(cfg, run)
    return folder, run


def _resume(run, steps):
    return train(load_config(str(run.path / "config.toml"), [f"train.steps={steps}"]), RunDir.open(run.path), resume=True)


@pytest.mark.parametrize("runner, pipeline", [(r, p) for r in sorted(RUNNERS) for p in ("memory", "stream")
                                              if (r, p) != ("sandblaster", "stream")])    # (it holds its data in memory)
def test_a_resume_after_a_class_folder_was_added_is_refused_naming_the_classes(tmp_path, runner, pipeline):
    folder, run = _start(tmp_path, runner, pipeline)
    assert json.loads((run.path / "preprocess.json").read_text())["classes"] == ["cat", "dog"]
    _class(folder, "bird", 120)                       # sorts first: cat and dog would become 1 and 2
    rows = (run.path / "metrics.jsonl").read_text()
    with pytest.raises(DataError, match=r"\['cat', 'dog'\] then, \['bird', 'cat', 'dog'\] now"):
        _resume(run, 8)
    assert (run.path / "metrics.jsonl").read_text() == rows      # refused before anything was written


def test_a_resume_over_more_images_of_the_same_classes_goes_on(tmp_path):
    folder, run = _start(tmp_path, "local", "stream")
    Image.fromarray(np.full((8, 8), 60, np.uint8)).save(folder / "cat" / "new.png")
    assert _resume(run, 8)["resumed_from"] == 4
    assert json.loads((run.path / "preprocess.json").read_text())["classes"] == ["cat", "dog"]


def test_a_dry_run_of_the_resume_says_the_same(tmp_path, capsys):
    """`downpour train --resume RUN --dry-run` says what the resume says, not 'config checked' where the resume then
    refuses."""
    from downpour.cli import main

    folder, run = _start(tmp_path, "local", "stream")
    assert main(["train", "--resume", str(run.path), "--steps", "8", "--dry-run"]) == 0
    _class(folder, "bird", 120)
    assert main(["train", "--resume", str(run.path), "--steps", "8", "--dry-run"]) == 2
    assert "the classes under data.path changed since it began" in capsys.readouterr().err


def test_the_classes_of_a_preprocess_json_edited_by_hand_are_not_read_and_the_dry_run_names_it(tmp_path, capsys):
    """check_classes reads preprocess.json's classes with its SHA-256: else classes edited there to match a folder
    added later pass the check (and a mismatch is told as the data's change, "then" being the edit)."""
    from downpour.cli import main
    from downpour.errors import CheckpointError
    from downpour.train.refit import check_classes

    folder, run = _start(tmp_path, "local", "stream")
    _class(folder, "bird", 120)
    where = run.path / "preprocess.json"
    where.write_text(json.dumps({**json.loads(where.read_text()), "classes": ["bird", "cat", "dog"]}))   # digest not
    with pytest.raises(CheckpointError, match=r"preprocess.json' .*json_sha256"):
        check_classes(["bird", "cat", "dog"], run.path)
    assert main(["train", "--resume", str(run.path), "--steps", "8", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "preprocess.json" in err and "json_sha256" in err and "classes under data.path" not in err


def test_a_resume_given_its_folder_in_other_words_goes_on_and_another_folder_is_refused(tmp_path, monkeypatch):
    """The command that began a run, given again with --resume, was refused: "cannot resume with data.path = 'images':
    the run was trained with '/.../images'" (config.toml records it absolute); a trailing slash alike."""
    from downpour.config import ConfigError
    from downpour.resume_checks import resume_config

    folder, run = _start(tmp_path, "local", "stream")
    monkeypatch.chdir(tmp_path)
    for given in ("images", "./images/", f"{folder}/"):
        assert resume_config(str(run.path), [f"data.path={given}", "train.steps=8"])[1].data.path == str(folder)
    _class(tmp_path / "other", "cat", 50)
    with pytest.raises(ConfigError, match="cannot resume with data.path = 'other': the run was trained with"):
        resume_config(str(run.path), ["data.path=other"])
