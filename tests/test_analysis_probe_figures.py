"""The accuracy table's linear probe on raw pixels reads each part's decision function once: its accuracy is
``Pipeline.score``'s, bit for bit, without ``score`` computing the decision a second time.
Counts calls, not time."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.pipeline import Pipeline

from downpour.analysis import baselines, selectivity
from downpour.analysis.labelled import LabelledSet
from downpour.models.base import FeatureModel


class _Pixels(FeatureModel):
    """Its units are the image's pixels."""

    def forward(self, x):
        return x.flatten(1)


@pytest.mark.parametrize("seed", range(6))
def test_the_probes_accuracy_and_auc_are_scores_and_its_decisions_bit_for_bit(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(60, 25))
    y = (x[:, 0] + rng.normal(scale=2.0, size=60) > 0).astype(np.int64)
    select, test = np.arange(0, 60, 2), np.arange(1, 60, 2)
    probe = baselines.probe(x[select], y[select])
    for rows in (select, test):
        accuracy, auc = selectivity._probe_figures(probe, x[rows], y[rows])
        assert accuracy == float(probe.score(x[rows], y[rows]))
        assert auc == selectivity.test_auc(probe.decision_function(x[rows]), y[rows])


def test_the_table_asks_each_split_part_for_its_decision_once(monkeypatch):
    """Two decisions per split, and no score (not four: score's two, then the AUC's two)."""
    calls = {"decision_function": 0, "score": 0}
    for name in calls:
        original = getattr(Pipeline, name)

        def counted(self, *args, _name=name, _original=original, **kwargs):
            calls[_name] += 1
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(Pipeline, name, counted)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(40, 1, 4, 4, generator=g)
    y = (x[:, 0, 0, 0] > 0.5).numpy().astype(np.int64)
    data = LabelledSet("squares", x, y, ["other", "bright corner"])
    table = selectivity.face_neuron_table(_Pixels(), data, random_model=_Pixels(), n_random_filters=10)
    assert calls == {"decision_function": 2, "score": 0}
    row = table["rows"][-1]
    assert row["method"].startswith("linear probe") and 0.0 <= row["test_accuracy"] <= 1.0
