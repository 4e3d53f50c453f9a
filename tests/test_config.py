import pytest

from downpour.config import ConfigError, RunConfig, config_from_dict, config_to_dict, list_presets, load_config, save_config


def test_presets_load_and_main_inherits_cat_demo():
    assert {"main", "cat-demo", "ufldl-sae"} <= set(list_presets())
    cfg = load_config("main")
    assert cfg.model.name == "cat-demo" and cfg.data.size == 32 and cfg.analysis.report


def test_overrides_are_typed():
    cfg = load_config("cat-demo", ["train.steps=7", "train.lr=1", "data.source=faces", "model.maps=[4, 4]"])
    assert cfg.train.steps == 7 and cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.data.source == "faces" and cfg.model.options["maps"] == [4, 4]


@pytest.mark.parametrize("override, message", [
    ("train.stepz=3", "did you mean 'steps'"),
    ("trian.steps=3", "did you mean 'train'"),
    ("train.steps=many", "train.steps must be int"),
    ("train.steps", "section.key=value"),
    ("steps=3", "did you mean 'train.steps'"),   # a key given without its section: it suggested 'cluster'
    ("workers=3", "did you mean 'cluster.workers'"),
    # Python's True, and yes, were refused as "must be bool, got 'True' (str)", not said how to write one
    ("train.tensorboard=True", r"train.tensorboard must be bool, got 'True' \(str\); write true or false"),
    ("analysis.report=yes", "write true or false"),
    # TOML reads 1e3 and 8.0 as floats: the whole number meant is said (not only "got 1000.0 (float)")
    ("cluster.workers=1e3", r"cluster.workers must be int, got 1000.0 \(float\); write 1000$"),
    # and a spec's whole part, with the spec to write
    ("cluster.consistency=bounded:2.0", r"'bounded:2.0': K must be a whole number, got '2.0'; write bounded:2$"),
    ("cluster.consistency=bounded:2.5", r"K must be a whole number, got '2.5'$"),
    ("cluster.consistency=bounded:-2.0", r"K must be a whole number, got '-2.0'$"),   # (-2 is refused too)
    ("data.lfw_heldout=fold:1.0:5.0", r"I must be a whole number, got '1.0'; write fold:1:5$"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("cat-demo", [override])


@pytest.mark.parametrize("maps, message", [("[8.0, 8]", r"got \[8.0, 8\]; write \[8, 8\]$"),   # TOML's floats
                                           ("[true, 8]", r"got \[True, 8\]$")])              # (not a number)
def test_a_models_list_of_whole_numbers_given_as_floats_is_told_the_list_meant(maps, message):
    from downpour.models.registry import resolve

    with pytest.raises(ConfigError, match=f"model.maps must be a list of int, {message}"):
        resolve(load_config("cat-demo", [f"model.maps={maps}"]))


def test_unknown_preset_and_file(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'cat-demo'"):
        load_config("cat-dem")
    with pytest.raises(ConfigError, match="nope.toml': no such file"):
        load_config(str(tmp_path / "nope.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nsteps = 3\nbatch = 4\n")
    with pytest.raises(ConfigError, match=r"bad.toml.*'train.batch'.*batch_size"):
        load_config(str(bad))


def test_a_missing_dot_slash_file_is_named_as_given_not_as_the_preset(tmp_path, monkeypatch):
    """`--config ./main` reads the file main (the preset is `--config main`); without the file the error said
    "config file 'main' does not exist", the name of the preset, which does."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"'\./main': no such file"):
        load_config("./main")


def test_round_trip_through_toml(tmp_path):
    cfg = load_config("cat-demo", ["seed=5", "objective.l1=0.25"])
    save_config(cfg, tmp_path / "c.toml")
    again = load_config(str(tmp_path / "c.toml"))
    assert config_to_dict(again) == config_to_dict(cfg)
    assert config_from_dict(config_to_dict(cfg)).seed == 5
    assert isinstance(RunConfig().train.lr, float)


def test_a_child_files_cost_term_keeps_its_parents_other_keys(tmp_path):
    """`pooled_l2 = {eps = 0.5}` over cat-demo replaced the term: weight 0.1 (the registry's), not cat-demo's 0.2."""
    (tmp_path / "child.toml").write_text('base = "cat-demo"\n[objective]\npooled_l2 = {eps = 0.5}\n')
    parent = load_config("cat-demo").objective["pooled_l2"]
    assert load_config(str(tmp_path / "child.toml")).objective["pooled_l2"] == {**parent, "eps": 0.5}


def test_a_base_loop_through_dot_dot_and_an_unreadable_file_are_named(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.toml").write_text('base = "../d/a.toml"\n')       # was: "File name too long"
    with pytest.raises(ConfigError, match="inherit in a circle"):
        load_config(str(tmp_path / "d" / "a.toml"))
    with pytest.raises(ConfigError, match="cannot be read"):                 # was: OSError, a traceback
        load_config("/proc/self/mem")


def test_a_bare_name_base_is_never_the_working_directorys_file(tmp_path, monkeypatch):
    (tmp_path / "cfgs").mkdir()
    (tmp_path / "cfgs" / "mine.toml").write_text('base = "cat-demo"\n[train]\nsteps = 5\n')
    (tmp_path / "cat-demo").write_text("garbage [")                        # where the command runs
    monkeypatch.chdir(tmp_path)
    assert load_config("cfgs/mine.toml").model.name == "cat-demo"


def test_a_presets_name_is_the_preset_whatever_the_working_directory_holds(tmp_path, monkeypatch, capsys):
    """A file named main in the working directory replaced `downpour train`'s main job, and broke (or joined)
    the preset listing."""
    from downpour.cli import main
    shipped, listing = load_config("main"), main(["presets"]) == 0 and capsys.readouterr().out
    (tmp_path / "main").write_bytes(b"\x7fELF\x00 a binary")
    (tmp_path / "cat-demo").write_text("[train]\nsteps = 5\n")
    (tmp_path / "mine").write_text('base = "ufldl-sae"\n')
    monkeypatch.chdir(tmp_path)
    assert load_config("main") == shipped
    assert load_config("cat-demo").train.steps != 5
    assert load_config("./cat-demo").train.steps == 5                        # a path reads the file
    assert load_config("mine").model.name == "ufldl-sae"                     # a bare name no preset has: the file
    assert main(["presets"]) == 0 and capsys.readouterr().out == listing
    (tmp_path / "main").write_text("[train]\nsteps = 7\n")                 # a file's base beside it: the file
    (tmp_path / "a.toml").write_text('base = "./main"\n')
    (tmp_path / "b.toml").write_text('base = "main"\n')
    assert [load_config(name).train.steps for name in ("a.toml", "./a.toml", "b.toml", str(tmp_path / "a.toml"))] == [7] * 4


def test_a_set_of_base_and_a_seed_past_32_bits_are_refused():
    with pytest.raises(ConfigError, match="base is read from a config file only"):   # accepted, ignored
        load_config("ufldl-sae", ["base=cat-demo"])
    with pytest.raises(ConfigError, match=r"seed must be in \[0, 4294967295\]"):    # the simulator's seeds overflowed
        load_config("ufldl-sae", [("seed", 2**63)])


@pytest.mark.parametrize("item", ["train={steps=7}", "cluster={workers=4}", "sandblaster={units=4}", "objective={l1=0.1}"])
def test_a_whole_section_in_one_set_is_refused(item):
    """`--set train={steps=7}` passed the flag conflict check, `cluster={workers=4}` the local runner's refusal."""
    with pytest.raises(ConfigError, match="set a section's keys one by one"):
        load_config("ufldl-sae", [item])


def test_a_model_swapped_by_a_set_says_which_options_of_the_old_one_carry_over(caplog):
    """cat-demo's tile = 2 reached rica-local (default 0) without a word."""
    with caplog.at_level("WARNING", logger="downpour.config"):
        cfg = load_config("cat-demo", ["model.name=rica-local"])
    assert cfg.model.options["tile"] == 2 and "whose model options tile carry over" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="downpour.config"):
        load_config("cat-demo", ["model.name=rica-local", "model.tile=0"])     # set too: nothing carried unsaid
        load_config("cat-demo", ["model.tile=4"])
    assert "carry over" not in caplog.text


def test_a_swapped_models_carry_over_is_said_once_when_the_load_then_fails(capsys, caplog):
    """`--set model.name=cat-dem`: the warning came twice, the second from naming the key's origin for the error."""
    from downpour.cli import main

    with caplog.at_level("WARNING", logger="downpour.config"):
        assert main(["train", "--dry-run", "--set", "model.name=cat-dem"]) == 2
    assert caplog.text.count("replaces the model of") == 1 and "cat-dem" in capsys.readouterr().err


@pytest.mark.parametrize("overrides, message", [
    # one string was read letter by letter ("--set s: expected KEY=VALUE"), a dict by its keys ("--set seed: ...")
    ("seed=1", r"overrides: a list of 'section\.key=value' strings or \(key, value\) pairs, got a str 'seed=1': "
               r"\['seed=1'\]"),
    ({"seed": 1}, r"got a dict \{'seed': 1\}: list\(overrides\.items\(\)\)"),
    ([("seed",)], r"override \('seed',\): a \(key, value\) pair has 2 items, not 1"),   # was "not enough values to unpack"
])
def test_overrides_from_python_that_are_not_a_list_of_overrides_are_refused_as_such(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config("cat-demo", overrides)


def test_only_a_keyed_value_set_nowhere_is_said_to_be_a_default_of_a_base_less_file(tmp_path):
    """Every keyless refusal found after loading a base-less file (a resume's RUN/config.toml is one) had "(the value is
    a default: ... has no base = "PRESET" ... add e.g. base = "cat-demo")" appended, though no value was named."""
    from downpour.config import with_origin

    (tmp_path / "min.toml").write_text("[train]\nsteps = 5\n")
    keyless = with_origin(ConfigError("image folder 'imgs' holds no image files"), str(tmp_path / "min.toml"), [])
    assert str(keyless) == "image folder 'imgs' holds no image files"
    keyed = with_origin(ConfigError("model.pools: too large", key="model.pools"), str(tmp_path / "min.toml"), [])
    assert "model.pools is a default" in str(keyed) and 'add e.g. base = "cat-demo"' in str(keyed)
