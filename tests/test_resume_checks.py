"""downpour/resume_checks.py: what a resume refuses before it writes anything, from the run's own files."""
import json

import pytest

from downpour.config import ConfigError, load_config
from downpour.resume_checks import check_unedited
from downpour.train.config_record import config_record
from downpour.train.json_digest import digested
from downpour.train.rundir import CONFIG_KEY, RunDir


def _run_whose_checkpoint_trained(tmp_path, preset):
    """A ufldl-sae run folder whose checkpoints/local.json records ``preset``'s config, with a valid digest (as
    another run's checkpoint copied in is)."""
    run = RunDir.create(tmp_path / "run", load_config("ufldl-sae"))
    (run.path / "checkpoints").mkdir()
    meta = digested({"step": 20, CONFIG_KEY: config_record(load_config(preset))})
    (run.path / "checkpoints" / "local.json").write_text(json.dumps(meta))
    return RunDir(run.path)


def test_a_checkpoint_of_another_model_is_refused_naming_both_models_not_its_first_other_key(tmp_path):
    """An RBM's checkpoints/ copied into a ufldl-sae run: named as another model's checkpoint, not as the first key
    the two configs differ in (it said "has cluster.lr = 0.02, but ... was trained with 0.0: the file was edited
    since. Put 0.0 back"), which would send the user editing config.toml key by key toward the other run's."""
    run = _run_whose_checkpoint_trained(tmp_path, "rbm-digits")
    with pytest.raises(ConfigError) as caught:
        check_unedited(run)
    said = str(caught.value)
    assert "local.json' is a checkpoint of model 'rbm-digits'" in said and "trains 'ufldl-sae'" in said
    assert "cluster.lr" not in said and "edited since" not in said and caught.value.key == "model.name"


def test_a_checkpoint_of_the_same_model_still_names_the_edited_key(tmp_path):
    run = _run_whose_checkpoint_trained(tmp_path, "ufldl-sae")
    check_unedited(run)                         # the run's own record: nothing to say
    saved = (run.path / "config.toml").read_text()
    assert saved.startswith("seed = 0\n")
    (run.path / "config.toml").write_text("seed = 7\n" + saved.removeprefix("seed = 0\n"))
    with pytest.raises(ConfigError, match=r"has seed = 7, but the run's checkpoint .* was trained with 0: the file was "
                                          r"edited since"):
        check_unedited(RunDir(run.path))
