"""downpour.models.data_fit: a model trained on data it does not expect is said at the preflight, once, naming both."""
import logging

from downpour.config import load_config
from downpour.models.data_fit import data_fit_warnings
from downpour.models.registry import create_model
from downpour.preflight import check_run_config


def _warnings(caplog, preset, *overrides):
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="downpour.models.data_fit"):
        check_run_config(load_config(preset, list(overrides)))
    return [r.getMessage() for r in caplog.records if r.name == "downpour.models.data_fit"]


def test_gaussian_visibles_on_unstandardised_digits_are_said(caplog):
    said = _warnings(caplog, "rbm-digits", "model.name=grbm-patches")
    assert len(said) == 1 and "model 'grbm-patches' has Gaussian visibles of fixed sigma = 1" in said[0]
    assert "data.source = 'digits' with data.normalize = 'none' and data.whiten = 'none'" in said[0]
    assert _warnings(caplog, "rbm-digits", "model.name=grbm-patches", "data.normalize=patch") == []
    assert _warnings(caplog, "rbm-digits") == []          # Bernoulli visibles on [0, 1]: as expected


def test_an_rnn_variant_whose_code_is_as_large_as_its_samples_is_said(caplog):
    said = _warnings(caplog, "rnn-rows", "model.name=rnn-rows-faces")
    assert len(said) == 1 and "model 'rnn-rows-faces' is sized for samples of 1x25x25" in said[0]
    assert "data.source = 'digits' at data.size = 8 gives samples of 1x8x8, no larger than its code of 64" in said[0]
    assert _warnings(caplog, "rnn-rows") == []
    # a GRU reads rows of any length: a variant on larger samples (the architectures study's crops) is a design
    cfg = load_config("rnn-rows", ["model.name=rnn-rows-faces"])
    assert data_fit_warnings(cfg, create_model("rnn-rows-faces", (1, 16, 16)), (1, 16, 16)) == []
