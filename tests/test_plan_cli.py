"""downpour plan's command line: its help, table and JSON, the flags and files it reads, and the configs it refuses
or says it does not read."""
import json

import pytest

from downpour.cli import main
from downpour.config import load_config
from downpour.plan import Cluster, check_simulated, plan_config, plan_for

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_plans_help_names_every_key_a_plan_reads(capsys):
    """train.schedule joined the keys a plan reads on 2026-12-04; --help still listed the others only."""
    from downpour.plan.run_config import PLAN_READS

    with pytest.raises(SystemExit):
        main(["plan", "--help"])
    said = " ".join(capsys.readouterr().out.split())
    assert [key for key in sorted(PLAN_READS) if key not in said] == []


def test_the_plans_help_names_what_the_simulated_check_trains_by_default(capsys):
    """--help named the check's default workers, shards and steps, not the preset it trains (2026-12-06)."""
    import inspect

    from downpour.plan.check import CHECK_RECIPE

    with pytest.raises(SystemExit):
        main(["plan", "--help"])
    said = " ".join(capsys.readouterr().out.split())
    preset = inspect.signature(check_simulated).parameters["config"].default
    assert f"(default {preset}, at batch {dict(CHECK_RECIPE)['train.batch_size']})" in said


def test_the_cli_prints_the_table_and_json(capsys):
    assert main(["plan"]) == 0
    out = capsys.readouterr().out
    assert "stage1" in out and "stage3" in out and "1.22G connections" in out and "assumptions:" in out
    assert main(["plan", "--model", "ufldl-sae", "--machines", "4", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["network"]["params"] == 64 * 25 * 2 + 25 + 64 and plan["cluster"]["machines_used"] <= 4


@pytest.mark.parametrize("setting, flag", [
    ("cluster.workers=1e3", "--replicas 1000"), ("cluster.shards=4.0", "--shards 4"),
    ("cluster.partitions=1.5", "--partitions N (a whole number; 1.5 is not one)")])
def test_a_plan_given_its_layout_by_set_names_the_flag_with_a_whole_number(capsys, setting, flag):
    """TOML reads 1e3 as 1000.0: the advice was "give --replicas 1000.0 instead", which the flag refuses."""
    assert main(["plan", "--set", setting]) == 2
    assert f"the plan lays out the cluster from its flags: give {flag} instead" in capsys.readouterr().err


def test_a_preset_is_planned_as_it_trains_not_at_its_models_registry_defaults(capsys):
    """`--model cat-demo` plans the registry's untied cat-demo (422 k parameters, batch 64); the preset trains
    tile 2 at batch 32 (8.45 k), and the plan had no way to plan it."""
    assert main(["plan", "--config", "cat-demo", "--machines", "4", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["batch"] == 32 and plan["network"]["params"] == 8448 and plan["network"]["name"].startswith("cat-demo (")
    assert main(["plan", "--model", "cat-demo", "--machines", "4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["network"]["params"] == 422400
    assert main(["plan", "--model", "cat-demo", "--config", "main"]) == 2
    assert "--model and --config: one names the network to plan" in capsys.readouterr().err


@pytest.mark.parametrize("table, named", [
    ('[cluster]\nconsistency = "sync"\n', "cluster.consistency = 'sync': the plan models asynchronous replicas"),
    ('[cluster]\nconsistency = "bounded:2"\n', "cluster.consistency = 'bounded:2': the plan models asynchronous"),
    ('[cluster]\nalgorithm = "sandblaster"\n', "cluster.algorithm = 'sandblaster': the plan models Downpour SGD only"),
])
def test_a_config_whose_cluster_the_plan_does_not_model_is_refused(tmp_path, capsys, table, named):
    """A sync config was planned with the async formula (staleness 18.1; a sync run's is 0), as was a Sandblaster one;
    --set cluster.consistency is refused, and the file's key now is too."""
    path = tmp_path / "gated.toml"
    path.write_text('base = "main"\n' + table)
    assert main(["plan", "--config", str(path), "--machines", "4", "--cores", "2", "--memory", "8"]) == 2
    err = capsys.readouterr().err
    assert f"downpour plan --config {path}: {named}" in err


def test_a_configs_layout_the_plan_does_not_read_is_said(tmp_path, capsys, caplog):
    """cluster.workers = 8 and a delay in the file were dropped without a word: the plan chooses its own layout."""
    path = tmp_path / "eight.toml"
    path.write_text('base = "cat-demo"\n[cluster]\nrunner = "simulated"\nworkers = 8\ndelay = "constant:2"\n')
    with caplog.at_level("WARNING", logger="downpour.plan.run_config"):
        assert main(["plan", "--config", str(path), "--machines", "20"]) == 0
    assert "the file's cluster.workers = 8 (--replicas sets it), cluster.delay = 'constant:2' are not read" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="downpour.plan.run_config"):
        assert main(["plan", "--config", "cat-demo", "--machines", "20"]) == 0      # nothing of the kind set
    assert "not read" not in caplog.text


def test_a_base_less_files_default_the_network_refuses_is_said_as_train_says_it(tmp_path, capsys):
    """A file with no base = "PRESET" plans cat-demo on 8x8 data, whose pool the model refuses: train said why (the
    defaults) and what to add; the plan only said "stage 1's pool 3 is larger than its filter output" (2026-12-06)."""
    path = tmp_path / "bare.toml"
    path.write_text("[train]\nbatch_size = 64\n")
    assert main(["plan", "--config", str(path), "--machines", "8"]) == 2
    err = capsys.readouterr().err
    assert "stage 1's pool 3 is larger than its filter output 1x1" in err
    assert f"(model.pools is a default: {path} has no base = \"PRESET\"" in err and 'base = \"cat-demo\"' in err
    path.write_text('base = "cat-demo"\n[model]\npools = [30, 3]\n')     # a key the file sets: no hint, no repeat
    assert main(["plan", "--config", str(path), "--machines", "8"]) == 2
    err = capsys.readouterr().err
    assert f"downpour plan --config {path}: model.pools: stage 1's pool 30" in err and "is a default" not in err


def test_a_run_folder_given_as_the_plans_config_names_its_config_as_a_line_that_runs(tmp_path, capsys):
    """`downpour plan --config RUN` said "(a run folder: --resume it, or start from its config with --config
    RUN/config.toml)": plan has no --resume, and RUN was not the folder typed (2026-12-06)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.toml").write_text('base = "cat-demo"\n')
    assert main(["plan", "--config", str(run), "--machines", "4"]) == 2
    err = capsys.readouterr().err
    assert f"a folder, not a TOML file or a preset (a run folder: its config is --config {run}/config.toml;" in err
    assert "--resume it" not in err and f"`downpour train --resume {run}`" in err
    assert main(["plan", "--config", f"{run}/config.toml", "--machines", "4"]) == 0     # the line it names runs


def test_the_paper_plans_assumptions_say_what_a_set_changed(capsys):
    """Its fixed lines ("18x18 untied fields, 8 maps per position", "filter stride 1", "mini-batch of 100") and the
    header "paper (Le et al. 2012)" were printed whatever --set changed, in --json too."""
    sets = ["--set", "model.strides=[2,2,2]", "--set", "model.maps=[16,16,16]", "--set", "train.batch_size=7",
            "--set", 'model.decoder="tied"', "--set", "model.tile=4"]
    assert main(["plan", *sets, "--json"]) == 0
    network = json.loads(capsys.readouterr().out)["network"]
    lines = "\n".join(network["assumptions"])
    for said in ("tiled 4x4, 16 maps per position (set by --set model.tile, model.maps; the paper: untied; 8 maps",
                 "filter stride 2 and pooling step 1 (set by --set model.strides;", ": filter stride 1)",
                 "the decoder: tied, W2 = W1ᵀ", "mini-batch of 7 examples per step (set by --set train.batch_size"):
        assert said in lines
    assert "8 maps per position (the paper)" not in lines and "filter stride 1 and" not in lines
    assert network["name"] == "paper (Le et al. 2012) with --set model.maps, model.strides, model.tile, model.decoder"
    assert main(["plan"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("paper (Le et al. 2012): ") and "set by" not in out
    assert "18x18 fields, untied, 8 maps per position (the paper)" in out and "mini-batch of 100 examples" in out


def test_a_plan_of_a_config_reads_the_file_once(monkeypatch):
    """plan_for read its --config twice: plan_config for the model and the cluster, then again for the data a greedy
    step's frozen cache counts on. plan_config's config carries the file's data (and its steps as --set gave them)."""
    import downpour.plan.run_config as run_config

    reads = []

    def counted(*args, **kwargs):
        reads.append(args)
        return load_config(*args, **kwargs)
    monkeypatch.setattr(run_config, "load_config", counted)
    cfg, _ = plan_config(None, ("train.steps=100",), "cat-demo")
    assert reads == [("cat-demo",)] and cfg.data == load_config("cat-demo").data and cfg.train.steps == 100
    plan = plan_for(None, ("train.steps=100",), Cluster(machines=4, cores=1), config="cat-demo")
    assert reads == [("cat-demo",)] * 2 and plan["network"]["frozen_runs"]
