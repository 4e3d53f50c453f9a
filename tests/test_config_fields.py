"""Every declared choice, range and spec form of every config field is enforced where the config is
built, and every declared choice has an implementation behind it (table-driven over the dataclasses)."""
import dataclasses
import math

import pytest

from downpour.config import (AnalysisConfig, ClusterConfig, ConfigError, DataConfig, RunConfig, SandblasterConfig, TrainConfig,
                             load_config)
from downpour.settings import Interval, choices_of, parse_spec

from downpour.models.registry import list_models

# the run config's sections and every registered model family's config
SECTIONS = [RunConfig, DataConfig, TrainConfig, ClusterConfig, SandblasterConfig, AnalysisConfig,
            *sorted({e.family.config_class for e in list_models()}, key=lambda c: c.__name__)]


def _declared(key):
    return [(cls, f) for cls in SECTIONS for f in dataclasses.fields(cls) if f.metadata.get(key)]


def _key(cls, f):
    return f"{cls.section}.{f.name}" if cls.section else f.name


def test_the_table_is_not_empty():
    # a refactor that drops the metadata would make every test below pass vacuously
    assert len(_declared("choices")) >= 20 and len(_declared("within")) >= 50 and len(_declared("forms")) == 3
    assert all(cls.section for cls in SECTIONS[1:]) and len(SECTIONS) >= 11


@pytest.mark.parametrize("cls, f", _declared("choices"), ids=lambda x: getattr(x, "name", ""))
def test_every_choice_builds_and_anything_else_is_named(cls, f):
    for choice in f.metadata["choices"]:
        assert getattr(cls(**{f.name: choice}), f.name) == choice
    with pytest.raises(ConfigError, match=rf"{_key(cls, f)} must be one of .*got '{f.metadata['choices'][0]}x'"):
        cls(**{f.name: f.metadata["choices"][0] + "x"})


def _outside(interval: Interval, kind: type) -> list:
    step = 1 if kind is int else 1e-6
    out = [interval.low if interval.low_open else interval.low - step]
    if not math.isinf(interval.high):
        out.append(interval.high if interval.high_open else interval.high + step)
    return [kind(v) for v in out]


def _inside(interval: Interval, kind: type) -> list:
    step = 1 if kind is int else 1e-6
    out = [interval.low + step if interval.low_open else interval.low]
    if not math.isinf(interval.high):
        out.append(interval.high - step if interval.high_open else interval.high)
    return [kind(v) for v in out]


@pytest.mark.parametrize("cls, f", _declared("within"), ids=lambda x: getattr(x, "name", ""))
def test_every_range_holds_at_its_edges(cls, f):
    per_stage = isinstance(f.default, tuple)    # a per-stage list: the range holds for each element
    kind = type(f.default[0]) if per_stage else type(f.default)
    as_field = (lambda v: (*f.default[:-1], v)) if per_stage else (lambda v: v)
    for value in _inside(f.metadata["within"], kind):
        assert getattr(cls(**{f.name: as_field(value)}), f.name) == as_field(value)
    for value in _outside(f.metadata["within"], kind):
        with pytest.raises(ConfigError, match=rf"{_key(cls, f)} must be (>|in)"):
            cls(**{f.name: as_field(value)})


@pytest.mark.parametrize("cls, f", [(c, f) for c in SECTIONS for f in dataclasses.fields(c) if f.type == "float"],
                         ids=lambda x: getattr(x, "name", ""))
def test_no_float_field_takes_nan_or_infinity(cls, f):
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ConfigError, match=rf"{_key(cls, f)} must be"):
            cls(**{f.name: bad})


@pytest.mark.parametrize("cls, f", [(c, f) for c in SECTIONS for f in dataclasses.fields(c)
                                    if f.type in ("int", "float", "str", "bool")], ids=lambda x: getattr(x, "name", ""))
def test_every_typed_field_refuses_a_value_of_another_type(cls, f):
    wrong = [] if f.type == "float" else [1.5]     # an int for a float field is taken (and made a float)
    for bad in [*wrong, "text" if f.type != "str" else 3, [1]]:
        with pytest.raises(ConfigError, match=_key(cls, f)):
            cls(**{f.name: bad})


@pytest.mark.parametrize("key, good, bad", [
    ("consistency", {"async": (), "sync": (), "bounded:0": ("bounded", (0,)), "bounded:3": ("bounded", (3,))},
     ["bounded", "bounded:-1", "bounded:1.5", "bounded:x", "eventual", "sync:1"]),
    ("delay", {"constant:0": ("constant", (0.0,)), "uniform:1:2.5": ("uniform", (1.0, 2.5)),
               "exponential:2": ("exponential", (2.0,)), "straggler:1:5": ("straggler", (1.0, 5.0))},
     ["constant", "constant:-1", "exponential:nan", "exponential:inf", "uniform:1", "normal:1", "constant:1:2"]),
])
def test_spec_forms_parse_to_typed_arguments_and_refuse_the_rest(key, good, bad):
    forms = dataclasses.fields(ClusterConfig)[[f.name for f in dataclasses.fields(ClusterConfig)].index(key)].metadata["forms"]
    for text, want in good.items():
        spec = ClusterConfig(**{key: text}).spec(key)
        assert (spec.kind, spec.args) == (want or (text, ()))
        assert parse_spec(text, forms, key) == spec
    for text in bad:
        with pytest.raises(ConfigError, match=f"cluster.{key} '{text}'"):
            ClusterConfig(**{key: text})


def test_lfw_heldout_parses_to_a_fold_and_refuses_a_fold_past_its_count():
    assert DataConfig().lfw_fold() is None
    assert DataConfig(lfw_heldout="fold:4:5").lfw_fold() == (4, 5)
    for bad, words in [("fold:5:5", "fold I must be below K"), ("fold:0:1", "K must be in"), ("fold:1", "takes 2"),
                       ("fold:0:101", "K must be in"), ("folds:0:5", "did you mean 'fold'")]:
        with pytest.raises(ConfigError, match=f"data.lfw_heldout '{bad}'.*{words}"):
            DataConfig(lfw_heldout=bad)


def test_overrides_and_replace_are_checked_too_and_sections_are_frozen():
    with pytest.raises(ConfigError, match="cluster.delay 'exponential:nan'"):
        load_config("main", ["cluster.delay=exponential:nan"])
    with pytest.raises(ConfigError, match="train.lr must be > 0"):
        dataclasses.replace(load_config("main").train, lr=0.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        load_config("main").train.lr = 1.0
    assert load_config("main", ["analysis.probes=lfw, digits"]).analysis.probes == ["lfw", "digits"]


def test_every_declared_choice_has_an_implementation():
    from downpour.data.preprocess import WHITENERS
    from downpour.data.normalize import normalize
    from downpour.ps.compensation import COMPENSATIONS
    from downpour.ps.rules import RULES
    from downpour.config import CLUSTER_RUNNERS
    from downpour.runners import ALGORITHMS, RUNNERS
    from downpour.train.setup import OPTIMIZERS
    from downpour.models.autoencoder import _ACTIVATIONS, AutoencoderConfig
    import numpy as np

    assert set(OPTIMIZERS) == set(choices_of(TrainConfig, "optimizer"))
    assert set(RULES) == set(choices_of(ClusterConfig, "rule"))
    assert set(COMPENSATIONS) == set(choices_of(ClusterConfig, "compensation"))
    # a runner trains in this process (its RUNNERS entry) or is a cluster runner (ALGORITHMS'), never both
    assert set(RUNNERS) | set(CLUSTER_RUNNERS) == set(choices_of(ClusterConfig, "runner"))
    assert not set(RUNNERS) & set(CLUSTER_RUNNERS)
    assert set(ALGORITHMS) == set(choices_of(ClusterConfig, "algorithm"))
    assert set(_ACTIVATIONS) == set(choices_of(AutoencoderConfig, "activation"))
    assert {"none", *WHITENERS} == set(choices_of(DataConfig, "whiten"))
    x = np.random.default_rng(0).random((4, 1, 3, 3)).astype(np.float32)
    for mode in choices_of(DataConfig, "normalize"):
        assert normalize(x, mode)[0].shape == x.shape


def test_the_train_table_in_the_docs_gives_every_key_its_real_default():
    """docs/training.md had no [train] table: tensorboard and the defaults were written nowhere."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "training.md").read_text()
    table = text.split("The `[train]` section", 1)[1].split("\n\n", 2)[1]
    rows = {cells[1].strip("` "): cells[2].strip() for cells in (line.split("|") for line in table.splitlines()[2:])}
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.init and not f.name.startswith("_")}
    assert rows.keys() == defaults.keys()
    for key, default in defaults.items():
        assert rows[key] == (str(default).lower() if isinstance(default, bool) else str(default)), key


def test_the_cluster_table_in_the_docs_has_a_row_for_every_key():
    """docs/parameter-server.md's [cluster] table, "All settings", left out algorithm, partitions, momentum,
    grad_noise_relative, dc_lambda and shard_restarts: a user reading it for the keys never met them."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "parameter-server.md").read_text()
    table = text.split("## Settings", 1)[1].split("\n\n")[2]    # (the heading, its paragraph, the table)
    named = {key.strip(" `") for line in table.splitlines()[2:] for key in line.split("|")[1].split(",")}
    keys = {f.name for f in dataclasses.fields(ClusterConfig) if f.init and not f.name.startswith("_")}
    assert keys - named == set() and named - keys == set()
