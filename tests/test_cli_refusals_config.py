"""What the command refuses, and says so, of where a config comes from and how it is set: config sources (a folder,
a file's ``base``), dotted cost-term overrides, flags that would be ignored, a bad --set or --config named as typed,
a flag and a set that disagree, an error naming the file or flag behind it."""
import pytest

from downpour.cli import main
from downpour.config import ConfigError, load_config
from downpour.models.registry import resolve

pytestmark = pytest.mark.usefixtures("one_thread")   # (its trainings run in this process)


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


def test_a_refused_value_set_twice_names_the_set_flag_that_took_effect(capsys):
    """The last --set of a key is the one used; the refusal named the first (`--set model.tile=8` of a refused abc)."""
    assert main(["models", "--footprint", "cat-demo", "--set", "model.tile=8", "--set", "model.tile=abc"]) == 2
    assert "downpour: error: --set model.tile=abc: model 'cat-demo': " in capsys.readouterr().err


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


def test_a_name_that_reads_as_a_date_is_told_how_to_quote_it(capsys):
    assert main(["train", "--dry-run", "--set", "data.source=folder", "--set", "data.path=2024-06-01"]) == 2
    assert """quoted: --set 'data.path="2024-06-01"'""" in capsys.readouterr().err


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


@pytest.mark.parametrize("item", ["analysis.dataset=nosuch", "analysis.poses=/no/such/folder", "model.name=cat-dem"])
def test_an_error_names_the_set_that_caused_it(capsys, item):
    """These three named the value but not the --set (the others' errors did)."""
    assert main(["train", "--config", "ufldl-sae", "--runner", "local", "--dry-run", "--set", item]) == 2
    assert f"--set {item}: " in capsys.readouterr().err


def test_an_error_about_a_cost_terms_key_names_what_set_that_key(tmp_path, capsys):
    """The weight came from the file, and the error named the --set of another key of the same term."""
    (tmp_path / "negw.toml").write_text('base = "cat-demo"\n[objective]\npooled_l2 = {weight = -1.0}\n')
    argv = ["train", "--config", str(tmp_path / "negw.toml"), "--runner", "local", "--dry-run"]
    assert main([*argv, "--set", "objective.pooled_l2.eps=0.5"]) == 2
    assert capsys.readouterr().err.startswith(f"downpour: error: {tmp_path / 'negw.toml'}: [objective]")
    assert main([*argv, "--set", "objective.pooled_l2.weight=-2"]) == 2
    assert "--set objective.pooled_l2.weight=-2: [objective]" in capsys.readouterr().err


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
