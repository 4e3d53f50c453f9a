"""What a Sandblaster run cannot do, refused before its run directory exists (downpour/sandblaster/checks.py,
preflight): other models and settings, more units or a larger batch than the patches drawn, a GPU; a batch larger
than the data once built said and run whole, and an older run's resumed with a warning."""
import logging

import pytest
from sandblaster_runs import _cfg

from downpour.config import ConfigError, load_config
from downpour.preflight import check_run_config
from downpour.runners import train
from downpour.sandblaster.checks import check_examples, check_sandblaster
from downpour.train.rundir import RunDir

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("override, named", [
    ("model.name=rbm-digits", "contrastive_divergence"),
    ("data.flip=true", "augmentation"),
    ("sandblaster.units=400", "sandblaster.units"),
    ("objective.contractive=0.1", "contractive.probes = 0"),     # a bare weight: the default probes = 1 (was let through)
    # the value asked for, and the way out (until 2026-12-06 it named neither the 4 nor Downpour)
    ("cluster.partitions=4", r"cluster.partitions = 4 splits .*or train with cluster.algorithm = 'downpour'"),
])
def test_what_lbfgs_cannot_run_is_refused_before_the_run_starts(override, named):
    with pytest.raises(ConfigError, match=named):
        cfg = check_run_config(_cfg(override))
        train(cfg, RunDir.create("/nonexistent/never", cfg))


def test_the_exact_contractive_penalty_is_taken():
    check_sandblaster(check_run_config(_cfg("model.name=rica-8x8", "objective.contractive={weight=0.1, probes=0}")))


def test_more_units_than_the_patches_drawn_is_refused_by_preflight_before_any_folder_exists(tmp_path):
    """It was refused once the data was built, after the run directory was written."""
    with pytest.raises(ConfigError, match="sandblaster.units = 400 is more than the 300 examples data.samples draws"):
        check_run_config(_cfg("sandblaster.units=400", "sandblaster.batch=0"))


def test_a_gpu_asked_for_is_refused_not_left_idle():
    # the replicas compute on CPU: on a GPU machine train.device = cuda was accepted and never used
    # (on this CPU-only machine preflight's own device check answers first)
    with pytest.raises(ConfigError, match="computes on CPU"):
        check_sandblaster(_cfg("train.device=cuda"))
    check_sandblaster(_cfg("train.device=auto"))


def test_a_batch_larger_than_the_patches_drawn_is_refused_not_run_as_the_whole_set():
    """sandblaster.batch = 400 of 300 patches was run as the whole set every iteration (deterministic, no sampling),
    with no word; it is refused before the run directory exists, naming both ways to say what was meant."""
    with pytest.raises(ConfigError, match=r"sandblaster.batch = 400 is more than the 300 examples data.samples draws: "
                                          r"set sandblaster.batch = 0 for all 300 in every iteration, or below 300"):
        check_run_config(_cfg("sandblaster.batch=400", "sandblaster.units=4"))
    check_run_config(_cfg("sandblaster.batch=300", "sandblaster.units=4"))   # all of them: the whole set, as asked


def test_a_batch_larger_than_the_data_known_once_built_is_said_and_run_whole(caplog):
    cfg = _cfg("sandblaster.batch=250", "sandblaster.units=4")
    with caplog.at_level(logging.WARNING, logger="downpour.sandblaster.checks"):
        check_examples(cfg, 200)          # a fold of 200, say, of the 300 patches
    assert "sandblaster.batch = 250 is more than the 200 examples of the data: every iteration uses all" in caplog.text
    caplog.clear()
    check_examples(cfg, 250)
    assert not caplog.text


def test_an_older_run_with_a_batch_above_its_patches_resumes_with_a_warning(tmp_path, caplog, monkeypatch):
    """Refused as a new run's, it would lose an older run: its resume can neither keep sandblaster.batch = 400 nor
    change it (a resume keeps the key). It ran whole, and goes on whole, said."""
    run = RunDir.create(tmp_path / "old", _cfg("sandblaster.batch=400", "sandblaster.units=4", "train.steps=1"))
    with monkeypatch.context() as m:        # started before 2026-12-06, when it was taken
        m.setattr("downpour.sandblaster.run.check_sandblaster", lambda cfg, resume=False: None)
        train(run.config, run)
    more = check_run_config(load_config(str(run.path / "config.toml"), ["train.steps=2"]), resume=True)
    with caplog.at_level(logging.WARNING, logger="downpour.sandblaster.checks"):
        assert train(more, RunDir.open(run.path), resume=True)["steps"] == 2
    assert "sandblaster.batch = 400 is more than the 300 examples of the data" in caplog.text
    assert "a resume keeps it, as the run started" in caplog.text
