"""The `downpour` command as a user types it: listings, config errors, a tiny train and resume."""
import json
import re
from types import SimpleNamespace

import pytest
import torch

from downpour.cli import SHORTHANDS, build_parser, main
from downpour.cli_train import _overrides
from downpour.cli_analyze import analysis_overrides
from downpour.config import ConfigError, load_config
from downpour.train.json_digest import rewrite_json

pytestmark = pytest.mark.usefixtures("one_thread")   # (its trainings and analyses run in this process)

TINY = ["--config", "ufldl-sae", "--steps", "20", "--set", "data.samples=500", "--set", "train.tensorboard=false",
        "--set", "train.log_every=5", "--runner", "local", "--no-report"]


def test_models_and_presets_list_what_is_registered(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "cat-demo" in out and "ufldl-sae" in out
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    heads = [line for line in lines if not line.startswith(" ")]
    assert heads[0].startswith("cat-demo ") and len({h.index("model=") for h in heads}) == 1    # aligned columns
    assert all(lines[i + 1].startswith("    ") and lines[i + 1].strip() for i, line in enumerate(lines) if line in heads)
    main_job = lines.index(next(h for h in heads if h.startswith("main ")))
    assert "model=cat-demo" in lines[main_job] and "runner=ray" in lines[main_job]
    assert lines[main_job + 1].strip().startswith("The main job, `downpour train` with no arguments")
    assert "(Le et al. 2012) scaled to run" in out and "teacher-student  model=teacher-student" in out


def test_a_bad_override_is_named_with_the_nearest_key(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "r"), "--set", "train.step=5"]) == 2
    err = capsys.readouterr().err
    assert "train.step" in err and "steps" in err
    assert main(["train", "--out", str(tmp_path / "r"), "--set", "train.steps=many"]) == 2
    assert "train.steps" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()        # nothing half-made on a config error


@pytest.mark.parametrize("override, named", [
    ("model.mapz=[4,4]", "model.mapz"), ('train.optimizer="adamw"', "train.optimizer"),
    ('data.source="natrual"', "did you mean 'natural'"), ('cluster.consistency="bounded:x"', "bounded:x"),
    ("objective.kl=1", "unknown cost term 'kl'"), ('train.schedule="greedyy"', "train.schedule"),
    ("train.lr=0", "train.lr"), ('train.device="tpu"', "train.device"), ("train.lr=inf", "train.lr"),
    ("data.size=16", "on 1x16x16 samples"), ("seed=-1", "seed"), ("train.threads=-1", "train.threads"),
    ('objective.denoising.kind="gauss"', "'gauss'"), ("objective.cross_entropy=1.0", "needs 'logits'"),
    ('analysis.probes=["bogus"]', "analysis.probes"), ('data.source="folder"', "data.path"),
    ("data.size=80", "limit 4096"),        # ufldl-sae whitens: a 6400-square ZCA matrix
])
def test_every_config_mistake_is_caught_before_the_run_directory_exists(tmp_path, capsys, override, named):
    config = "ufldl-sae" if override.startswith("data.size=80") else "main"
    assert main(["train", "--config", config, "--out", str(tmp_path / "r"), "--set", override]) == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_address_implies_the_ray_runner():
    args = build_parser().parse_args(["train", "--address", "10.0.0.1:6379"])
    assert {("cluster.runner", "ray"), ("cluster.address", "10.0.0.1:6379")} <= set(_overrides(args))
    args = build_parser().parse_args(["train", "--address", "10.0.0.1:6379", "--runner", "simulated"])
    assert ("cluster.runner", "simulated") in _overrides(args)


def test_flags_pass_typed_and_a_string_flag_is_never_reparsed():
    args = build_parser().parse_args(["train", "--workers", "3", "--delay", "uniform:0:2", "--seed", "7",
                                      "--set", "train.lr=0.5"])
    assert ("cluster.workers", 3) in _overrides(args) and ("seed", 7) in _overrides(args)
    cfg = load_config("main", _overrides(args))
    assert cfg.cluster.workers == 3 and cfg.cluster.delay == "uniform:0:2" and cfg.seed == 7 and cfg.train.lr == 0.5
    # an address is a string even where TOML would read it as something else
    assert load_config("main", _overrides(build_parser().parse_args(["train", "--address", "1e5"]))).cluster.address == "1e5"


def test_train_takes_the_plans_partitions_flag():
    """`downpour plan --partitions 2` lays out a split replica; `downpour train --partitions 2` trains the same layout
    (else "unrecognized arguments: --partitions 2 (did you mean '--compensation'?)")."""
    args = build_parser().parse_args(["train", "--config", "cat-untied", "--runner", "simulated", "--partitions", "2"])
    assert ("cluster.partitions", 2) in _overrides(args)
    assert load_config("cat-untied", _overrides(args)).cluster.partitions == 2


@pytest.mark.parametrize("flag", [["--workers", "3"], ["--delay", "constant:2"], ["--compensation", "dc-asgd"],
                                  ["--consistency", "sync"], ["--n-push", "2"], ["--partitions", "2"]])
def test_a_cluster_flag_on_a_local_run_is_refused_not_ignored(tmp_path, capsys, flag):
    assert main(["train", "--config", "cat-demo", "--out", str(tmp_path / "r"), *flag]) == 2
    err = capsys.readouterr().err
    assert f"{flag[0]} only applies to the simulated" in err and "--runner simulated" in err
    assert not (tmp_path / "r").exists()


def test_train_then_resume_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 20
    for name in ("config.toml", "metrics.jsonl", "model.safetensors", "model.json"):
        assert (out / name).is_file(), name
    assert main(["train", "--resume", str(out), "--steps", "30"]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows][-2:] == [25, 30]
    assert main(["train", *TINY, "--out", str(out)]) == 2          # an existing run is never overwritten
    err = capsys.readouterr().err              # (a finished one is not told "resume it with --resume")
    assert "already holds a run; it is finished: `downpour report" in err and "--resume" not in err
    (out / "model.json").unlink()                                    # (as if stopped before its end)
    assert main(["train", *TINY, "--out", str(out)]) == 2
    assert "already holds a run; resume it with --resume or pick another --out" in capsys.readouterr().err


def test_analyze_overrides_are_typed_and_limited_to_analysis(tmp_path):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--steps", "5", "--out", str(out)]) == 0
    assert analysis_overrides(str(out), ["analysis.splits=3", "analysis.probes=['digits']"]) == {
        "splits": 3, "probes": ["digits"]}
    with pytest.raises(ConfigError, match=r"--set train.steps=3: downpour analyze only takes analysis"):
        analysis_overrides(str(out), ["train.steps=3"])
    with pytest.raises(ConfigError, match=r"did you mean --set analysis.splits=3\?"):   # (a way out named)
        analysis_overrides(str(out), ["splits=3"])
    with pytest.raises(ConfigError, match="analysis.split"):
        analysis_overrides(str(out), ["analysis.split=3"])


def test_resume_refuses_changes_that_make_another_run_and_keeps_the_config(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(out)]) == 0
    saved = (out / "config.toml").read_text()
    for override in ("model.hidden=30", 'cluster.runner="simulated"', "seed=3", "train.lr=0.5"):
        assert main(["train", "--resume", str(out), "--set", override]) == 2
        assert f"cannot resume with {override.split('=')[0]}" in capsys.readouterr().err
        assert (out / "config.toml").read_text() == saved
    # --report works on resume too (analysed at settings that cost seconds less: an analysis's own tests are elsewhere)
    fast = ["analysis.splits=1", "analysis.probes=[]", "analysis.stimulus_steps=5", "analysis.stimulus_restarts=1",
            "analysis.bootstrap=200", "analysis.control_draws=1", "analysis.random_filters=50"]
    assert main(["train", "--resume", str(out), "--steps", "25", "--report", *[a for s in fast for a in ("--set", s)]]) == 0
    assert (out / "report.html").is_file()


def test_a_run_refused_for_its_data_leaves_no_folder_and_runs_again_in_place(tmp_path, capsys, monkeypatch):
    """No readable image is found once the data is read, before the run folder is made (and the runs/NAME-TIME folder
    of a run without --out): else the folder stays, holding only config.toml (its --resume refused: "never started
    training"). A folder given empty stays (the user made it), empty."""
    import numpy as np
    from PIL import Image

    images, out = tmp_path / "images", tmp_path / "run"
    images.mkdir()
    (images / "broken.png").write_text("not an image")
    args = ["train", "--config", "ufldl-sae", "--runner", "local", "--steps", "5", "--no-report", "--out", str(out),
            "--set", 'data.source="folder"', "--set", f'data.path="{images}"', "--set", "data.samples=200"]
    assert main(args) == 2                         # no readable image: found once the data is read
    err = capsys.readouterr().err
    assert "images" in err and "removed" not in err and not out.exists()     # (read before the folder is made)
    out.mkdir()
    assert main(args) == 2 and out.is_dir() and not any(out.iterdir())
    monkeypatch.chdir(tmp_path)
    assert main(args[:args.index("--out")] + args[args.index("--out") + 2:]) == 2
    assert not (tmp_path / "runs").exists()     # (the runs/NAME-TIME folder made for it removed, and runs/ it made)
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray((rng.random((40, 40)) * 255).astype(np.uint8)).save(images / f"{i}.png")
    assert main(args) == 0                         # same command, same --out, once the cause is fixed
    assert main(args) == 2 and "already holds a run" in capsys.readouterr().err


def test_a_run_refused_in_its_runner_removes_the_parent_folders_its_out_made_and_none_that_were_there(
        tmp_path, capsys, monkeypatch):
    """A new run refused by its runner, after its folder is made, with --out a/b/c where a and b were not there: every
    folder the command made goes, deepest first (not c alone, a/b left behind); a parent that was there before stays.
    (The data are refused before the folder is made: that read left out here, the runner's own read refuses them.)"""
    monkeypatch.setattr("downpour.preflight.read_checked",
                        lambda cfg, resume=False, chosen=None, listed_at_start=None: None)
    images = tmp_path / "images"
    images.mkdir()
    (images / "broken.png").write_text("not an image")
    args = ["train", "--config", "ufldl-sae", "--runner", "local", "--steps", "5", "--no-report",
            "--set", 'data.source="folder"', "--set", f'data.path="{images}"', "--set", "data.samples=200"]
    new = tmp_path / "a" / "b" / "c"
    assert main([*args, "--out", str(new)]) == 2
    assert not (tmp_path / "a").exists()
    said = capsys.readouterr().err
    assert f"removed {new} and 2 folders made for it ({new.parent}, {new.parent.parent})" in said, said
    there = tmp_path / "there"
    there.mkdir()
    assert main([*args, "--out", str(there / "b" / "c")]) == 2
    assert there.is_dir() and list(there.iterdir()) == []


def test_dry_run_checks_and_prints_the_resolved_config_and_writes_nothing(tmp_path, capsys, monkeypatch):
    import tomllib

    monkeypatch.chdir(tmp_path)
    assert main(["train", "--dry-run", "--set", "train.lr=0.03"]) == 0
    cfg = tomllib.loads(capsys.readouterr().out)
    assert cfg["train"]["lr"] == 0.03 and cfg["model"]["maps"] == [8, 64] and cfg["model"]["pools"] == [3, 1]
    assert "pooled_l2" in cfg["objective"]
    assert cfg["cluster"]["runner"] == "ray" and list(tmp_path.iterdir()) == []
    assert main(["train", "--dry-run", "--set", "model.maps=[4]"]) == 2


@pytest.mark.parametrize("flags, named", [(["--runner", "ray", "--delay", "constant:2"], "--delay only applies to the simulated"),
                                          (["--runner", "simulated", "--address", "10.0.0.1:6379"], "--address only applies to the ray")])
def test_a_flag_of_another_runner_is_refused(tmp_path, capsys, flags, named):
    assert main(["train", "--config", "ufldl-sae", "--out", str(tmp_path / "r"), *flags]) == 2
    assert named in capsys.readouterr().err and not (tmp_path / "r").exists()


@pytest.mark.parametrize("command", [[], ["train"], ["crossfit"], ["analyze"], ["report"], ["study"], ["plan"]])
def test_help_is_plain_text(command, capsys):
    """The top help shows no reStructuredText marks of the module docstring: neither its literals ("The ``downpour``
    command") nor its roles (":mod:`~downpour.cli_analyze`")."""
    with pytest.raises(SystemExit) as done:
        main([*command, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "usage: downpour" in out and "``" not in out and not re.search(r":[a-z]+:`", out)


@pytest.mark.parametrize("command, says", [
    ("crossfit", "The face test on all 100 lfw faces: one run per fold"),
    ("train", "Train a model"), ("analyze", "What did a run learn"), ("report", "Write report.html for a run")])
def test_a_commands_own_help_says_what_it_does(command, says, capsys):
    """argparse shows a command's ``help`` only in the top list: `downpour crossfit --help` listed its flags and
    said nothing of what it does, where it writes, how it goes on, --folds' range or whose seed --seed is."""
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert says in out.split("options:")[0]
    if command == "crossfit":
        assert "OUT/crossfit.json" in out and "same --out goes on" in out and "2 to 100" in out
        assert "every fold's seed" in out

def test_every_argument_of_every_command_has_its_help():
    """`downpour analyze --help` and `downpour report --help` say what their one argument, `run`, is."""
    import argparse

    from downpour.cli import build_parser

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert [(name, a.dest) for name, command in commands.items() for a in command._actions if not a.help] == []


@pytest.mark.parametrize("argv, whole", [
    (["train", "--dry-run", "--set", "model.maps=[4,", "4]"], "--set 'model.maps=[4, 4]'"),
    (["train", "--set", "model.maps=[4,", "4,", "4]", "--steps", "3"], "--set 'model.maps=[4, 4, 4]'"),
    (["analyze", "RUN", "--set", 'analysis.probes=["my', 'faces"]'], """--set 'analysis.probes=["my faces"]'"""),
    (["train", "--set=model.maps=[4,", "4]"], "--set 'model.maps=[4, 4]'"),
    # a stray word after it is not the value's (not --set 'model.maps=[4, 4] junk')
    (["train", "--set", "model.maps=[4,", "4]", "--set", "train.lr=0.1", "junk"], "--set 'model.maps=[4, 4]')"),
])
def test_a_set_value_the_shell_split_at_a_space_is_said_so(capsys, argv, whole):
    """`--set model.maps=[4, 4]` unquoted was refused as "unrecognized arguments: 4]" alone."""
    with pytest.raises(SystemExit):
        main(argv)
    assert f"(the shell split a --set value at a space: quote it whole, {whole}" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["train", "--set", "model.maps=[4,4]", "stray"],
                                  ["train", "--set", "model.maps=[4,4]", "--set", "train.lr=0.1", "stray"],
                                  ["train", "--set", "data.path=my", "folder"]])
def test_a_stray_word_after_a_whole_set_value_is_not_said_split(capsys, argv):
    with pytest.raises(SystemExit):
        main(argv)
    err = capsys.readouterr().err
    assert "unrecognized arguments: " in err and "the shell split" not in err


def test_version_says_the_installed_packages_version(capsys):
    """`downpour --version` was refused ("the following arguments are required: command"): it says the version a
    bug report needs, as pip has it installed."""
    from importlib.metadata import version
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out == f"downpour {version('downpour')}\n"


def test_only_version_looks_the_version_up():
    """The parser does not take the version as a string when it is built: every command's start, `--help` too, would
    import importlib.metadata (about 45 ms) for it."""
    import subprocess
    import sys

    code = ("import contextlib, io, sys\nfrom downpour.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
            "    main(['--help'])\n"
            "print('importlib.metadata' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


@pytest.mark.parametrize("command", ["train", "crossfit"])
def test_every_shorthand_flag_s_help_names_the_key_it_sets(command):
    """`downpour train --help` gave --workers, --shards, --n-fetch, --n-push, --runner, --steps and --seed no words."""
    sub = next(a for a in build_parser()._actions if a.choices and command in a.choices).choices[command]
    helps = {a.dest: a.help or "" for a in sub._actions}
    for flag, key in SHORTHANDS.items():
        assert f"sets {key} (default: the config's)" in helps[flag], flag


def test_train_help_says_what_steps_and_workers_mean_for_sandblaster():
    """--steps and --workers say what they mean for Sandblaster L-BFGS too, whose steps are L-BFGS iterations
    (docs/sandblaster.md), not "training steps" and "Downpour workers": a user setting --steps 1500 to match
    Downpour's budget would ask for 1,500 line searches over the whole set."""
    sub = next(a for a in build_parser()._actions if a.choices and "train" in a.choices).choices["train"]
    helps = {a.dest: a.help or "" for a in sub._actions}
    assert "L-BFGS iterations with cluster.algorithm = sandblaster" in helps["steps"]
    assert "Sandblaster" in helps["workers"] and "FACTOR times slower" in helps["delay"]
    # Downpour's straggler pushes late, it computes as fast (ps/delays.py); Sandblaster on Ray reads only FACTOR
    assert "the last worker's delay T*FACTOR" in helps["delay"] and "on Ray takes straggler:0:FACTOR" in helps["delay"]


@pytest.mark.parametrize("runner", ["local", "simulated"])
def test_a_hand_edited_config_toml_is_refused_on_resume_naming_the_key_and_the_checkpoint(tmp_path, capsys, runner):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--runner", runner, "--out", str(out)]) == 0
    saved, metrics = (out / "config.toml").read_text(), (out / "metrics.jsonl").read_text()
    assert "lr = 0.05\n" not in saved
    edited = saved.replace("\nlr = ", "\nlr = 0.05\nold_lr = ", 1).replace("\nold_lr = ", "\n# was ", 1)
    (out / "config.toml").write_text(edited)
    assert main(["train", "--resume", str(out), "--steps", "25"]) == 2
    err = capsys.readouterr().err
    assert "config.toml" in err and "train.lr = 0.05" in err and "checkpoints" in err and "edited since" in err
    assert (out / "config.toml").read_text() == edited and (out / "metrics.jsonl").read_text() == metrics
    (out / "config.toml").write_text(saved.replace("log_every = 5", "log_every = 1"))   # a key a resume may change
    assert main(["train", "--resume", str(out), "--steps", "25"]) == 0
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()][-2:] == [24, 25]


SANDBLASTER = ["--config", "ufldl-sae", "--steps", "3", "--set", "data.samples=500", "--set", "train.tensorboard=false",
               "--runner", "simulated", "--set", "cluster.algorithm=sandblaster", "--set", "sandblaster.units=2", "--no-report"]


@pytest.mark.parametrize("args, stem, key", [
    ([*TINY, "--runner", "local"], "local", "model.weight"), ([*TINY, "--runner", "simulated"], "server", "shard0.params"),
    (SANDBLASTER, "sandblaster", "shard0.w")])
def test_a_checkpoint_holding_nan_weights_is_refused_on_resume_and_the_model_is_kept(tmp_path, capsys, args, stem, key):
    """Its steps would all be skipped, the resume would end 'finished' and write a model of NaNs over the run's."""
    from downpour.train.checkpoint import PAIR_KEY, load_state, save_state

    out = tmp_path / "run"
    assert main(["train", *args, "--out", str(out)]) == 0
    tensors, meta = load_state(out / "checkpoints" / stem)
    assert key in tensors, sorted(tensors)
    tensors[key] = tensors[key].clone().index_fill_(0, torch.tensor([0]), float("nan"))
    save_state(out / "checkpoints" / stem, tensors, {k: v for k, v in meta.items() if k != PAIR_KEY})   # a whole pair
    model = (out / "model.safetensors").read_bytes()
    assert main(["train", "--resume", str(out), "--steps", "25"]) != 0
    err = capsys.readouterr().err
    assert f"{stem}.safetensors" in err and key in err and "non-finite" in err
    assert (out / "model.safetensors").read_bytes() == model



def test_a_hand_edited_model_json_that_builds_another_network_is_refused_naming_both_files(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--steps", "5", "--out", str(out)]) == 0
    meta = json.loads((out / "model.json").read_text())
    assert meta["options"]["activation"] == "sigmoid"
    meta["options"]["activation"] = "relu"           # the same weights' shapes: it loaded, and another network was analysed
    rewrite_json(out / "model.json", meta)
    assert main(["analyze", str(out)]) != 0
    err = capsys.readouterr().err
    assert "model.json" in err and "model.activation = 'relu'" in err and "config.toml" in err and "'sigmoid'" in err


CAT = ["--config", "cat-demo", "--runner", "local", "--steps", "4", "--set", "data.size=16", "--set", "model.kernels=[5,3]",
       "--set", "model.maps=[2,2]", "--set", "train.tensorboard=false", "--no-report"]


def test_a_hand_edited_train_steps_of_a_greedy_run_is_refused_as_resume_steps_is(tmp_path, capsys):
    """train.steps may change on a resume, but not a greedy run's: its stages split the steps."""
    out = tmp_path / "run"
    assert main(["train", *CAT, "--out", str(out)]) == 0
    config = out / "config.toml"
    config.write_text(config.read_text().replace("\nsteps = 4\n", "\nsteps = 6\n", 1))
    assert main(["train", "--resume", str(out)]) == 2
    err = capsys.readouterr().err
    assert "train.steps = 6" in err and "trained with 4" in err and "edited since" in err


def test_a_cluster_run_of_a_preset_with_another_optimizer_says_the_servers_rule_applies(tmp_path, capsys):
    """ufldl-sae says Adam for the local runner; on the simulator its workers' update is cluster.rule (Adagrad), which
    was not said (cnn-digits: final loss 0.154 there against 0.021 locally)."""
    common = ["train", "--config", "ufldl-sae", "--steps", "2", "--set", "data.samples=100", "--set",
              "train.tensorboard=false", "--no-report", "--runner", "simulated"]
    assert main([*common, "--out", str(tmp_path / "a")]) == 0
    start = next(line for line in capsys.readouterr().err.splitlines() if line.startswith("downpour: training"))
    assert "(the server's update rule cluster.rule = 'adagrad' at train.lr = " in start
    assert "train.optimizer = 'adam' is the local runner's)" in start
    assert main([*common, "--set", "cluster.rule=adam", "--out", str(tmp_path / "b")]) == 0
    start = next(line for line in capsys.readouterr().err.splitlines() if line.startswith("downpour: training"))
    assert "cluster.rule" not in start



def _server_rates(cfg) -> list[float]:
    """The learning rate of each of two shards' rules, as a cluster run of ``cfg`` builds them."""
    from downpour.ps.setup import make_shards

    setup = SimpleNamespace(cfg=cfg, bounds=[(0, 3), (3, 5)], gate=SimpleNamespace(sync=False),
                            layout=SimpleNamespace(offsets=[0], shapes=[torch.Size([5])]), model=SimpleNamespace(n_stages=1),
                            stage_ranges={})
    return [shard.rule.lr for shard in make_shards(setup, torch.zeros(5), {0, 1})]


def test_a_presets_cluster_lr_is_its_servers_rate_on_a_cluster_run_and_its_local_run_is_unchanged(tmp_path, capsys):
    """cluster.lr (0: train.lr) is the rate of the server's rule, so cnn-digits, tuned for its local Adam, sets its cluster
    runs' rate without touching its local runs. There was no such key: the server learned at train.lr (0.01), and
    cnn-digits' simulated run ended at loss 0.124 where the local one ends at 0.021 (0.063 at 0.02)."""
    from downpour.config import load_config
    from downpour.train.setup import make_optimizer

    cfg = load_config("cnn-digits", [("cluster.runner", "simulated")])   # the preset's tuned cluster.lr
    assert _server_rates(cfg) == [0.02, 0.02] and cfg.cluster.rule == "adagrad"
    local = load_config("cnn-digits")
    assert local.train == cfg.train and (local.train.optimizer, local.train.lr) == ("adam", 0.01)
    optimizer = make_optimizer(local.train, [torch.nn.Parameter(torch.zeros(1))])
    assert type(optimizer).__name__ == "Adam" and optimizer.param_groups[0]["lr"] == 0.01
    plain = load_config("cnn-digits", [("cluster.runner", "simulated"), ("cluster.lr", 0.0)])
    assert _server_rates(plain) == [plain.train.lr] * 2
    common = ["train", "--config", "cnn-digits", "--steps", "2", "--set", "train.tensorboard=false", "--no-report",
              "--runner", "simulated"]
    assert main([*common, "--out", str(tmp_path / "a")]) == 0
    start = next(line for line in capsys.readouterr().err.splitlines() if line.startswith("downpour: training"))
    assert "cluster.rule = 'adagrad' at cluster.lr = 0.02; train.optimizer = 'adam' at train.lr = 0.01" in start
    assert main([*common, "--set", "train.lr=0.5", "--out", str(tmp_path / "b")]) == 2   # the server never reads it
    assert "--set train.lr: only cluster.lr = 0" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_the_start_line_names_what_was_asked_and_then_the_model(tmp_path, capsys, monkeypatch):
    """It names the preset, the file or the run folder resumed, then the model: the model alone ("training 'cat-demo'"
    for `downpour train`, the main preset) reads like the wrong preset."""
    def start() -> str:
        return next(line for line in capsys.readouterr().err.splitlines() if line.startswith("downpour: "))

    out = tmp_path / "run"
    assert main(["train", *TINY, "--steps", "5", "--out", str(out)]) == 0
    assert start().startswith("downpour: training the ufldl-sae preset (model 'ufldl-sae') with the local runner -> ")
    assert main(["train", *TINY, "--steps", "5", "--config", str(out / "config.toml"), "--out", str(tmp_path / "b")]) == 0
    assert start().startswith(f"downpour: training {out / 'config.toml'} (model 'ufldl-sae') with the local runner")
    (tmp_path / "main").write_text((out / "config.toml").read_text())     # a file named as the main preset is
    monkeypatch.chdir(tmp_path)                                          # (not "training main": the preset)
    assert main(["train", *TINY, "--steps", "5", "--config", "./main", "--out", str(tmp_path / "c")]) == 0
    assert start().startswith("downpour: training ./main (model 'ufldl-sae')")
    assert main(["train", "--resume", str(out), "--steps", "10"]) == 0
    assert start().startswith(f"downpour: resuming {out} (model 'ufldl-sae') with the local runner -> {out}")


def test_the_headline_names_a_folder_concepts_controls_not_a_face_test(tmp_path):
    """`downpour analyze RUN --set analysis.dataset=my-classes --set analysis.positive=cat` ended on "face test: On 3
    of 3 low-level-matched controls ... (phase-scrambled cat images, ...)": the report's section says "Controls for
    cat", and nothing about faces was tested."""
    from downpour.cli_analyze import headline

    said = "On 3 of 3 low-level-matched controls the learned unit meets the criterion."
    verdict = {"controls_verdict": {"sentences": [said]}}
    (tmp_path / "analysis.json").write_text(json.dumps(
        {"options": {"dataset": "/data/classes"}, "face_neuron": {**verdict, "controls_setup": {"concept": "cat"}}}))
    assert headline(tmp_path) == f"downpour: controls for cat: {said}\n"
    (tmp_path / "analysis.json").write_text(json.dumps({"options": {"dataset": "lfw"}, "face_neuron": verdict}))
    assert headline(tmp_path) == f"downpour: face test: {said}\n"


@pytest.mark.parametrize("argv, said", [
    (["study", "costs", "--quik"], "downpour study: error: unrecognized arguments: --quik (did you mean '--quick'?)"),
    (["train", "--stepz", "3"], "downpour train: error: unrecognized arguments: --stepz 3 (did you mean '--steps'?)"),
    (["study", "costs", "--jobz=2"], "downpour study: error: unrecognized arguments: --jobz=2 (did you mean '--jobs'?)"),
    (["-v", "train", "-v"], "downpour train: error: unrecognized arguments: -v"),
    # not matched with the "--" every flag shares: else "did you mean '--replicas'?"
    (["plan", "--frobnicate"], "downpour plan: error: unrecognized arguments: --frobnicate"),
    (["plan", "--bandwith", "3"], "downpour plan: error: unrecognized arguments: --bandwith 3 (did you mean '--bandwidth'?)"),
    # the plan's replicas are train's workers (else bare, and "did you mean '--cores'?")
    (["train", "--replicas", "3"],
     "downpour train: error: unrecognized arguments: --replicas 3 (this command calls them --workers)"),
    (["plan", "--workers", "3"], "downpour plan: error: unrecognized arguments: --workers 3 (this command calls them "
                                 "--replicas)"),
])
def test_a_flag_the_command_does_not_take_is_refused_by_it_naming_the_nearest(argv, said, capsys):
    """Not the top level's refusal, under `downpour [-h] [-v] [--version] {train,...}`: no command, no hint."""
    err = _refused(argv, capsys)
    assert err.rstrip().endswith(said) and f"usage: downpour {said.split()[1][:-1]} " in err


def _refused(argv: list[str], capsys) -> str:
    """What ``downpour ARGV`` prints on stderr, refused by argparse (exit status 2)."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("argv, said", [
    (["--quick", "study", "costs"], "unrecognized arguments: --quick (--quick is study's: give it after `downpour study`)"),
    (["--verbse", "train", "--stepz=3"], "unrecognized arguments: --verbse (did you mean '--verbose'?)"),
])
def test_a_flag_before_the_command_is_refused_by_the_top_level(argv, said, capsys):
    """Not the command's: `--quick study costs` would read "--quick (did you mean '--quick'?)" under study's usage."""
    err = _refused(argv, capsys)
    assert err.rstrip().endswith(f"downpour: error: {said}") and "usage: downpour [-h]" in err


def test_verbose_shows_a_user_errors_traceback_and_keeps_its_one_line_and_exit_status(capsys):
    """`downpour -v train --set train.stepz=3` raised out of main: a script saw exit status 1 (Python's, for an
    uncaught exception) where the same mistake without -v is 2, and the one line that names the key was gone."""
    assert main(["-v", "train", "--config", "cat-demo", "--set", "train.stepz=3", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "ConfigError" in err
    said = "downpour: error: --set train.stepz=3: unknown key 'train.stepz' (did you mean 'steps'?)"
    assert err.rstrip().endswith(said)


@pytest.mark.parametrize("both", [["--report", "--no-report"], ["--no-report", "--report"]])
def test_report_and_no_report_together_are_refused_not_the_last_one_taken(both, capsys):
    """Both were taken, the last one winning without a word (`--dry-run` printed the config with it)."""
    err = _refused(["train", "--config", "cat-demo", *both, "--dry-run"], capsys)
    assert err.rstrip().endswith("downpour train: error: --report and --no-report: give one")
    assert main(["train", "--config", "cat-demo", "--report", "--report", "--dry-run"]) == 0    # (the same twice: one)
