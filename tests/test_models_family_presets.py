"""The RBM, CNN and RNN presets train through the shared local runner into a normal run directory."""
import json

import pytest
import torch

from downpour.config import load_config
from downpour.train.loop import run_local
from downpour.train.rundir import RunDir

QUICK = ["train.steps=4", "train.log_every=2", "train.tensorboard=false"]


@pytest.mark.parametrize("preset, parts", [
    ("rbm-digits", {"contrastive_divergence", "metric/reconstruction_error", "metric/pseudo_likelihood"}),
    ("cnn-digits", {"cross_entropy"}),
    ("rnn-rows", {"reconstruction"}),
])
def test_preset_trains_into_a_run_directory(tmp_path, preset, parts):
    cfg = load_config(preset, QUICK)
    run = RunDir.create(tmp_path / preset, cfg)
    summary = run_local(cfg, run)
    assert summary["steps"] == 4
    rows = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4]
    assert parts <= set(rows[-1])
    # The logged loss is the cost alone: diagnostics (metric/...) are logged beside it, never summed in.
    assert rows[-1]["loss"] == pytest.approx(sum(v for k, v in rows[-1].items() if k in parts and not k.startswith("metric/")))
    meta = json.loads((run.path / "model.json").read_text())
    assert meta["model"] == preset and meta["step"] == 4
    model = RunDir.open(run.path).load_model()
    x = torch.rand(3, *meta["input_shape"])
    assert torch.isfinite(model(x)).all()


def test_persistent_chains_are_saved_with_the_rbm(tmp_path):
    cfg = load_config("rbm-digits", QUICK)
    run = RunDir.create(tmp_path / "rbm", cfg)
    run_local(cfg, run)
    model = RunDir.open(run.path).load_model()
    assert model.config.persistent and model.chains_h.shape == (model.config.chains, model.config.hidden)
    assert model.chains_h.sum() > 0        # the chains started all-off and have moved


@pytest.mark.parametrize("name, option, named", [
    ("rbm-digits", {"sigma": 0.1}, "model.sigma = 0.1 is not read: Bernoulli visibles"),
    ("rbm-digits-cd", {"chains": 7}, "model.chains = 7 is not read: CD restarts"),
    ("glimpse-rica", {"levels": 5}, "model.levels = 5 is not read: model.front = 'glimpse' has no pyramid"),
    ("pyramid-rica", {"glimpse_size": 3}, "model.glimpse_size = 3 is not read: model.front = 'pyramid'"),
    ("multires-none", {"pyramid": "gaussian"}, "model.pyramid = 'gaussian' is not read"),
    ("cat-demo", {"top_hidden": 5}, "model.top_hidden = 5 is not read: there is no top stage"),
    # bit for bit without effect: one level is the input, laplacian or gaussian
    ("pyramid-rica", {"levels": 1, "pyramid": "gaussian"}, "model.pyramid = 'gaussian' is not read: model.levels = 1"),
    # the bound draws weights that a filled first layer overwrites, and a tied decoder has none
    ("tica-8x8", {"first_layer": "gabor-init", "init_scale": 5.0}, "model.init_scale = 5.0 is not read: model.first_layer"),
    ("ufldl-sae", {"first_layer": "random", "decoder": "tied", "init_scale": 5.0}, "model.init_scale = 5.0 is not read"),
])
def test_an_option_the_model_would_not_read_is_refused_naming_it(name, option, named):
    """Accepted, each would do nothing: a run that says it used sigma 0.1 would use none."""
    from downpour.errors import ConfigError
    from downpour.models.registry import create_model

    with pytest.raises(ConfigError, match=named):
        create_model(name, **option)


@pytest.mark.parametrize("name, option, reset", [
    ("rbm-digits", {"persistent": False}, {"chains": 64}),          # the variant's PCD chains (32): CD reads none
    ("rica-local", {"encoder": "dense"}, {"kernel_size": 8}),       # its local receptive field (6)
])
def test_switching_off_what_reads_a_variants_own_option_resets_that_option(name, option, reset):
    """`--set model.persistent=false` on rbm-digits was refused as "model.chains = 32 is not read", a key the
    user never set (the variant had), and could only be passed by setting chains to a value nothing reads."""
    from downpour.errors import ConfigError
    from downpour.models.registry import create_model, model_entry

    assert all(getattr(model_entry(name).config, k) != v for k, v in reset.items())   # the variant sets them
    model = create_model(name, **option)
    assert all(getattr(model.config, k) == v for k, v in reset.items())   # the defaults: nothing reads them
    key, value = next(iter(reset.items()))
    with pytest.raises(ConfigError, match=f"model.{key} = {value + 1} is not read"):    # set by the run: refused
        create_model(name, **option, **{key: value + 1})


def test_a_resolved_config_records_the_reset_so_its_resume_reads_the_same(capsys):
    import tomllib

    from downpour.cli import main

    assert main(["train", "--config", "rbm-digits", "--set", "model.persistent=false", "--dry-run"]) == 0
    model = tomllib.loads(capsys.readouterr().out)["model"]
    assert model["persistent"] is False and model["chains"] == 64


@pytest.mark.parametrize("name, words", [("rnn-rows", "an RNN has no image filters"),
                                         ("rbm-digits", "the RBM's weights"), ("cnn-digits", None)])
def test_the_report_says_what_a_models_first_layer_filters_are_where_the_words_alone_mislead(name, words):
    """rnn-rows' report says its filters are its GRU's input weights, one image row each: "First-layer filters: 64
    filters of shape 1×1×8" alone under a picture of 64 strips says nothing of what they are."""
    import html

    from downpour.analysis.report import _filters
    from downpour.analysis.filter_stats import filter_stats
    from downpour.models.registry import create_model

    model = create_model(name)
    stats, _ = filter_stats(model, model.first_layer_filters().numpy(), 0)
    said = html.unescape(_filters(stats))
    if words is None:
        # (no key at all: a model without the words, the main job's cat network among them, writes the analysis.json
        # it wrote before 2026-12-06, not one with "what": null added)
        assert "what" not in stats and "What they are" not in said
    else:
        assert words in stats["what"] and said.startswith(f'<p class="note">What they are: {words}')


def test_an_rbms_filters_are_not_called_whole_object_templates_on_image_patches():
    """An RBM's unit spans its whole input: on the 8x8 digits a whole digit, on grbm-patches' natural-image patches a
    patch filter. Not every RBM's report says "whole-object templates, not local filters"."""
    from downpour.analysis.filter_stats import filter_stats
    from downpour.models.registry import create_model

    model = create_model("grbm-patches")
    what = filter_stats(model, model.first_layer_filters().numpy(), 0)[0]["what"]
    assert "whole-object templates" not in what and "patch filters" in what and "whole-digit templates when" in what
