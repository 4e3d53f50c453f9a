"""What the command refuses, and says so, instead of doing something else without a word: config
sources (a folder, a file's ``base``), dotted cost-term overrides, flags that would be ignored, plan's
numbers, a study's seed, the cross-fit's own keys; and SIGTERM, which stops a run as Ctrl-C does."""
import json
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from downpour.cli import main
from downpour.config import ConfigError, load_config
from downpour.crossfit import fold_config
from downpour.models.registry import resolve
from downpour.config import ClusterConfig
from downpour.plan import Cluster
from downpour.plan.calibrate import DEFAULT_RATES
from downpour.plan.network import network_of, plan_config
from downpour.plan.partition import RULE_STATE, grid
from downpour.plan.predict import predict
from downpour.settings import choices_of
from downpour.studies.run import run_study

pytestmark = pytest.mark.usefixtures("one_thread")   # (its trainings run in this process)

TINY = ["--config", "ufldl-sae", "--steps", "20", "--set", "data.samples=500", "--set", "train.tensorboard=false",
        "--runner", "local", "--no-report"]
SANDBLASTER = ["--set", "cluster.algorithm=sandblaster"]


def test_a_folder_named_like_a_preset_does_not_hide_the_preset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ufldl-sae").mkdir()
    assert load_config("ufldl-sae").model.name == "ufldl-sae"
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.toml").write_text("")
    with pytest.raises(ConfigError, match=r"'run': a folder.*--config run/config.toml; `downpour train --resume run`"):
        load_config("run")


def test_a_files_base_is_read_from_its_own_folder_and_a_bad_base_names_the_file(tmp_path, monkeypatch):
    (tmp_path / "cfgs").mkdir()
    (tmp_path / "cfgs" / "parent.toml").write_text('base = "ufldl-sae"\n[train]\nlr = 0.3\n')
    (tmp_path / "cfgs" / "child.toml").write_text('base = "parent.toml"\n[train]\nsteps = 7\n')
    monkeypatch.chdir(tmp_path)                                     # not the files' folder
    cfg = load_config(str(tmp_path / "cfgs" / "child.toml"))
    assert (cfg.model.name, cfg.train.lr, cfg.train.steps) == ("ufldl-sae", 0.3, 7)
    (tmp_path / "int.toml").write_text("base = 3\n")
    with pytest.raises(ConfigError, match=r"int.toml: base must be a preset name or a TOML path, got 3"):
        load_config(str(tmp_path / "int.toml"))
    (tmp_path / "gone.toml").write_text('base = "nosuch"\n')
    with pytest.raises(ConfigError, match=r"gone.toml: base 'nosuch': no such preset or file"):
        load_config(str(tmp_path / "gone.toml"))


def test_a_files_base_path_is_never_read_from_the_working_directory(tmp_path, monkeypatch):
    """A base missing from the file's folder was read from wherever the command ran."""
    (tmp_path / "cfgs").mkdir()
    (tmp_path / "cfgs" / "child.toml").write_text('base = "parent.toml"\n[train]\nsteps = 7\n')
    (tmp_path / "parent.toml").write_text('base = "ufldl-sae"\n')
    monkeypatch.chdir(tmp_path)                                     # holds a parent.toml; the file's folder does not
    with pytest.raises(ConfigError, match=r"child.toml: base .*cfgs/parent.toml.*: no such file"):
        load_config(str(tmp_path / "cfgs" / "child.toml"))


def test_a_dotted_override_of_a_cost_term_keeps_the_terms_other_keys():
    base = load_config("cat-demo").objective["pooled_l2"]
    cfg = load_config("cat-demo", ["objective.pooled_l2.eps=0.5"])
    assert cfg.objective["pooled_l2"] == {**base, "eps": 0.5} and base["weight"] == 0.2
    # a plain number is the term's weight: the term's eps stays (it fell to the class default, 1e-4, and
    # config.toml lost it)
    plain = resolve(load_config("cat-demo", ["objective.pooled_l2=0.3"]))
    assert plain.objective["pooled_l2"] == {**base, "weight": 0.3}
    assert resolve(load_config("tica-8x8", ["objective.pooled_l2=0.3"])).objective["pooled_l2"] == {"weight": 0.3, "eps": 1e-4}


@pytest.mark.parametrize("argv, named", [
    (["--resume", "RUN", "--config", "cat-demo"], "--config with --resume"),
    (["--config", "ufldl-sae", "--runner", "local", "--address", "10.0.0.1:6379"], "--address only applies to the ray"),
    # it suggested --runner ray too, which then refused --delay
    (["--config", "ufldl-sae", "--runner", "local", "--delay", "constant:2"],
     "--delay only applies to the simulated runner, and this run's runner is 'local'; add --runner simulated\n"),
    (["--config", "ufldl-sae", "--runner", "local", "--workers", "2", "--shards", "2"],
     "--workers, --shards only apply to the simulated and ray runners, and this run's runner is 'local'; add --runner simulated or --runner ray"),
])
def test_a_flag_that_would_be_ignored_is_refused(tmp_path, capsys, argv, named):
    argv = [str(tmp_path / "run") if a == "RUN" else a for a in argv]
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.toml").write_text('base = "ufldl-sae"\n')
    assert main(["train", "--dry-run", *argv]) == 2
    assert named in capsys.readouterr().err


@pytest.mark.parametrize("argv, named", [
    (["train", "--resume", "", "--dry-run"], "--resume is empty"),      # was: a new main job, rc 0
    (["train", "--config", "", "--dry-run"], "--config is empty"),
    (["train", "--config", "ufldl-sae", "--out", "", "--dry-run"], "--out is empty"),
    (["crossfit", "--config", "", "--out", "x"], "--config is empty"),
    (["study", "costs", "--out", ""], "--out is empty"),
    (["analyze", ""], "RUN is empty"),
    (["plan", "--check-run", ""], "--check-run is empty"),
])
def test_a_path_given_empty_is_refused_not_read_as_left_out(tmp_path, monkeypatch, capsys, argv, named):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert named in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


TAKE_CONFIG = [["train", "--dry-run"], ["crossfit", "--out", "x"], ["plan"], ["plan", "--check-simulated"],
               ["models", "--footprint"]]
BAD_CONFIG = [(["--config", "nope"], "--config nope: no such preset or file; presets: cat-demo,"),
              (["--config", "nope.toml"], "--config nope.toml: no such file")]


@pytest.mark.parametrize("argv, named", [
    *[([*command, "--set", "model.maps"], "--set model.maps: expected KEY=VALUE")
      for command in [*TAKE_CONFIG, ["study", "costs"], ["models", "--footprint", "cat"]]],
    *[([*command, *flags], named) for command in TAKE_CONFIG for flags, named in BAD_CONFIG],
])
def test_a_bad_set_or_config_is_one_line_naming_the_flag_as_typed(tmp_path, monkeypatch, capsys, argv, named):
    """They said "override 'model.maps' must look like section.key=value" and "no preset or file named 'nope'",
    naming neither flag; each command that takes the flag now names it, before any work."""
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"downpour: error: {named}") and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", TAKE_CONFIG)
@pytest.mark.parametrize("text, named, where", [(b"seed = 1\n[train\nlr = 0.1\n", "invalid TOML: ", "(at line 2, column 7)"),
                                                (b"seed = 1 # caf\xe9\n", "not UTF-8 text", "(byte 14: b'\\xe9')")],
                         ids=["syntax", "latin-1"])
def test_a_config_file_that_is_not_toml_is_one_line_naming_the_flag(tmp_path, monkeypatch, capsys, command, text, named,
                                                                     where):
    """A syntax error said "bad.toml: invalid TOML: ...", naming the file but not the flag every other --config
    error starts with; now "--config bad.toml: invalid TOML: ... (at line 2, column 7)", before any work."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.toml").write_bytes(text)
    assert main([*command, "--config", "bad.toml"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"downpour: error: --config bad.toml: {named}") and err.count("\n") == 1
    assert where in err
    assert [p.name for p in tmp_path.iterdir()] == ["bad.toml"]


def test_resume_on_a_file_says_it_is_a_file(tmp_path, capsys):
    (tmp_path / "x.txt").write_text("")
    assert main(["train", "--resume", str(tmp_path / "x.txt")]) == 2
    assert "is a file, not a run directory" in capsys.readouterr().err


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
    monkeypatch.setattr("downpour.cli_analyze.report_only", lambda path: calls.append(("report", path)) or 0)
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


def test_sigterm_stops_a_run_with_its_checkpoint_so_it_resumes(tmp_path):
    """The process is killed as `timeout` or a batch scheduler kills it; the run's steps so far are kept."""
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "downpour.cli", "train", *TINY, "--steps", "1000000", "--set",
            "analysis.no_faces_twin=false", "--set", "train.log_every=10", "--out", str(out)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        while not (out / "metrics.jsonl").is_file() or not (out / "metrics.jsonl").read_text().strip():
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)            # (a loop without a pause held one of the 2 cores the run starts on)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "checkpoint saved" in err and "terminated" in err
    step = json.loads((out / "checkpoints" / "local.json").read_text())["step"]
    assert step >= 10


def test_a_run_whose_output_reader_left_fails_and_says_how_to_start_again(tmp_path, capsys):
    # `downpour train 2>&1 | head -0`: it stopped at its first line and exited 0, a run folder with
    # only config.toml behind it, and --resume then named a missing checkpoint file
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "downpour.cli", "train", *TINY, "--set", "analysis.no_faces_twin=false", "--out", str(out)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    proc.stdout.close()                          # the reader leaves before the first line
    assert proc.wait(timeout=300) == 128 + signal.SIGPIPE
    assert main(["train", "--resume", str(out)]) == 2
    assert "never started training" in capsys.readouterr().err
    assert main(["train", "--config", str(out / "config.toml"), "--out", str(out)]) == 0   # takes the folder over


@pytest.mark.parametrize("source, make, named", [
    ("folder", lambda p: (p.mkdir(), (p / "notes.txt").write_text("x")), "holds no image files"),
    ("array", lambda p: p.write_text("not an array"), "does not start like one"),
    ("video", lambda p: (p.mkdir(), (p / "a.png").write_bytes(b"")), "holds no video files"),
])
def test_a_dry_run_looks_at_the_files_a_file_source_reads(tmp_path, capsys, source, make, named):
    _refused_before_the_run(tmp_path, capsys, source, make, named)


def _image(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(path)


# each passed --dry-run and failed once the run had written its folder (the doc's "a typo leaves nothing behind")
@pytest.mark.parametrize("source, suffix, make, named, extra", [
    ("array", ".npz", lambda p: np.savez(p, x=np.zeros((4, 8, 8)), z=np.ones(3)), "unexpected keys ['z']", []),
    ("array", ".npz", lambda p: np.savez(p, y=np.zeros(4)), "no array named 'x'", []),
    # refused at the first batch (a traceback: "Target -1 is out of bounds"), or at the load, after the run folder
    ("array", ".npz", lambda p: np.savez(p, x=np.zeros((4, 8, 8)), y=np.array([0, -1, 1, 0])), "y[1] = -1: labels are",
     ["--config", "cnn-digits"]),
    ("array", ".npz", lambda p: np.savez(p, x=np.zeros((4, 8, 8)), y=np.array([0, 1, 2.5, 0])),
     "y has dtype float64 (y[2] = 2.5); labels must be integers", []),
    ("array", ".npy", lambda p: np.save(p, np.array([{"a": 1}] * 4, dtype=object), allow_pickle=True),
     "holds Python objects", []),
    ("array", ".npy", lambda p: np.save(p, np.zeros((4, 5, 8, 8))), "5 channels, expected 1 or 3", []),
    ("folder", "", lambda p: (_image(p / "top.png"), _image(p / "a" / "x.png")), "1 image sits at its top level",
     ["--set", "data.labels=true"]),
])
def test_a_dry_run_reads_an_arrays_header_and_a_labelled_folders_top(tmp_path, capsys, source, suffix, make, named, extra):
    _refused_before_the_run(tmp_path, capsys, source, make, named, suffix, extra)


def _refused_before_the_run(tmp_path, capsys, source, make, named, suffix=None, extra=()):
    path = tmp_path / ("data" + (suffix if suffix is not None else ".npy" if source == "array" else ""))
    make(path)
    argv = ["train", "--config", "ufldl-sae", "--runner", "local", "--set", f"data.source={source}",
            "--set", f"data.path={path}", *extra, "--out", str(tmp_path / "run")]
    assert main([*argv, "--dry-run"]) == 2 and named in capsys.readouterr().err
    assert main(argv) == 2 and not (tmp_path / "run").exists()      # refused before the run directory exists


@pytest.mark.parametrize("argv, named", [
    (["--runner", "local", "--set", "cluster.rule=sgd", "--set", "cluster.compensation=dc-asgd"],
     "--set cluster.rule, cluster.compensation: the local runner reads no [cluster] setting"),
    (["--runner", "simulated", "--set", "train.optimizer=sgd"], "only the local runner reads it"),
    # both were accepted and did nothing: adam trained the same bits with momentum 0 and 0.9
    (["--runner", "local", "--set", "train.optimizer=adam", "--set", "train.momentum=0.9"],
     "--set train.momentum: only train.optimizer = 'sgd' reads it"),
    # accepted and read by nothing: the server's rule, compensation and noise were as without them
    (["--runner", "simulated", "--set", "cluster.momentum=0.5"],
     "--set cluster.momentum: only cluster.rule = 'momentum' reads it, and this run's cluster.rule is 'adagrad'"),
    (["--runner", "simulated", "--set", "cluster.dc_lambda=0.1"],
     "--set cluster.dc_lambda: only cluster.compensation = 'dc-asgd' reads it"),
    # [data] keys the data never read with these settings: bit for bit the same samples
    (["--runner", "local", "--set", "data.whiten=none", "--set", "data.zca_eps=0.5"],
     "--set data.zca_eps: only data.whiten = 'zca' reads it, and this run's data.whiten is 'none'"),
    (["--runner", "local", "--set", "data.mode=crops", "--set", "data.samples=50"],
     "--set data.samples: only data.mode = 'patches' (or data.source = 'gaussian') reads it"),
    (["--runner", "local", "--set", "data.tile=4"], "--set data.tile: only data.mode = 'crops' reads it"),
    (["--runner", "local", "--set", "data.mode=crops", "--set", "data.jpeg_draft=false"],   # the built-in photos: arrays
     "--set data.jpeg_draft: only data.mode = 'crops' (with data.source = 'folder') reads it"),
    (["--runner", "local", "--set", "data.faces_fraction=0.5"],
     "--set data.faces_fraction: only data.source = 'natural+faces' reads it"),
    (["--runner", "local", "--set", "data.source=natural+faces", "--set", "data.faces_fraction=0", "--set", "data.train_faces=10"],
     "--set data.train_faces: only data.faces_fraction > 0 (where data.source = 'natural+faces') reads it, and this run's "
     "data.faces_fraction is 0.0 and data.source is 'natural+faces'"),
    (["--runner", "simulated", "--set", "cluster.grad_noise_relative=true"],
     "--set cluster.grad_noise_relative: only cluster.grad_noise > 0 reads it, and this run's cluster.grad_noise is 0.0"),
    (["--runner", "local", "--set", "sandblaster.units=4"], "--set sandblaster.units: only Sandblaster L-BFGS reads"),
    # accepted on the simulator and on Sandblaster, and bit for bit without effect
    (["--runner", "simulated", "--set", "cluster.restarts=5", "--set", "cluster.worker_gpus=0.5"],
     "--set cluster.restarts, cluster.worker_gpus: only the ray runner reads them"),
    (["--runner", "simulated", "--set", "cluster.algorithm=sandblaster", "--compensation", "dc-asgd",
      "--set", "train.lr=0.9", "--set", "cluster.grad_noise=5"],
     "--compensation, --set train.lr, cluster.grad_noise: Downpour's"),
    (["--runner", "ray", *SANDBLASTER, "--set", "train.batch_size=500"], "a batch of Sandblaster is sandblaster.batch"),
    (["--runner", "simulated", "--set", "cluster.algorithm=sandblaster", "--set", "train.log_every=5"],
     "--set train.log_every: Downpour's"),                  # Sandblaster writes a row every iteration
    # a sync round applies the mean gradient at staleness 0: no compensation reads it (DC-ASGD kept its copies anyway)
    (["--runner", "simulated", "--consistency", "sync", "--compensation", "dc-asgd"],
     "--compensation dc-asgd: a sync round applies the workers' mean gradient"),
    (["--runner", "simulated", "--consistency", "sync", "--set", "cluster.compensation=staleness-lr"],
     "--set cluster.compensation: a sync round"),
    # a warm start as long as the run: the other workers never started, worker 0 read only its shard
    (["--runner", "simulated", "--workers", "3", "--steps", "10", "--set", "cluster.warm_start=10"],
     "cluster.warm_start = 10: worker 0 trains alone for that many steps, and the run has 10"),
    # Ray keys another setting turns off: the coordinator's queue is 1 deep under bounded/sync, a CPU worker asks no GPU
    (["--runner", "ray", "--consistency", "bounded:2", "--set", "cluster.queue_depth=2"],
     "--set cluster.queue_depth: only cluster.consistency = 'async' reads it, and this run's cluster.consistency is 'bounded:2'"),
    (["--runner", "ray", "--set", "cluster.worker_gpus=0.5"],
     "--set cluster.worker_gpus: only train.device = 'cuda' or 'auto' reads it"),
    # bit for bit without effect: a gated worker fetches at every push's start; one worker has no one to wait for
    (["--runner", "simulated", "--consistency", "sync", "--n-fetch", "3"],
     "--n-fetch: only cluster.consistency = 'async' (or cluster.n_push > 1) reads it, and this run's cluster.consistency is 'sync'"),
    (["--runner", "simulated", "--workers", "1", "--set", "cluster.warm_start=5"],
     "--set cluster.warm_start: only cluster.workers > 1 reads it"),
    # one worker's bounded:K waits for its own push whatever K is: bounded:0, bounded:3 and sync were one run, bit for bit
    (["--runner", "simulated", "--workers", "1", "--consistency", "bounded:3"],
     "--consistency bounded:3, --workers 1: cluster.consistency = 'bounded:3' bounds how far a worker runs ahead"),
    (["--runner", "ray", "--set", "cluster.workers=1", "--set", "cluster.consistency=bounded:0"],
     "--set cluster.consistency, cluster.workers: cluster.consistency = 'bounded:0'"),
    (["--runner", "simulated", "--workers", "1", "--set", "cluster.algorithm=sandblaster", "--set", "sandblaster.backup_after=1"],
     "--set sandblaster.backup_after: only cluster.workers > 1 reads it"),    # no worker backs up its own unit
    # which worker gets which rows, where one worker has them all
    (["--runner", "local", "--set", "data.source=digits", "--set", "data.split=by-label"],
     "--set data.split: only cluster.runner = 'simulated' or 'ray'"),
    (["--runner", "simulated", "--set", "cluster.algorithm=sandblaster", "--set", "data.source=digits",
      "--set", "data.split=by-label"],
     "--set data.split: only cluster.runner"),
    # nothing is fitted, so nothing is fitted on the sample; a Gaussian vector has no colour and is not cut
    (["--runner", "local", "--set", "data.normalize=none", "--set", "data.whiten=none", "--set", "data.fit_sample=4"],
     "--set data.fit_sample: only data.normalize != 'none' (or data.whiten != 'none')"),
    (["--runner", "local", "--set", "data.source=gaussian", "--set", "data.grey=false"],
     "--set data.grey: only data.source != 'gaussian' reads it, and this run's data.source is 'gaussian'"),
    (["--runner", "local", "--set", "data.source=gaussian", "--set", "data.mode=crops"],
     "--set data.mode: only data.source != 'gaussian' reads it"),
    (["--runner", "local", "--set", "data.source=gaussian", "--set", "data.flip=true"],
     "data.source = 'gaussian' gives N(0, I) vectors, no image to shift, zoom or flip"),
    (["--runner", "local", "--set", "data.source=gaussian", "--set", "data.shift=2"], "data.shift = 2, data.scale = 0"),
    # the stream's own keys on data held in memory: read by nothing
    (["--runner", "local", "--set", "data.prefetch=8"], "--set data.prefetch: only streamed data read it (data.source = folder, video or a .npy"),
    (["--runner", "local", "--set", "data.source=digits", "--set", "data.loader_workers=2"],
     "--set data.loader_workers: only streamed data read it (data.source = folder"),
    # the face test's keys where no face test runs
    (["--runner", "local", "--set", "analysis.dataset=digits", "--set", "analysis.bootstrap=100"],
     "--set analysis.bootstrap: only analysis.dataset = 'lfw' (with analysis.positive = 1) or a folder (with "
     "analysis.concept_controls != []) reads it"),
    (["--runner", "local", "--set", "analysis.positive=0", "--set", "analysis.face_choice=localizer"],
     "--set analysis.face_choice: only analysis.dataset = 'lfw'"),
    # the probes' keys where no probe runs (analysis.probes = [] skips them): accepted and read by nothing
    (["--runner", "local", "--set", "analysis.probes=[]", "--set", "analysis.probe_folds=3"],
     "--set analysis.probe_folds: only analysis.probes != [] reads it, and this run's analysis.probes is []"),
])
def test_a_set_the_runner_never_reads_is_refused(capsys, argv, named):
    assert main(["train", "--config", "ufldl-sae", "--dry-run", *argv]) == 2
    assert named in capsys.readouterr().err


@pytest.mark.parametrize("argv, named", [
    # the message named only the first setting of the condition, which held: "only cluster.runner = 'simulated' or
    # 'ray', with cluster.workers > 1 (Downpour) reads it, and this run's cluster.runner is 'simulated'"
    (["--runner", "simulated", "--workers", "1", "--set", "data.source=digits", "--set", "data.split=by-label"],
     "and this run's cluster.runner is 'simulated', cluster.workers is 1 and cluster.algorithm is 'downpour'"),
    (["--runner", "local", "--set", "analysis.positive=0", "--set", "analysis.face_choice=localizer"],
     "and this run's analysis.dataset is 'lfw' and analysis.positive is 0"),
    (["--runner", "simulated", "--consistency", "sync", "--n-fetch", "3"],
     "and this run's cluster.consistency is 'sync' and cluster.n_push is 1"),
])
def test_a_refused_set_names_every_setting_its_reading_depends_on(capsys, argv, named):
    assert main(["train", "--config", "ufldl-sae", "--dry-run", *argv]) == 2
    assert named in capsys.readouterr().err


@pytest.mark.parametrize("argv, named", [
    # passed the dry run on zero labels, then failed at step 1 with a traceback, its run folder left behind
    (["--config", "cnn-digits", "--set", "data.source=natural"],
     "model 'cnn-digits' is supervised: it trains on class labels, and data.source = 'natural' has none"),
    (["--config", "cnn-digits", "--set", "data.source=array", "--set", "data.path=X.npy"], "holds no y (a .npy is x alone"),
    (["--config", "ufldl-sae", "--runner", "local", "--set", "train.schedule=greedy"],
     "model 'ufldl-sae' has one stage (greedy would be joint)"),         # accepted, bit for bit a joint run
    (["--config", "teacher-student", "--set", "data.source=array", "--set", "data.path=X.npy", "--set", "data.size=64",
      "--workers", "2", "--set", "data.split=by-label"], "data.path 'X.npy' holds no y"),
    # a folder's labels where no supervised cost and no by-label split reads them: bit for bit without effect
    (["--config", "ufldl-sae", "--runner", "local", "--set", "data.source=folder", "--set", "data.path=FOLDER",
      "--set", "data.labels=true"], "--set data.labels: only data.split = 'by-label' (or a supervised model.name) reads it, and this run's data.split "
      "is 'iid' and model.name is 'ufldl-sae'"),
])
def test_labels_a_model_or_split_needs_and_a_schedule_with_nothing_to_order_are_refused(tmp_path, capsys, argv, named):
    np.save(tmp_path / "x.npy", np.zeros((20, 1, 8, 8), np.float32))
    for label in "ab":
        (tmp_path / "f" / label).mkdir(parents=True)
        Image.fromarray(np.full((16, 16), 40 if label == "a" else 200, np.uint8)).save(tmp_path / "f" / label / "0.png")
    argv = [a.replace("X.npy", str(tmp_path / "x.npy")).replace("FOLDER", str(tmp_path / "f")) for a in argv]
    assert main(["train", "--dry-run", *argv]) == 2
    assert named in capsys.readouterr().err.replace(str(tmp_path / "x.npy"), "X.npy")


@pytest.mark.parametrize("sets, named", [
    (["model.classes=5"], "model.classes = 5, but the labels of data.source = 'digits' run over 10 classes (0..9); "
                          "set model.classes = 10"),
    (["model.name=cnn-faces", "data.size=25"], "model.classes = 2, but the labels of data.source = 'digits' run over 10"),
    (["data.source=array", "data.path=XY.npz", "model.classes=12"], "run over 13 classes (0..12); set model.classes = 13"),
    (["model.name=cnn-faces", "data.source=folder", "data.path=FOLDER", "data.labels=true", "data.size=25"],
     "model.classes = 2, but the labels of data.source = 'folder' run over 3 classes (0..2)"),
])
def test_a_supervised_model_with_fewer_classes_than_the_labels_is_refused_before_its_run_folder(tmp_path, capsys, sets, named):
    """Passed the dry run (its zero labels fit any class count), then failed at the first batch holding a larger
    label with a traceback ("ValueError: label 9 does not fit model.classes = 5"), its run folder left behind."""
    np.savez(tmp_path / "xy.npz", x=np.zeros((20, 1, 8, 8), np.float32), y=np.arange(20) % 13)
    for label in "abc":
        (tmp_path / "f" / label).mkdir(parents=True)
        Image.fromarray(np.full((32, 32), 40, np.uint8)).save(tmp_path / "f" / label / "0.png")
    sets = [s.replace("XY.npz", str(tmp_path / "xy.npz")).replace("FOLDER", str(tmp_path / "f")) for s in sets]
    argv = ["train", "--config", "cnn-digits", *[a for s in sets for a in ("--set", s)], "--set", "train.steps=2",
            "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_greedy_schedule_on_a_model_that_cannot_be_built_gets_the_models_error_not_a_traceback(tmp_path, capsys):
    """The one-stage check built the model before the crossfit's checks: a ValueError traceback from the Gabor bank."""
    assert main(["crossfit", "--config", "cat-demo", "--runner", "local", "--set", "model.name=rica-local", "--set",
                 "model.first_layer=gabor", "--set", "model.kernel_size=1", "--set", "train.schedule=greedy",
                 "--out", str(tmp_path / "cf")]) == 2
    assert "model.first_layer = 'gabor' needs filters of at least 2x2 pixels" in capsys.readouterr().err


def test_a_crossfit_names_the_set_behind_a_model_error_as_train_does(tmp_path, capsys):
    """It said only "model 'tica-8x8': model.init_scale = 0.1 is not read", not which --set gave it."""
    assert main(["crossfit", "--config", "tica-8x8", "--set", "model.first_layer=gabor", "--set", "model.init_scale=0.1",
                 "--out", str(tmp_path / "cf")]) == 2
    assert "--set model.init_scale=0.1: model 'tica-8x8': model.init_scale = 0.1 is not read" in capsys.readouterr().err


def test_augmentation_of_gaussian_vectors_in_a_config_file_is_refused_too(tmp_path, capsys):
    """Refused only as a typed --set: a file (or a study's --set) still shifted and flipped the N(0, I) vectors."""
    (tmp_path / "aug.toml").write_text('base = "teacher-student"\n[data]\nflip = true\nshift = 2\n')
    assert main(["train", "--config", str(tmp_path / "aug.toml"), "--dry-run"]) == 2
    assert "no image to shift, zoom or flip" in capsys.readouterr().err


def test_a_labelled_array_or_lfw_split_by_label_and_feed_a_supervised_model(tmp_path, capsys):
    """Refused before ("data.source = 'array' has none") though an .npz's y and lfw's labels are read."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "xy.npz", x=rng.random((40, 1, 8, 8), dtype=np.float32), y=np.arange(40) % 10)
    for source in (["data.source=array", f"data.path={tmp_path / 'xy.npz'}"], ["model.name=cnn-faces", "data.source=faces",
                                                                                   "data.size=25"]):
        sets = [arg for key in source for arg in ("--set", key)]
        assert main(["train", "--config", "cnn-digits", "--runner", "simulated", "--workers", "2", *sets,
                     "--set", "data.split=by-label", "--dry-run"]) == 0, capsys.readouterr().err


def test_a_preset_may_carry_another_runners_settings():
    """main sets cluster.rule (its Ray server's) and cat-demo's train.optimizer: neither is the user's doing."""
    assert main(["train", "--runner", "local", "--dry-run", "--set", "train.steps=3"]) == 0
    assert main(["train", "--dry-run", "--set", "train.steps=3"]) == 0


@pytest.mark.parametrize("argv, named", [
    (["--runner", "ray", "--set", "cluster.delay=exponential:2"], "--set cluster.delay: only the simulated runner"),
    (["--runner", "simulated", "--set", "cluster.address=1.2.3.4:6379"], "--set cluster.address: only the ray runner"),
    (["--runner", "ray", *SANDBLASTER, "--delay", "exponential:2"], "(and Sandblaster on Ray, its straggler:T:FACTOR form)"),
    # Ray's straggler sleeps FACTOR - 1 times its compute: a T, or a FACTOR below 1, was taken and did nothing
    (["--runner", "ray", *SANDBLASTER, "--delay", "straggler:5:10"], "T, the simulator's latency, is not read there: "
                                                                     "write straggler:0:10"),
    (["--runner", "ray", *SANDBLASTER, "--set", "cluster.delay=straggler:0:0.5"], "only sleeps FACTOR - 1 times"),
])
def test_the_set_form_of_a_one_runner_flag_is_refused_like_the_flag(capsys, argv, named):
    assert main(["train", "--config", "ufldl-sae", "--dry-run", *argv]) == 2
    assert named in capsys.readouterr().err


def test_a_config_files_downpour_keys_on_a_sandblaster_run_are_refused_naming_the_file(tmp_path, capsys):
    """A file's cluster.lr or train.lr was ignored without a word where --set of them was refused; a preset's keys
    (teacher-student's cluster.rule), one at its default and a resolved config.toml that lists them all are not."""
    (tmp_path / "sb.toml").write_text('base = "teacher-student"\n[cluster]\nalgorithm = "sandblaster"\nn_push = 1\n')
    (tmp_path / "lr.toml").write_text('base = "sb.toml"\n[cluster]\nlr = 0.5\n[train]\nlog_every = 5\n')
    assert main(["train", "--config", str(tmp_path / "lr.toml"), "--dry-run"]) == 2
    assert f"{tmp_path / 'lr.toml'} sets cluster.lr = 0.5, train.log_every = 5: Downpour's" in capsys.readouterr().err
    assert main(["train", "--config", str(tmp_path / "sb.toml"), "--dry-run"]) == 0
    (tmp_path / "resolved.toml").write_text(capsys.readouterr().out)
    assert 'rule = "sgd"' in (tmp_path / "resolved.toml").read_text()    # (teacher-student's; not the default)
    assert main(["train", "--config", str(tmp_path / "resolved.toml"), "--dry-run"]) == 0


def test_a_sandblaster_runs_train_keys_are_refused_naming_their_value_and_what_it_reads_instead(tmp_path, capsys):
    """`--set train.lr=0.1` on a Sandblaster run was refused as "Downpour's" with a generic "(and finds its own step by
    line search, not train.lr or train.optimizer, ...)": neither the value nor the key to set instead was named."""
    sandblaster = ["train", "--config", "ufldl-sae", "--dry-run", "--runner", "simulated",
                   "--set", "cluster.algorithm=sandblaster"]
    assert main([*sandblaster, "--set", "train.lr=0.1"]) == 2
    err = capsys.readouterr().err
    assert ("train.lr = 0.1 is a fixed step size, and Sandblaster finds each iteration's step by a line search: its key "
            "is sandblaster.line_search = 10, the most evaluations one search may take") in err
    assert "delay, partitions (= 1);" in err   # what it reads of partitions: 1 alone (it said "partitions", bare)
    assert main([*sandblaster, "--set", "sandblaster.line_search=4", "--set", "train.log_every=5"]) == 2
    err = capsys.readouterr().err
    assert "train.log_every = 5 spaces Downpour's metrics rows, and Sandblaster writes one every L-BFGS iteration" in err
    assert "line_search" not in err                    # (only the keys refused are said)
    (tmp_path / "adam.toml").write_text('base = "ufldl-sae"\n[cluster]\nrunner = "simulated"\nalgorithm = "sandblaster"\n'
                                        '[train]\noptimizer = "adam"\n')
    assert main(["train", "--config", str(tmp_path / "adam.toml"), "--dry-run"]) == 2
    assert ("train.optimizer = 'adam' is a replica's update rule, and Sandblaster's is L-BFGS itself: its key is "
            "sandblaster.history = 10") in capsys.readouterr().err


def test_a_config_toml_from_before_a_newer_cluster_key_is_still_a_resolved_one(tmp_path, capsys):
    """A Sandblaster run's config.toml lacks the [cluster] keys added after it (cluster.silent_seconds, 2026-12-05):
    read as a file the user wrote, its preset's Downpour keys (teacher-student's rule, train.lr) were refused."""
    (tmp_path / "sb.toml").write_text('base = "teacher-student"\n[cluster]\nalgorithm = "sandblaster"\n')
    assert main(["train", "--config", str(tmp_path / "sb.toml"), "--dry-run"]) == 0
    old = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("silent_seconds")]
    (tmp_path / "old.toml").write_text("\n".join(old) + "\n")
    assert main(["train", "--config", str(tmp_path / "old.toml"), "--dry-run"]) == 0


def test_a_file_on_a_run_config_toml_setting_one_of_its_cluster_keys_leaves_it_resolved(tmp_path, capsys):
    """`base = "RUN/config.toml"` and `cluster.workers = 4`: the run's file no longer set every [cluster] key last, so
    its preset's Downpour keys (teacher-student's rule, train.lr) were refused, naming the run's config.toml."""
    (tmp_path / "sb.toml").write_text('base = "teacher-student"\n[cluster]\nalgorithm = "sandblaster"\n')
    assert main(["train", "--config", str(tmp_path / "sb.toml"), "--dry-run"]) == 0
    (tmp_path / "config.toml").write_text(capsys.readouterr().out)
    (tmp_path / "more.toml").write_text(f'base = "{tmp_path / "config.toml"}"\n[cluster]\nworkers = 4\n')
    assert main(["train", "--config", str(tmp_path / "more.toml"), "--dry-run"]) == 0


def test_a_downpour_file_switched_to_sandblaster_on_the_command_line_keeps_its_downpour_keys(tmp_path, capsys):
    """A file written for Downpour (its chain trains with Downpour) reused with --set cluster.algorithm=sandblaster is
    a Downpour run's config.toml reused so (which passes): its Downpour keys are for Downpour, not a slip; a file
    that says sandblaster itself is still refused, saying to drop the key from the file."""
    (tmp_path / "dp.toml").write_text('base = "teacher-student"\n[cluster]\nlr = 0.5\n')
    assert main(["train", "--config", str(tmp_path / "dp.toml"), "--set", "cluster.algorithm=sandblaster",
                 "--dry-run"]) == 0
    capsys.readouterr()
    (tmp_path / "sb.toml").write_text('base = "dp.toml"\n[cluster]\nalgorithm = "sandblaster"\n')
    assert main(["train", "--config", str(tmp_path / "sb.toml"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'dp.toml'} sets cluster.lr = 0.5: Downpour's" in err
    assert f"drop it from {tmp_path / 'dp.toml'}" in err

@pytest.mark.parametrize("delay", [["--delay", "straggler:0:10"], ["--set", "cluster.delay=straggler:0:10"]])
def test_sandblaster_on_ray_takes_the_straggler_it_reads(delay):
    """Its last worker actor sleeps to show the backups (docs/sandblaster.md): the command line refused it."""
    assert main(["train", "--config", "ufldl-sae", "--dry-run", "--runner", "ray", "--workers", "2", *SANDBLASTER, *delay]) == 0


@pytest.mark.parametrize("argv, named", [
    (["--set", "analysis.layer=poolde"], "analysis.layer = 'poolde' is not a feature layer of model 'tica-8x8'"),
    (["--set", 'analysis.probe_layers=["x"]'], "analysis.probe_layers = 'x' is not a feature layer"),
    (["--set", "analysis.no_faces_run=NOWHERE"], "analysis.no_faces_run"),
    (["--set", "analysis.positive=-5"], "analysis.positive = -5: the labelled set 'lfw' has classes 0-1"),
    (["--set", "analysis.dataset=digits", "--set", "analysis.positive=10"], "'digits' has classes 0-9"),
    (["--set", "analysis.no_faces_run=EMPTY"], "the --out directory of a `downpour train` run"),
    (["--set", "analysis.no_faces_run=OTHER"], "has data.samples = 300, this run 10000: not the same recipe"),
    (["--set", "analysis.dataset="], "analysis.dataset: '' is neither a built-in labelled set"),   # was: the working dir
])
def test_an_analysis_setting_that_cannot_work_is_refused_before_training(tmp_path, capsys, argv, named):
    """They passed --dry-run and failed after the training (80 s of it on the main job)."""
    (tmp_path / "empty").mkdir()
    if "analysis.no_faces_run=OTHER" in argv:     # a finished run of another recipe
        assert main(["train", "--config", "tica-8x8", "--runner", "local", "--steps", "2", "--set", "data.samples=300",
                     "--set", "data.train_faces=0", "--set", "data.source=faces", "--set", "train.tensorboard=false",
                     "--out", str(tmp_path / "other")]) == 0
        capsys.readouterr()
    argv = [a.replace("NOWHERE", str(tmp_path / "nowhere")).replace("EMPTY", str(tmp_path / "empty"))
            .replace("OTHER", str(tmp_path / "other")) for a in argv]
    assert main(["train", "--config", "tica-8x8", "--dry-run", *argv]) == 2
    assert named in capsys.readouterr().err


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


def test_a_refused_value_set_twice_names_the_set_flag_that_took_effect(capsys):
    """The last --set of a key is the one used; the refusal named the first (`--set model.tile=8` of a refused abc)."""
    assert main(["models", "--footprint", "cat-demo", "--set", "model.tile=8", "--set", "model.tile=abc"]) == 2
    assert "downpour: error: --set model.tile=abc: model 'cat-demo': " in capsys.readouterr().err


def test_a_split_replica_checks_its_analysis_layer_too(capsys):
    """With cluster.partitions > 1 the check was skipped: the typo failed after the training."""
    assert main(["train", "--config", "cat-untied", "--runner", "simulated", "--workers", "2", "--shards", "4",
                 "--set", "cluster.partitions=2", "--set", "analysis.layer=stage9", "--dry-run"]) == 2
    assert "analysis.layer = 'stage9' is not a feature layer" in capsys.readouterr().err


def test_a_config_not_in_utf8_and_an_out_below_a_file_are_errors_not_tracebacks(tmp_path, capsys):
    (tmp_path / "latin1.toml").write_bytes(b"seed = 1 # caf\xe9\n")
    assert main(["train", "--config", str(tmp_path / "latin1.toml"), "--dry-run"]) == 2
    assert "not UTF-8 text" in capsys.readouterr().err
    (tmp_path / "f").write_text("a file")
    assert main(["train", "--config", "tica-8x8", "--steps", "2", "--out", str(tmp_path / "f" / "run")]) == 2
    assert "cannot make the run folder" in capsys.readouterr().err


def test_a_model_or_cost_term_error_names_the_file_or_flag_that_set_it(tmp_path, capsys):
    """The model's and the cost terms' own checks run after loading, where the file or flag was not known."""
    (tmp_path / "bad.toml").write_text('base = "tica-8x8"\n[model]\nhiden = 3\n')
    assert main(["train", "--config", str(tmp_path / "bad.toml"), "--dry-run"]) == 2
    assert f"error: {tmp_path / 'bad.toml'}: model 'tica-8x8': unknown key 'model.hiden'" in capsys.readouterr().err
    assert main(["train", "--config", "tica-8x8", "--set", "objective.pooled_l2.weight=abc", "--dry-run"]) == 2
    assert "error: --set objective.pooled_l2.weight=abc: [objective]" in capsys.readouterr().err
    assert main(["train", "--config", "tica-8x8", "--set", "model.hidden=0", "--dry-run"]) == 2
    assert "error: --set model.hidden=0: model 'tica-8x8': model.hidden must be" in capsys.readouterr().err


def test_a_greedy_run_with_fewer_steps_than_stages_is_refused(capsys):
    """Stage 2 kept its initial weights, and the run ended with exit 0."""
    assert main(["train", "--config", "cat-demo", "--runner", "local", "--steps", "1", "--dry-run"]) == 2
    assert "train.steps = 1 gives some of the model's 2 stages no step" in capsys.readouterr().err
    assert main(["train", "--config", "cat-demo", "--runner", "local", "--steps", "1", "--dry-run",
                 "--set", "train.schedule=joint"]) == 0


def test_a_greedy_ray_run_with_more_stages_than_an_inbox_carries_is_refused_before_it_starts(capsys):
    """63 one-map stages on Ray: the last stage's first push could not be staged (an inbox's stages word holds
    stages 1..62), the worker was lost at step 62 of 63 and the run stopped there; 62 stages, the simulator
    and a joint schedule train."""
    def argv(n, *more):
        ones = "[" + ",".join(["1"] * n) + "]"
        keys = ("maps", "kernels", "strides", "pools", "pool_strides")
        return ["train", "--config", "cat-demo", "--runner", "ray", "--steps", "63", "--dry-run",
                "--set", "train.schedule=greedy", *[a for k in keys for a in ("--set", f"model.{k}={ones}")], *more]

    assert main(argv(63)) == 2
    err = capsys.readouterr().err
    assert "has 63 greedy stages" in err and "stages 1..62" in err and "--set model.maps=" in err
    assert main(argv(62)) == 0
    assert main(argv(63, "--runner", "simulated")) == 0
    assert main(argv(63, "--set", "train.schedule=joint")) == 0


@pytest.mark.parametrize("sets", [["--config", "tica-8x8", "--set", "model.name=rica-8x8"],
                                  ["--config", "ufldl-sae", "--set", "model.activation=relu"],
                                  ["--config", "cnn-digits"]])
def test_kl_sparsity_on_codes_outside_0_1_is_refused(capsys, sets):
    """rica-8x8's linear codes: about half the units were clamped out of the term and got no gradient from it. ReLU
    codes are refused alike, whatever their size on one batch: until 2026-12-06 a ReLU autoencoder's (up to 3.1) were
    and cnn-digits' (under 1 on a batch of unit size) were not."""
    argv = ["train", *sets, "--runner", "local", "--steps", "3", "--dry-run", "--set", "objective.kl_sparsity=3"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "objective.kl_sparsity needs codes that stay in [0, 1] for any input" in err
    # the aside only where the codes were in [0, 1] at unit size (rica's linear codes grow too, but are not ReLU's)
    assert ("(in [0, 1] at unit size: they grow with the input, as a ReLU's do)" in err) == ("cnn-digits" in sets), err


def test_kl_sparsity_on_a_bernoulli_rbm_is_checked_on_data_it_takes_and_moves_no_chain(capsys):
    """The check fed every model a normal batch: a Bernoulli RBM refuses data outside [0, 1], so the registered
    rbm-sparse and the documented KL recipe could not be trained; and its forward moved a PCD model's chains."""
    import torch

    from downpour.models.cost_fit import check_cost_fits
    from downpour.models.registry import build

    assert main(["train", "--config", "rbm-digits", "--set", "model.name=rbm-sparse", "--dry-run"]) == 0
    cfg = load_config("rbm-digits", ["model.persistent=true", "model.chains=8", "objective.kl_sparsity={weight=1.0}"])
    model, objective = build(cfg, (1, 8, 8))
    model.train()
    before = model.chains_h.clone()
    check_cost_fits("rbm-digits", model, objective, (1, 8, 8))
    assert torch.equal(model.chains_h, before)
    assert main(["train", "--config", "ufldl-sae", "--dry-run"]) == 0          # sigmoid codes: its own preset


def test_a_dependent_cluster_key_is_read_once_its_setting_is_there():
    for argv in (["--set", "cluster.rule=momentum", "--set", "cluster.momentum=0.5"],
                 ["--compensation", "dc-asgd", "--set", "cluster.dc_lambda=0.1"],
                 ["--set", "cluster.grad_noise=0.01", "--set", "cluster.grad_noise_relative=true"]):
        assert main(["train", "--config", "ufldl-sae", "--dry-run", "--runner", "simulated", *argv]) == 0, argv


def test_a_parameter_of_a_cost_term_the_model_lacks_needs_its_weight(capsys):
    """`--set objective.pooled_l2.eps=0.5` on ufldl-sae (no pooled_l2 term) turned the term on at weight
    1.0, and the resolved config.toml did not say so (no weight written)."""
    argv = ["train", "--config", "ufldl-sae", "--dry-run", "--runner", "local", "--set", "objective.pooled_l2.eps=0.5"]
    assert main(argv) == 2
    assert "model 'ufldl-sae' has no 'pooled_l2' cost term" in capsys.readouterr().err
    assert main([*argv, "--set", "objective.pooled_l2.weight=0.2"]) == 0
    assert "weight = 0.2" in capsys.readouterr().out


@pytest.mark.parametrize("argv, named", [
    (["--steps", "5", "--set", "train.steps=7"], "--steps 5 and --set train.steps=7 both set train.steps"),
    (["--runner", "local", "--set", "cluster.runner=simulated"], "--runner local and --set cluster.runner=simulated"),
    (["--report", "--set", "analysis.report=false"], "--report and --set analysis.report=false"),
])
def test_a_flag_and_a_set_of_the_same_key_that_disagree_are_refused(capsys, argv, named):
    """The --set won whatever the order on the command line (flags are applied first), unsaid."""
    assert main(["train", "--config", "ufldl-sae", "--dry-run", *argv]) == 2
    assert named in capsys.readouterr().err
    assert main(["train", "--config", "ufldl-sae", "--dry-run", "--runner", "local", "--steps", "7",
                 "--set", "train.steps=7"]) == 0               # the same value twice: no conflict


def test_an_out_that_cannot_be_written_is_refused_up_front(tmp_path, capsys):
    """--dry-run passed an --out that was a file or held a run (the run then failed); `study` and
    `crossfit --jobs 2` given a file as --out ended in a FileExistsError traceback."""
    afile = tmp_path / "afile"
    afile.write_text("")
    held = tmp_path / "held"
    assert main(["train", "--config", "ufldl-sae", "--runner", "local", "--steps", "2", "--set", "train.tensorboard=false",
                 "--out", str(held)]) == 0
    capsys.readouterr()
    for argv, named in (
            (["train", "--config", "ufldl-sae", "--dry-run", "--out", str(afile)], "is not an empty folder (a file)"),
            (["train", "--config", "ufldl-sae", "--dry-run", "--out", str(afile / "x")], f"{str(afile)!r} is a file"),
            (["train", "--config", "ufldl-sae", "--dry-run", "--out", str(held)], "already holds a run"),
            (["study", "staleness", "--quick", "--out", str(afile)], "cannot make the study's folder"),
            (["study", "staleness", "--quick", "--out", str(held)], "holds a training run (config.toml)"),
            (["crossfit", "--config", "ufldl-sae", "--runner", "local", "--jobs", "2", "--control", "none",
              "--out", str(afile)], "cannot make the cross-fit's folder")):
        assert main(argv) == 2, argv
        assert named in capsys.readouterr().err, argv
    assert not (held / "cells.jsonl").exists() and not (held / "context.json").exists()     # nothing mixed into the run


def test_a_name_that_reads_as_a_date_is_told_how_to_quote_it(capsys):
    assert main(["train", "--dry-run", "--set", "data.source=folder", "--set", "data.path=2024-06-01"]) == 2
    assert """quoted: --set 'data.path="2024-06-01"'""" in capsys.readouterr().err


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


@pytest.mark.parametrize("argv, named", [
    (["--steps", "0"], "--steps 0: train.steps must be >= 1"),
    (["--workers", "-1"], "--workers -1: cluster.workers must be >= 1"),
    (["--delay", "foo"], "--delay foo: cluster.delay 'foo'"),
    (["--set", "train.steps=0"], "--set train.steps=0: train.steps must be >= 1"),
])
def test_a_bad_typed_flag_is_named_as_typed(capsys, argv, named):
    """A typed flag's error said "the command line: train.steps must be >= 1", not which flag."""
    assert main(["train", "--config", "ufldl-sae", "--dry-run", "--runner", "simulated", *argv]) == 2
    assert named in capsys.readouterr().err


def test_a_flags_override_is_its_key_and_value_and_survives_pickling():
    """The cross-fit hands its overrides to fold processes: the flag's name must travel with them."""
    import pickle

    from downpour.config import FlagValue

    pair = pickle.loads(pickle.dumps(FlagValue("train.steps", 0, "--steps 0")))
    assert pair == ("train.steps", 0) and pair.flag == "--steps 0"
    with pytest.raises(ConfigError, match="--steps 0: train.steps must be >= 1"):
        load_config("ufldl-sae", [pair])


def test_more_shards_than_parameters_is_refused_before_the_run_directory_exists(tmp_path, capsys):
    """The runner found it once config.toml was written (the folder was taken over on the next try)."""
    argv = ["train", "--config", "ufldl-sae", "--runner", "simulated", "--shards", "100000", "--steps", "5",
            "--out", str(tmp_path / "run")]
    assert main([*argv, "--dry-run"]) == 2 and "cluster.shards=100000 is more than the model's 3289" in capsys.readouterr().err
    assert main(argv) == 2 and not (tmp_path / "run").exists()


def test_a_dry_run_of_a_resume_refuses_what_the_resume_would(tmp_path, capsys):
    """--dry-run passed a resume that then failed with "already reached"."""
    out = tmp_path / "run"
    assert main(["train", *TINY, "--steps", "6", "--set", "train.checkpoint_every=3", "--out", str(out)]) == 0
    capsys.readouterr()
    for steps in ("6", "3"):
        assert main(["train", "--resume", str(out), "--steps", steps, "--dry-run"]) == 2
        assert "already reached step 6" in capsys.readouterr().err
    assert main(["train", "--resume", str(out), "--steps", "9", "--dry-run"]) == 0
    (out / "model.json").unlink()          # stopped between its last checkpoint and its model: the resume writes it
    assert main(["train", "--resume", str(out), "--dry-run"]) == 0
    assert main(["train", "--resume", str(out)]) == 0 and (out / "model.json").is_file()
    (out / "checkpoints" / "local.json").write_text("{")
    assert main(["train", "--resume", str(out), "--steps", "9", "--dry-run"]) == 2
    assert "local.json' is not valid JSON" in capsys.readouterr().err


def test_a_resume_of_a_finished_run_is_refused_before_it_says_it_resumes(tmp_path, capsys, caplog):
    """It printed "downpour: resuming RUN ..." and logged "resuming RUN at step 6", then refused ("already reached
    step 6 of 6"), where its --dry-run refused before saying anything; the refusal's words are the same."""
    out = tmp_path / "run"
    assert main(["train", *TINY, "--steps", "6", "--out", str(out)]) == 0
    capsys.readouterr()
    caplog.set_level(logging.INFO)                   # (what the command logs: the runner's "resuming RUN at step 6")
    for steps in ("6", "3"):
        said = []
        for dry in (["--dry-run"], []):
            caplog.clear()
            assert main(["train", "--resume", str(out), "--steps", steps, *dry]) == 2
            said.append(capsys.readouterr().err)
            assert "resuming" not in said[-1] + caplog.text and f"already reached step 6 of {steps}" in said[-1]
        assert said[0] == said[1]


def test_a_resume_of_a_run_whose_checkpoints_folder_is_gone_says_what_is_left_and_how_to_train_it_again(tmp_path, capsys):
    """It said only "checkpoint file 'RUN/checkpoints/local.safetensors' is missing"."""
    out = tmp_path / "run"
    assert main(["train", *TINY, "--steps", "6", "--set", "train.checkpoint_every=3", "--out", str(out)]) == 0
    shutil.rmtree(out / "checkpoints")
    metrics = (out / "metrics.jsonl").read_bytes()
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--steps", "9"]) == 2
    err = capsys.readouterr().err
    assert f"its folder {str(out / 'checkpoints')!r} is missing" in err
    assert "model.safetensors (step 6) is there" in err and f"`downpour analyze {out}`" in err
    assert f"`downpour train --config {out}/config.toml --out NEW`" in err
    assert (out / "metrics.jsonl").read_bytes() == metrics and not (out / "checkpoints").exists()   # nothing touched
    (out / "model.safetensors").unlink()
    assert main(["train", "--resume", str(out), "--dry-run"]) == 2
    assert "model.safetensors is missing too" in capsys.readouterr().err


def test_a_finished_run_with_a_twin_it_never_trains_and_no_checkpoints_folder_says_what_is_left(tmp_path, capsys):
    """A finished run's twin is all its resume trains, so the refusal let it by: where the config's no_faces_twin =
    true trains no twin (no lfw face to leave out: twins.twin_config turns it off), the resume then failed with
    "checkpoint file 'RUN/checkpoints/local.safetensors' is missing" (and its --dry-run passed)."""
    out = tmp_path / "run"
    assert main(["train", *TINY, "--steps", "6", "--out", str(out)]) == 0
    config = (out / "config.toml").read_text()
    assert "no_faces_twin = false" in config        # (as a config written before the twin was turned off says)
    (out / "config.toml").write_text(config.replace("no_faces_twin = false", "no_faces_twin = true"))
    shutil.rmtree(out / "checkpoints")
    for dry in ([], ["--dry-run"]):
        capsys.readouterr()
        assert main(["train", "--resume", str(out), *dry]) == 2
        err = capsys.readouterr().err
        assert f"{str(out)!r} is finished" in err and f"its folder {str(out / 'checkpoints')!r} is missing" in err


def test_a_finished_run_whose_checkpoints_folder_is_gone_is_refused_as_finished_not_as_one_to_put_back(tmp_path, capsys):
    """A resume with no more --steps of a finished run was told to put the folder back "to resume", where nothing is
    left to train: it says the run is finished, and what the user may have meant (analyse it, or more --steps)."""
    out = tmp_path / "run"
    assert main(["train", *TINY, "--steps", "6", "--out", str(out)]) == 0
    shutil.rmtree(out / "checkpoints")
    for dry in ([], ["--dry-run"]):
        capsys.readouterr()
        assert main(["train", "--resume", str(out), *dry]) == 2
        err = capsys.readouterr().err
        assert f"{str(out)!r} is finished (its model.safetensors is at step 6 of train.steps = 6)" in err
        assert "nothing to resume" in err and "put it back to resume" not in err
        assert f"`downpour analyze {out}`" in err and f"`downpour train --resume {out} --steps M`" in err
        assert f"its folder {str(out / 'checkpoints')!r} is missing" in err    # (what more steps would need)


@pytest.mark.parametrize("item", ["analysis.dataset=nosuch", "analysis.poses=/no/such/folder", "model.name=cat-dem"])
def test_an_error_names_the_set_that_caused_it(capsys, item):
    """These three named the value but not the --set (the others' errors did)."""
    assert main(["train", "--config", "ufldl-sae", "--runner", "local", "--dry-run", "--set", item]) == 2
    assert f"--set {item}: " in capsys.readouterr().err


def test_a_sigterm_that_ray_re_raises_as_a_bare_interrupt_still_exits_terminated(monkeypatch, capsys):
    """A SIGTERM while the driver waited in ray.wait for its actors came back as a plain KeyboardInterrupt
    (Ray's check_status), and the command said "interrupted" with Ctrl-C's status 130."""
    import time

    from downpour.train.signals import Terminated

    def waits_in_ray(args):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except Terminated:
            raise KeyboardInterrupt from None        # what Ray's wait does with it
        return 0

    monkeypatch.setattr("downpour.cli.cmd_presets", waits_in_ray)
    assert main(["presets"]) == 128 + signal.SIGTERM and "downpour: terminated" in capsys.readouterr().err
    monkeypatch.setattr("downpour.cli.cmd_presets", lambda args: (_ for _ in ()).throw(KeyboardInterrupt()))
    assert main(["presets"]) == 130 and "downpour: interrupted" in capsys.readouterr().err


@pytest.mark.parametrize("item", ["cluster.checkpoint_seconds=5", "cluster.shard_restarts=1"])
def test_a_ray_runs_fault_tolerance_settings_may_change_on_resume(tmp_path, capsys, item):
    """They change when and how often it saves or restarts, not what it trains; the resume refused them
    (while cluster.restarts and cluster.checkpoint_every were allowed)."""
    from downpour.train.rundir import RunDir

    cfg = load_config("ufldl-sae", ["cluster.runner=ray", "train.steps=10"])
    run = RunDir.create(tmp_path / "run", cfg)
    (run.path / "metrics.jsonl").write_text('{"step": 5, "loss": 1.0}\n')     # it trained: a resume is allowed
    assert main(["train", "--resume", str(run.path), "--dry-run", "--set", item]) == 0, capsys.readouterr().err


def test_weight_l2_on_ray_partitions_is_refused_where_it_could_not_see_the_filters(capsys):
    """The partition actors hold the filters: the term was 0 with no gradient on Ray, applied on the simulator."""
    argv = ["train", "--config", "cat-untied", "--dry-run", "--workers", "2", "--shards", "4", "--set", "cluster.partitions=2",
            "--set", "model.filter_norm=[0.0]", "--set", "objective.weight_l2=0.01"]
    assert main([*argv, "--runner", "ray"]) == 2
    assert "objective.weight_l2 = 0.01 with cluster.partitions = 2 on Ray" in capsys.readouterr().err
    assert main([*argv, "--runner", "simulated"]) == 0


@pytest.mark.parametrize("term", ["objective.denoising.weight=0.5", "objective.contractive.weight=0.1"])
def test_a_term_that_encodes_again_on_ray_partitions_is_refused_before_the_run(capsys, term):
    """The partition actors keep one graph per stage and keep the input's gradient: the run passed its checks
    and died at step 0 (KeyError in the actor's backward; "not used in the graph" for contractive)."""
    argv = ["train", "--config", "cat-untied", "--dry-run", "--workers", "2", "--shards", "4",
            "--set", "cluster.partitions=2", "--set", term]
    assert main([*argv, "--runner", "ray"]) == 2
    name = term.split(".")[1]
    assert f"objective.{name} with cluster.partitions = 2 on Ray: the term encodes its own input again" in \
        capsys.readouterr().err
    assert main([*argv, "--runner", "simulated"]) == 0


def test_a_cluster_flag_on_a_local_resume_does_not_advise_another_runner(tmp_path, capsys):
    """It said "add --runner simulated or --runner ray", which the resume then refused as another run."""
    assert main(["train", *TINY, "--steps", "4", "--out", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "run"), "--steps", "6", "--workers", "2"]) == 2
    err = capsys.readouterr().err
    assert "a resumed run keeps its runner" in err and "add --runner" not in err


def test_an_error_about_a_cost_terms_key_names_what_set_that_key(tmp_path, capsys):
    """The weight came from the file, and the error named the --set of another key of the same term."""
    (tmp_path / "negw.toml").write_text('base = "cat-demo"\n[objective]\npooled_l2 = {weight = -1.0}\n')
    argv = ["train", "--config", str(tmp_path / "negw.toml"), "--runner", "local", "--dry-run"]
    assert main([*argv, "--set", "objective.pooled_l2.eps=0.5"]) == 2
    assert capsys.readouterr().err.startswith(f"downpour: error: {tmp_path / 'negw.toml'}: [objective]")
    assert main([*argv, "--set", "objective.pooled_l2.weight=-2"]) == 2
    assert "--set objective.pooled_l2.weight=-2: [objective]" in capsys.readouterr().err


@pytest.mark.parametrize("listing", [["models"], ["presets"], ["study", "list"]])
def test_a_listing_whose_reader_left_is_no_failure(listing):
    """`downpour study list | head -1` exited 141 under `set -o pipefail`, where models and presets exit 0."""
    proc = subprocess.Popen([sys.executable, "-m", "downpour.cli", *listing], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
    proc.stdout.close()                          # the reader leaves before the first line
    assert proc.wait(timeout=120) == 0, proc.stderr.read()


def test_an_output_folder_that_cannot_be_made_is_named_not_a_traceback(tmp_path, monkeypatch, capsys):
    """On a read-only file system (EROFS, a plain OSError) train, study and crossfit ended in a traceback, and
    --dry-run said "config checked"."""
    import errno
    from pathlib import Path

    from downpour.train import folders

    ro = tmp_path / "ro"
    ro.mkdir()
    mkdir = Path.mkdir

    def read_only(self, *args, **kwargs):
        if ro in (self, *self.parents):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    for argv, what in ((["train", *TINY, "--out", str(ro / "r")], "the run folder"),
                       (["study", "costs", "--quick", "--out", str(ro / "s")], "the study's folder"),
                       (["crossfit", *[a for a in TINY if a != "--no-report"], "--set", "data.source=natural+faces", "--folds", "2", "--jobs", "2", "--out", str(ro / "c")], "the cross-fit's folder")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"cannot make {what}" in err and "Read-only file system" in err
    access = os.access
    monkeypatch.setattr(folders.os, "access", lambda p, mode: Path(p) != ro and access(p, mode))
    assert main(["train", *TINY, "--out", str(ro / "r"), "--dry-run"]) == 2
    assert f"{str(ro)!r} cannot be written" in capsys.readouterr().err
    assert list(ro.iterdir()) == []


def test_a_thread_count_torch_cannot_take_is_refused_before_the_run_folder(tmp_path, capsys):
    """train.threads had no upper bound: 1e20 passed --dry-run, then overflowed in torch.set_num_threads
    after config.toml was written."""
    argv = ["train", "--config", "ufldl-sae", "--runner", "local", "--set", "train.threads=99999999999999999999"]
    assert main([*argv, "--out", str(tmp_path / "r")]) == 2
    assert "train.threads must be in [0, 4096]" in capsys.readouterr().err and not (tmp_path / "r").exists()


def test_n_fetch_under_a_gate_is_read_when_a_push_holds_several_steps():
    """With n_push 4, n_fetch 1 fetches every step and n_fetch >= 4 once per push (local steps between):
    bit for bit another run, so it is not refused."""
    argv = ["train", "--config", "ufldl-sae", "--runner", "simulated", "--consistency", "bounded:2", "--n-push", "4"]
    assert main([*argv, "--n-fetch", "4", "--dry-run"]) == 0


def test_a_delay_out_of_order_names_its_set(capsys):
    """uniform:A:B with B < A is refused by the delay model, which named cluster.delay but not the --set that gave
    it, as every other refused value's message does."""
    assert main(["train", "--dry-run", "--runner", "simulated", "--set", "cluster.delay=uniform:3:1"]) == 2
    assert "--set cluster.delay=uniform:3:1: " in capsys.readouterr().err


def test_every_key_of_the_plans_json_network_and_partition_is_in_its_docs(capsys):
    """network.on_paper, which says what partition.copy_bytes is, was in --json but not in docs/plan.md; the cluster's
    keys were not checked (cluster.replica_machines came with 2026-12-05's count of each replica's own process)."""
    assert main(["plan", "--model", "cat-demo", "--machines", "4", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    docs = (Path(__file__).resolve().parents[1] / "docs" / "plan.md").read_text()
    keys = [f"{part}.{key}" for part in ("network", "partition", "cluster") for key in plan[part]]
    assert "network.on_paper" in keys
    assert [k for k in keys if f"`{k}`" not in docs] == []


@pytest.mark.parametrize("argv, example", [(["analyze", "RUN", "--set", "analysis.splits"], "e.g. analysis.splits=10"),
                                           (["models", "--footprint", "cat-demo", "--set", "model.maps"],
                                            "e.g. model.maps=[16,16]")])
def test_a_set_without_a_value_is_shown_an_example_its_command_takes(tmp_path, monkeypatch, capsys, argv, example):
    """analyze and models --footprint take one section's keys; a --set without = there was told "e.g. train.lr=0.1",
    which both then refuse."""
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{argv[-1]}: expected KEY=VALUE ({example})" in err and "train.lr" not in err


def test_a_finished_joint_run_says_the_command_that_goes_on_and_the_one_that_shows_it(tmp_path, capsys):
    """A finished joint run's resume said only "raise train.steps (--steps) to go on": no command, and nothing of
    the report a user who resumed a finished run by mistake wants (the greedy refusal named its command)."""
    out = tmp_path / "my run"
    assert main(["train", "--config", "ufldl-sae", "--steps", "4", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"already reached step 4 of 4; raise train.steps above 4 to go on (downpour train --resume '{out}' --steps M); " \
        f"what it learned: downpour report '{out}'" in err
    assert main(["train", "--resume", str(out), "--steps", "2"]) == 2          # (fewer: how many is enough)
    assert "already reached step 4 of 2; raise train.steps above 4 to go on" in capsys.readouterr().err


def test_the_commands_a_run_in_a_folder_with_a_space_is_told_paste_into_a_shell(tmp_path, capsys):
    """The advice of a resume with --out, of analyze and of a run whose checkpoints/ is gone gave the run's folder
    bare: `downpour analyze /runs/my run` pasted is two words (today's refusals of a finished run quoted it)."""
    out = tmp_path / "my run"
    assert main(["train", "--config", "ufldl-sae", "--steps", "4", "--out", str(out)]) == 0
    capsys.readouterr()
    said = []
    assert main(["train", "--resume", str(out), "--out", str(tmp_path / "x")]) == 2
    said.append(capsys.readouterr().err)
    shutil.rmtree(out / "checkpoints")
    assert main(["train", "--resume", str(out)]) == 2
    said.append(capsys.readouterr().err)
    (out / "model.safetensors").unlink()
    assert main(["analyze", str(out)]) == 2
    said.append(capsys.readouterr().err)
    commands = [command for err in said for command in re.findall(r"`(downpour [^`]*)`|(--config .*?) --set", err)]
    assert len(commands) == 6, said
    for command in commands:
        paths = [word for word in shlex.split("".join(command)) if word.startswith(str(tmp_path))]
        assert paths and set(paths) <= {str(out), str(out / "config.toml")}, command


def test_a_finished_greedy_run_says_plainly_how_to_train_more(tmp_path, capsys):
    """It used to say "a greedy run's stages split its steps, so it cannot go past them"; now: finished at step N
    of N, each stage has its share of train.steps, so more steps is a new run from the run's own config.toml."""
    out = tmp_path / "run"
    assert main(["train", "--config", "cat-demo", "--runner", "local", "--steps", "4", "--out", str(out)]) == 0
    capsys.readouterr()
    for dry in ([], ["--dry-run"]):
        assert main(["train", "--resume", str(out), *dry]) == 2
        err = capsys.readouterr().err
        assert "already reached step 4 of 4; it is finished: a greedy schedule gives each stage its share of train.steps" in err
        assert f"downpour train --config {out / 'config.toml'} --steps M --out NEW" in err      # (shell quoting, as
        assert "a joint run could be resumed with more --steps instead" in err                 # every other advice)
        assert f"what it learned: downpour report {out}" in err
    # asked for more steps, it says the same way out (it said only that the split depends on train.steps)
    assert main(["train", "--resume", str(out), "--steps", "6", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "cannot change train.steps (4 -> 6) when resuming a greedy run" in err
    assert f"to train it for 6 steps start a new run (downpour train --config {out / 'config.toml'} --steps 6 --out NEW)" in err
    # the command it suggests works, and so does what it says of a joint run
    assert main(["train", "--config", str(out / "config.toml"), "--steps", "6", "--out", str(tmp_path / "new")]) == 0
    joint = tmp_path / "joint"
    argv = ["train", "--config", "cat-demo", "--set", "train.schedule=joint", "--runner", "local", "--out", str(joint)]
    assert main([*argv, "--steps", "4"]) == 0
    assert main(["train", "--resume", str(joint), "--steps", "6"]) == 0


def test_a_refused_resume_names_the_new_run_from_its_own_config_toml(tmp_path, capsys):
    """A resume that would make another run (fewer --steps of a greedy run, another model option) suggested
    `--config RUN/config.toml` with the word RUN in it, whatever the run's folder, and told a --steps below the run's
    to start a new run "for more steps"."""
    out = tmp_path / "my run"
    assert main(["train", "--config", "cat-demo", "--runner", "local", "--steps", "6", "--out", str(out)]) == 0
    capsys.readouterr()
    config = shlex.quote(str(out / "config.toml"))
    assert main(["train", "--resume", str(out), "--steps", "4", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert f"to train it for 4 steps start a new run (downpour train --config {config} --steps 4 --out NEW)" in err
    assert "RUN/" not in err and "more steps" not in err
    assert main(["train", "--resume", str(out), "--set", "model.maps=[4,4]", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "cannot resume with model.maps" in err
    assert f"start a new run (downpour train --config {config} --set 'model.maps=[4,4]' --out NEW)" in err


def test_a_refused_resume_suggests_a_new_run_with_the_flags_the_user_typed(tmp_path, capsys):
    """`--resume RUN --set model.X=...` was told to start a new run with `--set ...`, literally: it names the flags
    typed, each shell-quoted (a value with a space or brackets), and the command it suggests is the run asked for."""
    out = tmp_path / "run"
    assert main(["train", "--config", "cat-demo", "--runner", "local", "--steps", "6", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--steps", "8", "--set", "model.maps=[4, 4]", "--no-report"]) == 2
    err = capsys.readouterr().err
    assert "--set ..." not in err
    suggested = re.search(r"start a new run \(downpour train (.*) --out NEW\) instead", err).group(1)
    assert suggested == f"--config {out / 'config.toml'} --steps 8 --no-report --set 'model.maps=[4, 4]'"
    argv = ["train", *shlex.split(suggested), "--out", str(tmp_path / "new"), "--dry-run"]
    assert main(argv) == 0
    config = tomllib.loads(capsys.readouterr().out)
    assert config["model"]["maps"] == [4, 4] and config["train"]["steps"] == 8


@pytest.mark.parametrize("flag", [["--config", "main"], ["--out", "new"]])
def test_a_resume_of_a_folder_that_is_no_run_says_so_before_the_flag_it_refuses_with_resume(tmp_path, capsys, flag):
    """`--resume NOTES --config main` was told "the run goes on in NOTES with its own config ... start a new run:
    downpour train --config NOTES/config.toml", a file that is not there."""
    (tmp_path / "notes").mkdir()
    assert main(["train", "--resume", str(tmp_path / "notes"), *flag]) == 2
    err = capsys.readouterr().err
    assert "is not a downpour run directory (no config.toml)" in err and "config.toml --" not in err


def test_an_out_with_resume_suggests_the_new_run_with_the_flags_the_user_typed(tmp_path, capsys):
    """`--resume RUN --out NEW --set ...` (a new run from a run's config, asked the wrong way) was told to start one
    with `--set ...`, literally, and no --out: it gives the flags and the --out typed, shell-quoted."""
    run, new = tmp_path / "my run", tmp_path / "new run"
    run.mkdir()
    (run / "config.toml").write_text('base = "ufldl-sae"\n')
    assert main(["train", "--resume", str(run), "--out", str(new), "--set", "model.maps=[4, 4]", "--steps", "8"]) == 2
    err = capsys.readouterr().err
    assert "--out with --resume" in err and "--set ..." not in err
    assert (f"start a new run: downpour train --config {shlex.quote(str(run / 'config.toml'))} --steps 8 "
            f"--set 'model.maps=[4, 4]' --out {shlex.quote(str(new))})") in err


@pytest.mark.parametrize("inner", ["config.toml", "checkpoints", "figures/"])
@pytest.mark.parametrize("command", [["analyze"], ["report"], ["train", "--resume"]])
def test_a_file_or_folder_inside_a_run_names_the_run_to_give(tmp_path, capsys, inner, command):
    """`--resume runs/cat/checkpoints` (a tab completion one level too deep) said "not a downpour run directory;
    give the --out directory of a `downpour train` run", and `analyze runs/cat/config.toml` "is a file, not a run
    directory": neither named the run that was one level up."""
    from downpour.train.rundir import RunDir

    run = RunDir.create(tmp_path / "run", load_config("ufldl-sae")).path
    (run / "checkpoints").mkdir(exist_ok=True)
    (run / "figures").mkdir(exist_ok=True)
    assert main([*command, str(run / inner)]) == 2
    kind = "a file" if inner == "config.toml" else "a folder"
    assert f"is {kind} of the run {str(run)!r}, not a run; give {str(run)!r}" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["analyze"], ["report"], ["train", "--resume"]])
def test_a_missing_file_inside_a_run_names_the_run_to_give(tmp_path, capsys, command):
    """`downpour report runs/cat/analysis.json` of a run not yet analysed said only "'runs/cat/analysis.json' does
    not exist", as of a misspelt run: the run it is in, the folder to give, went unnamed."""
    from downpour.train.rundir import RunDir

    run = RunDir.create(tmp_path / "run", load_config("ufldl-sae")).path
    assert main([*command, str(run / "analysis.json")]) == 2
    assert f"would be inside the run {str(run)!r}, not a run; give {str(run)!r}" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["analyze"], ["report"]])
def test_a_runs_missing_no_faces_twin_is_not_called_one_of_its_files(tmp_path, capsys, command):
    """RUN/no-faces is a run's own place (analysis.no_faces_twin), not one of its files: before its twin trained,
    `analyze RUN/no-faces` and analysis.no_faces_run = 'RUN/no-faces' were told "it would be inside the run 'RUN', not a
    run; give 'RUN'", the run that trained on faces."""
    from downpour.analysis.options import no_faces_run
    from downpour.train.rundir import RunDir

    cfg = load_config("ufldl-sae")
    run = RunDir.create(tmp_path / "run", cfg).path
    assert main([*command, str(run / "no-faces")]) == 2
    err = capsys.readouterr().err
    assert f"the run {str(run)!r} has no no-faces twin" in err and "give" not in err
    with pytest.raises(ConfigError, match="has no no-faces twin") as refused:
        no_faces_run(str(run / "no-faces"), cfg)
    assert f"give {str(run)!r}" not in str(refused.value)


@pytest.mark.parametrize("preset, overrides, advice", [
    ("cat-demo", [], ", never trained; `downpour train --resume {run} --set analysis.no_faces_twin=true` trains it"),
    # (a run on no lfw face was said to have a twin "never trained" too, until later on 2026-12-05)
    ("ufldl-sae", [], "; none can be trained: the run saw no lfw face (data.source = 'natural')"),
    # (until 2026-12-05 this one read "data.source = 'natural+faces' holds no lfw face": its source holds them)
    ("cat-demo", ["data.train_faces=0"], "; none can be trained: the run saw no lfw face (data.train_faces = 0)")])
def test_a_no_faces_twin_never_trained_says_so_and_how_to_train_it(tmp_path, capsys, preset, overrides, advice):
    """`downpour analyze RUN/no-faces` of a run without a twin said only "would be inside the run RUN, not a run; give
    RUN": nothing said the twin was never trained, nor how to train it (or that a run on no lfw face has none, and by
    which setting)."""
    from downpour.train.rundir import RunDir

    run = RunDir.create(tmp_path / "run", load_config(preset, overrides)).path
    assert main(["analyze", str(run / "no-faces")]) == 2
    err = capsys.readouterr().err
    assert f"the run {str(run)!r} has no no-faces twin{advice.format(run=run)}" in err


def test_a_config_file_without_a_base_says_it_starts_from_the_defaults(tmp_path, capsys):
    """A file of only `[train] steps = 5` was told "model 'cat-demo' on 1x8x8 samples (data.size = 8): ... shrink
    kernels or pools", values it never set (the dataclasses' defaults pair cat-demo with 8x8 data), and no word of
    the base it lacked; a file whose base is such a file is named too, one with a preset's base is not."""
    (tmp_path / "min.toml").write_text("[train]\nsteps = 5\n")
    (tmp_path / "over.toml").write_text('base = "min.toml"\nseed = 2\n')
    for name in ("min.toml", "over.toml"):
        assert main(["train", "--config", str(tmp_path / name), "--dry-run"]) == 2
        err = capsys.readouterr().err
        assert f'{tmp_path / "min.toml"} has no base = "PRESET", so it starts from the defaults' in err
        assert 'add e.g. base = "cat-demo"' in err
    (tmp_path / "cat.toml").write_text('base = "cat-demo"\n')
    assert main(["train", "--config", str(tmp_path / "cat.toml"), "--set", "data.size=8", "--dry-run"]) == 2
    assert "has no base" not in capsys.readouterr().err


def test_a_sandblaster_runs_resume_refuses_downpours_keys_as_such_not_as_a_change(tmp_path, capsys):
    """`--resume RUN --set train.lr=0.5` of a Sandblaster run said "the run was trained with 0.03; start a new run
    (--config RUN/config.toml --set ...)", a run that refuses the key too: it never reads it."""
    run = tmp_path / "sb"
    assert main(["train", "--config", "teacher-student", "--steps", "2", *SANDBLASTER, "--out", str(run)]) == 0
    capsys.readouterr()
    for argv, named in ((["--set", "train.lr=0.5"], "--set train.lr: Downpour's"),
                        (["--compensation", "dc-asgd"], "--compensation: Downpour's")):
        assert main(["train", "--resume", str(run), *argv]) == 2
        err = capsys.readouterr().err
        assert named in err and "the run was trained with" not in err
    assert main(["train", "--resume", str(run), "--set", "sandblaster.history=3"]) == 2   # read: a change, as before
    assert "cannot resume with sandblaster.history = 3" in capsys.readouterr().err


@pytest.mark.parametrize("delay, named", [("straggler:5:10", "is not read there: write straggler:0:10, or use --runner "
                                                             "simulated; it runs as straggler:0:10"),
                                          ("straggler:0:0.5", "only sleeps FACTOR - 1 times")])
def test_a_dry_run_says_the_ray_straggler_a_config_file_sets_as_the_run_warns_of_it(tmp_path, capsys, delay, named):
    """The flags are refused; a file's straggler is taken, and the run WARNs at its start that T (or FACTOR < 1) is
    not read on Ray: its --dry-run said nothing of it."""
    (tmp_path / "sb.toml").write_text(f'base = "ufldl-sae"\n[cluster]\nrunner = "ray"\nalgorithm = "sandblaster"\n'
                                      f'workers = 2\ndelay = "{delay}"\n')
    assert main(["train", "--config", str(tmp_path / "sb.toml"), "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert f"downpour: the run would warn as it starts: cluster.delay = '{delay}': on Ray" in err and named in err
    (tmp_path / "ok.toml").write_text((tmp_path / "sb.toml").read_text().replace(delay, "straggler:0:10"))
    assert main(["train", "--config", str(tmp_path / "ok.toml"), "--dry-run"]) == 0
    assert "would warn" not in capsys.readouterr().err
