"""downpour.runners.train from Python (docs/parameter-server.md, "Python"): what it is given is checked first."""
import pytest

from downpour.config import load_config
from downpour.runners import train
from downpour.train.rundir import RunDir


def test_a_path_for_the_run_is_refused_with_how_to_make_one(tmp_path):
    # else it fails inside the runner with "'str' object has no attribute 'unsaved_at_end'"
    cfg = load_config("ufldl-sae", [("train.steps", 2)])
    with pytest.raises(TypeError, match=r"run must be a RunDir.*RunDir\.create\(path, cfg\).*got '.*x' \(str\)"):
        train(cfg, str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()


def test_a_preset_name_for_the_config_is_refused_with_how_to_load_it(tmp_path):
    # else it fails in resolve with "'str' object has no attribute 'model'"
    cfg = load_config("ufldl-sae", [("train.steps", 2)])
    with pytest.raises(TypeError, match=r"cfg must be a RunConfig.*load_config\('ufldl-sae'\).*got 'ufldl-sae' \(str\)"):
        train("ufldl-sae", RunDir.create(tmp_path / "y", cfg))


def test_a_run_folder_made_for_a_preset_name_is_refused_before_the_folder_is_made(tmp_path):
    # it made the folder, then failed with "'str' object has no attribute 'model'"
    with pytest.raises(TypeError, match=r"RunDir\.create: cfg must be a RunConfig.*load_config\('ufldl-sae'\)"):
        RunDir.create(tmp_path / "z", "ufldl-sae")
    assert not (tmp_path / "z").exists()


def test_a_runner_is_its_entry_in_runners_and_a_cluster_runner_its_algorithms(monkeypatch):
    # docs/architecture.md: "a new runner is one entry there and one choice"; every runner but local ran the
    # cluster algorithm, so a new runner's own function was never called
    import json
    from types import SimpleNamespace

    from downpour import runners

    def cfg(runner, algorithm="downpour"):
        return SimpleNamespace(cluster=SimpleNamespace(runner=runner, algorithm=algorithm))

    monkeypatch.setitem(runners.RUNNERS, "new", "json:dumps")
    assert runners.runner(cfg("new")) is json.dumps
    assert runners.runner(cfg("local")).__name__ == "run_local"
    for runner in ("simulated", "ray"):
        assert runners.runner(cfg(runner)).__name__ == "run_cluster"
        assert runners.runner(cfg(runner, "sandblaster")).__name__ == "run_sandblaster"


@pytest.fixture
def mine(monkeypatch):
    """A throwaway runner that trains in this process: its RUNNERS entry and its name among cluster.runner's choices."""
    from dataclasses import fields
    from types import MappingProxyType

    from downpour import runners
    from downpour.config import ClusterConfig

    monkeypatch.setitem(runners.RUNNERS, "mine", "json:dumps")
    field = next(f for f in fields(ClusterConfig) if f.name == "runner")
    monkeypatch.setattr(field, "metadata", MappingProxyType({**field.metadata, "choices": (*field.metadata["choices"], "mine")}))
    return "mine"


@pytest.mark.parametrize("argv, named", [
    (["--workers", "3"], "--workers only applies to the simulated and ray runners, and this run's runner is 'mine'"),
    (["--set", "cluster.shards=3"], "--set cluster.shards: the mine runner reads no [cluster] setting but the runner"),
])
def test_a_new_in_process_runner_is_refused_cluster_flags_as_local_is(mine, capsys, argv, named):
    # docs/architecture.md, "Adding things": a check reading "not 'local'" as a cluster would have a new runner of
    # RUNNERS take --workers 3 and a [cluster] key without a word
    from downpour.cli import main

    assert main(["train", "--dry-run", "--config", "ufldl-sae", "--runner", mine, *argv]) == 2
    assert named in capsys.readouterr().err


def test_a_new_in_process_runner_gets_the_local_runners_checks_not_a_clusters(mine):
    from downpour.cluster_checks import check_cluster
    from downpour.config import ConfigError

    with pytest.raises(ConfigError, match="cluster.algorithm = 'sandblaster' needs a cluster runner: set cluster.runner "
                                          "to simulated or ray"):
        check_cluster(load_config("ufldl-sae", [("cluster.runner", mine), ("cluster.algorithm", "sandblaster")]))
    check_cluster(load_config("ufldl-sae", [("cluster.runner", mine), ("train.checkpoint_every", 5)]))   # its key
