"""The choice on images of one label: no AUC to rank by, so no unit to choose (refused, not a perfect unit)."""
import math

import numpy as np
import pytest

from downpour.analysis.choice import auc_scores, choice


def test_an_auc_without_one_of_the_classes_is_not_a_number():
    scores = np.array([[0.1, 3.0], [0.4, 2.0], [0.2, 1.0]])
    assert all(math.isnan(a) for a in auc_scores(scores, np.zeros(3)))          # was 0.0 (read as 1.0 the other way)
    assert all(math.isnan(a) for a in auc_scores(scores, np.ones(3)))
    assert auc_scores(scores, np.array([1, 0, 0])).tolist() == [0.0, 1.0]      # by hand: 0.1 < 0.4, 0.2; 3.0 > 2.0, 1.0


@pytest.mark.parametrize("label", [0, 1])
def test_a_choice_on_images_of_one_label_is_refused_by_name(label):
    scores = np.random.default_rng(0).normal(size=(5, 3))
    with pytest.raises(ValueError, match="both labels: got .* of label 1"):
        choice(scores, np.full(5, label))               # else it chooses unit 0 with selection AUC 1.0
