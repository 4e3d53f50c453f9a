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
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("cat-demo", [override])


def test_unknown_preset_and_file(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'cat-demo'"):
        load_config("cat-dem")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "nope.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nsteps = 3\nbatch = 4\n")
    with pytest.raises(ConfigError, match=r"bad.toml.*'train.batch'.*batch_size"):
        load_config(str(bad))


def test_round_trip_through_toml(tmp_path):
    cfg = load_config("cat-demo", ["seed=5", "objective.l1=0.25"])
    save_config(cfg, tmp_path / "c.toml")
    again = load_config(str(tmp_path / "c.toml"))
    assert config_to_dict(again) == config_to_dict(cfg)
    assert config_from_dict(config_to_dict(cfg)).seed == 5
    assert isinstance(RunConfig().train.lr, float)
