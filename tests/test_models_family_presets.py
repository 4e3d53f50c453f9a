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
