"""What plan, study, crossfit, analyze, models and the listings refuse, and say so: plan's numbers and the keys it
reads, a study's seed, the cross-fit's own keys, analyze's report flags, a stop in the analysis."""
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from downpour.cli import main
from downpour.config import ConfigError, load_config
from downpour.crossfit import fold_config
from downpour.config import ClusterConfig
from downpour.plan import Cluster
from downpour.plan.calibrate import DEFAULT_RATES
from downpour.plan.network import network_of
from downpour.plan.run_config import plan_config
from downpour.plan.partition import RULE_STATE, grid
from downpour.plan.predict import predict
from downpour.settings import choices_of
from downpour.studies.run import run_study

pytestmark = pytest.mark.usefixtures("one_thread")   # (its trainings run in this process)


@pytest.mark.parametrize("field, value, flag", [
    ("machines", 0, "--machines"), ("cores", 0, "--cores"), ("replicas", -3, "--replicas"),
    ("replicas", 0, "--replicas"), ("shards", 0, "--shards"), ("partitions", 0, "--partitions"),
    ("memory_gb", 0.0, "--memory"), ("bandwidth_gbit", -1.0, "--bandwidth"),
])
def test_plan_refuses_a_cluster_it_cannot_plan(field, value, flag):
    with pytest.raises(ConfigError, match=flag):
        Cluster(**{field: value})


def test_plan_refuses_a_set_it_does_not_read_and_names_the_set_in_errors():
    with pytest.raises(ConfigError, match="plan reads only model.KEY"):
        plan_config("paper", ["train.lr=0.1"])
    with pytest.raises(ConfigError, match=r"--set cluster.n_push=0: .*n_push must be >= 1"):
        plan_config("paper", ["cluster.n_push=0"])
    assert plan_config("paper", ["cluster.n_push=4"])[0].cluster.n_push == 4


def test_plan_names_what_the_user_typed_and_every_cost_key_it_reads(capsys):
    """Until 2026-12-04 --model paper's errors named "model 'cat-3stage'", which the user did not type, and a --set of
    four parts listed only objective.TERM as readable, not the objective.TERM.KEY it reads too."""
    assert main(["plan", "--model", "paper", "--set", "model.maps=[0,8,8]"]) == 2
    err = capsys.readouterr().err
    assert "--model paper --set 'model.maps=[0,8,8]': the paper's network: every value of model.maps" in err
    assert "cat-3stage" not in err
    assert main(["plan", "--model", "cat-3stage", "--set", "model.maps=[0,8,8]"]) == 2
    assert "model 'cat-3stage': every value" in capsys.readouterr().err          # typed: named as typed
    assert main(["plan", "--model", "cat-demo", "--set", "objective.pooled_l2.eps.x=1"]) == 2
    assert "--set objective.pooled_l2.eps.x=1: a plan reads only model.KEY, objective.TERM, objective.TERM.KEY," in \
        capsys.readouterr().err


@pytest.mark.parametrize("argv, head, message", [
    # the on-paper refusals network_of raised came out bare: "model.top = 'gru': ...", no flag named
    (["--set", 'model.top="gru"'], 'downpour plan --set \'model.top="gru"\' (no --model: the default, the paper\'s network): ',
     "model.top = 'gru': the plan counts"),
    (["--model", "paper", "--set", "model.kernels=[500,18,18]"], "downpour plan --model paper --set 'model.kernels=[500,18,18]': ",
     "model.kernels: stage 1's filter side 500"),
    (["--model", "cat-demo", "--set", "model.pools=[100,3,3]"], "downpour plan --model cat-demo --set 'model.pools=[100,3,3]': ",
     "model.maps = [8, 8] gives 2 stages but model.pools = [100, 3, 3] does not"),
    (["--config", "cat-demo", "--set", "model.top=gru"], "downpour plan --config cat-demo --set model.top=gru: ", "model.top"),
    # with no --model typed, errors said "--model paper"
    (["--set", "model.foo=1"], "downpour plan --set model.foo=1 (no --model: the default, the paper's network): ",
     "unknown key 'model.foo'"),
    (["--set", "train.lr=1"], "downpour plan --set train.lr=1 (no --model: the default, the paper's network): ",
     "a plan reads only"),
    (["--set", "objective.reconstruction=0"], "downpour plan --set objective.reconstruction=0 (no --model: the default, ",
     "objective.reconstruction = 0"),
])
def test_every_plan_refusal_is_one_line_naming_what_was_typed(capsys, argv, head, message):
    """Until 2026-12-04 the on-paper refusals (model.top, the stage lists' shapes) named no flag, and with no --model
    the others said "--model paper", which the user had not typed."""
    assert main(["plan", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("downpour: error: " + head) and message in err
    assert "--model paper" not in err or "--model" in argv
    # pasted into a shell, what it names is what was typed (the --set values came back bare: brackets, quotes)
    said = err.removeprefix("downpour: error: ").split(" (no --model")[0].split(": ")[0]
    assert shlex.split(said) == ["downpour", "plan", *argv]


@pytest.mark.parametrize("sets, message", [
    (["model.kernels=[18,18,190]"], "model.kernels: stage 3's filter side 190"),   # printed +163% of the paper
    (["model.maps=[8,8]"], r"model.maps = \[8, 8\] gives 2 stages"),            # dropped stage 3 silently
    (["model.lcn=4"], "model.lcn .* must be odd"),
])
def test_plan_refuses_a_network_the_model_would_refuse(sets, message):
    # (refused by plan_config since 2026-12-04, naming the --set; network_of alone refused it, naming none)
    with pytest.raises(ConfigError, match=rf"--model paper --set {re.escape(shlex.quote(sets[0]))}: {message}"):
        plan_config("paper", sets)


def test_plan_quotes_the_config_and_folder_it_repeats_in_a_command(tmp_path, capsys):
    """A --config or --out with a space came back bare in the command a refusal gives, two words once pasted."""
    from downpour.train.rundir import RunDir

    config = tmp_path / "my sync.toml"
    config.write_text('base = "ufldl-sae"\n[cluster]\nconsistency = "sync"\n')
    assert main(["plan", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"downpour plan --config {shlex.quote(str(config))}: cluster.consistency = 'sync'" in err
    suggested = re.search(r"with (downpour plan --check-simulated .*) --replicas N", err).group(1)
    assert shlex.split(suggested)[-1] == str(config)
    run = RunDir.create(tmp_path / "my run", load_config("ufldl-sae", ["cluster.runner=simulated"]))
    (run.path / "metrics.jsonl").write_text('{"step": 5, "loss": 1.0}\n')      # a run there
    argv = ["plan", "--check-simulated", "--replicas", "2", "--shards", "2", "--steps", "5", "--out", str(run.path)]
    assert main(argv) == 2
    assert f"`downpour plan --check-run {shlex.quote(str(run.path))}`" in capsys.readouterr().err


def test_plan_refuses_partitions_the_runner_cannot_cut_and_never_chooses_them():
    cfg, shape = plan_config("cat-demo", [])
    net = network_of(cfg, shape)
    with pytest.raises(ConfigError, match=r"--partitions 1024: .*cannot be cut into 1024 blocks"):
        predict(net, Cluster(machines=2000, partitions=1024), DEFAULT_RATES, 32)
    chosen = predict(net, Cluster(machines=2000), DEFAULT_RATES, 32)["cluster"]["partitions"]
    assert all(a <= b for a, b in zip(grid(chosen, net.stages[0]), (25, 25)))


def test_plan_counts_every_update_rule_the_server_has():
    # momentum is a server rule; the plan's table of optimiser state lacked it (KeyError)
    assert set(RULE_STATE) == set(choices_of(ClusterConfig, "rule"))
    cfg, shape = plan_config("cat-demo", [])
    assert predict(network_of(cfg, shape), Cluster(), DEFAULT_RATES, 32, rule="momentum")["rule"] == "momentum"


def test_a_study_refuses_a_seed_and_jobs_below_one(tmp_path):
    with pytest.raises(ConfigError, match="--set seed"):
        run_study("staleness", tmp_path / "a", quick=True, sets=["seed=5"])
    with pytest.raises(ConfigError, match="--jobs must be >= 1"):
        run_study("staleness", tmp_path / "b", quick=True, jobs=0)


@pytest.mark.parametrize("key", ["data.lfw_heldout=fold:1:3", "analysis.report=true"])
def test_the_crossfit_refuses_an_override_of_the_keys_it_sets(key):
    with pytest.raises(ConfigError, match="the cross-fit sets it"):
        fold_config("ufldl-sae", [key], 0, 5)


def test_analyze_takes_analysis_report_as_report(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr("downpour.analysis.run.analyze_run", lambda run, **o: calls.append(("analyze", o)))
    monkeypatch.setattr("downpour.cli_analyze.report_only", lambda path, **how: calls.append(("report", path)) or 0)
    monkeypatch.setattr("downpour.cli_analyze.analysis_overrides", lambda run, sets: {"report": True, "splits": 3})
    assert main(["analyze", str(tmp_path), "--set", "analysis.report=true"]) == 0
    assert calls == [("analyze", {"splits": 3}), ("report", tmp_path)]

    calls.clear()                                      # no report asked for, none there: none written
    monkeypatch.setattr("downpour.cli_analyze.analysis_overrides", lambda run, sets: {"splits": 3})
    assert main(["analyze", str(tmp_path)]) == 0 and calls == [("analyze", {"splits": 3})]
    calls.clear()                                      # one there, of the old analysis: rewritten, not left stale
    (tmp_path / "report.html").write_text("<p>the old analysis</p>")
    assert main(["analyze", str(tmp_path)]) == 0 and calls == [("analyze", {"splits": 3}), ("report", tmp_path)]
    calls.clear()                                      # one there, and report = false said: not written (it was)
    monkeypatch.setattr("downpour.cli_analyze.analysis_overrides", lambda run, sets: {"report": False, "splits": 3})
    assert main(["analyze", str(tmp_path), "--set", "analysis.report=false"]) == 0
    assert calls == [("analyze", {"splits": 3})]


def test_a_stream_key_on_files_that_may_stream_is_taken(tmp_path, capsys):
    """Where the files stream (data.pipeline = 'stream'). One image under 'auto' is held in memory, where the key
    was taken and never read: auto's choice is made once, in the config, and the key refused there."""
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "a.png")
    argv = ["train", "--config", "ufldl-sae", "--runner", "local", "--dry-run", "--set", "data.source=folder",
            "--set", f"data.path={tmp_path}", "--set", "data.prefetch=8"]
    assert main([*argv, "--set", "data.pipeline=stream"]) == 0
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--set data.prefetch: only streamed data read it" in err
    # what was given and what it resolved to (it said "data.pipeline = 'memory'" where 'auto' was given)
    assert "(data.pipeline = 'auto' chose 'memory': the data it holds fit in 1 GiB)" in err, err
    assert main([*argv, "--set", "data.pipeline=memory"]) == 2
    assert "(data.pipeline = 'memory'; 'auto' chooses it where" in capsys.readouterr().err


def test_analyze_refuses_report_and_report_false_together(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("downpour.cli_analyze.analysis_overrides", lambda run, sets: {"report": False})
    assert main(["analyze", str(tmp_path), "--report", "--set", "analysis.report=false"]) == 2
    assert "--report and --set analysis.report=false" in capsys.readouterr().err


def test_downpour_analyze_names_the_set_flag_of_a_setting_it_refuses(tmp_path, capsys):
    """`downpour train --set analysis.probes=["digitz"]` named its flag; `downpour analyze RUN` with the same --set
    said only "analysis.probes: 'digitz' is neither ...", as if the run's config.toml held it."""
    run = tmp_path / "run"
    assert main(["train", "--config", "tica-8x8", "--runner", "local", "--steps", "2",
                 "--set", "train.tensorboard=false", "--out", str(run)]) == 0
    capsys.readouterr()
    for item in ['analysis.probes=["digitz"]', f"analysis.poses={tmp_path / 'nowhere'}", "analysis.layer=poolde"]:
        assert main(["analyze", str(run), "--set", item]) == 2
        assert f"downpour: error: --set {item}: analysis." in capsys.readouterr().err
    assert not (run / "analysis.json").exists()


@pytest.mark.parametrize("item", ["model.tile=abc", "model.maps=[0,8]", "model.tilez=2"])
def test_models_footprint_names_the_set_flag_of_an_option_it_refuses(capsys, item):
    """`downpour models --footprint cat-demo --set model.tile=abc` said "model 'cat-demo': model.tile must be int",
    not naming its flag, where `downpour train` and `downpour plan` name it."""
    assert main(["models", "--footprint", "cat-demo", "--set", item]) == 2
    assert f"downpour: error: --set {item}: model 'cat-demo': " in capsys.readouterr().err


def test_study_list_refuses_a_studys_flags(capsys):
    """`downpour study list --seeds 0 --out afile --set bogus=1` listed the studies and ignored every flag."""
    assert main(["study", "list", "--seeds", "0", "--set", "bogus=1"]) == 2
    assert "--seeds, --set: `downpour study list` only lists the studies" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["run", "my run"])
def test_a_stop_in_the_analysis_says_how_to_finish_it(tmp_path, capsys, monkeypatch, name):
    """Ctrl-C after training, in the analysis, printed only "interrupted": nothing said the training was
    whole and `downpour analyze RUN --report` would finish the job. The folder is quoted as a shell reads it
    (until 2026-12-05 train's line gave "my run" bare, two arguments; `downpour analyze`'s own quoted it)."""
    import shlex

    from downpour.train.rundir import RunDir

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("downpour.analysis.run.analyze_run", stopped)
    out = tmp_path / name
    assert main(["train", "--config", "ufldl-sae", "--runner", "local", "--steps", "2", "--report",
                 "--set", "train.tensorboard=false", "--out", str(out)]) == 130
    assert f"`downpour analyze {shlex.quote(str(out))} --report` finishes it" in capsys.readouterr().err
    assert RunDir.open(out).finished(2)


@pytest.mark.parametrize("listing", [["models"], ["presets"], ["study", "list"]])
def test_a_listing_whose_reader_left_is_no_failure(listing):
    """`downpour study list | head -1` exited 141 under `set -o pipefail`, where models and presets exit 0."""
    proc = subprocess.Popen([sys.executable, "-m", "downpour.cli", *listing], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
    proc.stdout.close()                          # the reader leaves before the first line
    assert proc.wait(timeout=120) == 0, proc.stderr.read()


def test_every_key_of_the_plans_json_network_and_partition_is_in_its_docs(capsys):
    """network.on_paper, which says what partition.copy_bytes is, was in --json but not in docs/plan.md; the cluster's
    keys were not checked (cluster.replica_machines came with 2026-12-05's count of each replica's own process)."""
    assert main(["plan", "--model", "cat-demo", "--machines", "4", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    docs = (Path(__file__).resolve().parents[1] / "docs" / "plan.md").read_text()
    keys = [f"{part}.{key}" for part in ("network", "partition", "cluster") for key in plan[part]]
    assert "network.on_paper" in keys
    assert [k for k in keys if f"`{k}`" not in docs] == []
