"""The best single neuron's choice when candidates tie on their selection AUC: a rare concept (4 concept images to
choose on) leaves many candidates ranking all of them on top, and the tie goes to the best-separated one, not to the
lowest index; a choice that was not tied is the one it always was."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import mannwhitneyu
from sklearn.metrics import roc_auc_score

from downpour.analysis.headroom import headroom
from downpour.analysis.choice import auc_scores, choice
from downpour.analysis.selectivity import best_unit


def _auc_reference(scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each column's AUC as scipy's Mann-Whitney U of the concept images over the others, / (n1 n0): scikit-learn's
    roc_auc_score (a tie counts half) to its last bit of rounding, and exactly rounded (equal AUCs are equal floats).
    roc_auc_score a column at a time took 1 s of CPU for 300 columns, 2-3 s a test (2026-12-06)."""
    positive = y == 1
    return mannwhitneyu(scores[positive], scores[~positive], axis=0).statistic / (positive.sum() * (~positive).sum())


@pytest.mark.parametrize("seed", range(5))
def test_an_untied_choice_is_the_candidate_whose_selection_auc_is_furthest_from_half(seed):
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(12), np.zeros(28)].astype(int)
    scores = rng.standard_normal((40, 300)) + 0.8 * rng.standard_normal(300) * y[:, None]   # (40, 300)
    furthest = np.abs(_auc_reference(scores, y) - 0.5)
    assert (furthest == furthest.max()).sum() == 1                       # no tie at the top: the old rule's case
    k, sign, _, auc = choice(scores, y)[:4]
    assert k == int(np.argmax(furthest)) and auc == pytest.approx(0.5 + furthest.max())
    assert sign == (1 if roc_auc_score(y, scores[:, k]) > 0.5 else -1)
    # with a localizer's negatives: the best worst AUC, untied, as sklearn scores each set
    controls = rng.standard_normal((20, 300)) + 0.5
    faces = scores[y == 1]
    pooled = np.r_[np.ones(12), np.zeros(20)]
    other = _auc_reference(np.concatenate([faces, controls]), pooled)
    own = _auc_reference(scores, y)
    worst = np.where(own >= 0.5, np.minimum(own, other), np.minimum(1 - own, 1 - other))
    assert (worst == worst.max()).sum() == 1
    assert choice(scores, y, (controls,))[0] == int(np.argmax(worst))


def _rare(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """4 concept images among 74 per split, two candidates that rank all 4 on top of the selection split: column 0
    only just (each a hair above the other images' highest), column 1 by a wide gap (as a real detector does)."""
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(4), np.zeros(70), np.ones(4), np.zeros(70)].astype(int)
    rest = rng.standard_normal(140)
    near = np.r_[rest[:70].max() + [0.01, 0.02, 0.03, 0.04], rest[:70], rng.standard_normal(4), rest[70:]]
    far = np.r_[3.0 + rng.standard_normal(4) * 0.3, rng.standard_normal(70), 3.0 + rng.standard_normal(4) * 0.3,
                rng.standard_normal(70)]
    return np.column_stack([near, far]), y


def test_a_tie_on_selection_auc_goes_to_the_better_separated_candidate_not_the_lowest_index():
    scores, y = _rare(0)
    select, test = np.arange(74), np.arange(74, 148)
    assert _auc_reference(scores[select], y[select]).tolist() == [1.0, 1.0]          # tied
    chosen = best_unit(scores, y, select, test)
    assert chosen["unit"] == 1 and chosen["sign"] == 1 and chosen["selection_auc"] == 1.0   # lowest index took 0
    assert chosen["test_auc"] > 0.95 > roc_auc_score(y[test], scores[test, 0]) + 0.3


def test_a_tie_across_the_half_counts_as_a_tie_and_goes_to_the_better_separated_side():
    # column 0 ranks the concept low (AUC 0.05), column 1 high (0.95): equally far from 0.5, which floating point
    # writes as 0.45 and 0.44999999999999996, so the last bit chose column 0; column 1 has the wider gap (d 2.2, 1.2)
    y = np.r_[np.ones(5), np.zeros(20)].astype(int)
    down = -np.r_[np.linspace(1, 2, 5), np.linspace(0, 0.9, 19), 3.0]
    up = np.r_[np.linspace(5, 6, 5), np.linspace(0, 2.9, 19), 7.0]
    assert _auc_reference(np.column_stack([down, up]), y) == pytest.approx([0.05, 0.95])
    computed = auc_scores(np.column_stack([down, up]), y)                   # (5 x 95 / 100 in the choice's arithmetic)
    assert abs(computed[0] - 0.5) > abs(computed[1] - 0.5)
    k, sign, _, auc = choice(np.column_stack([down, up]), y)[:4]
    assert (k, sign) == (1, 1) and auc == pytest.approx(0.95)


def test_a_localizer_tie_goes_to_the_better_separated_candidate_and_headroom_ranks_it_first():
    scores, y = _rare(1)
    y = y[:74]
    scores = scores[:74]
    controls = np.column_stack([np.linspace(-2, scores[y == 1, 0].min() - 0.005, 30), np.linspace(-2, 1.5, 30)])
    assert choice(scores, y, (controls,))[0] == 1
    source = np.r_[np.arange(74), np.flatnonzero(y == 1).repeat(8)[:30]]
    room, = headroom([np.concatenate([scores, controls])], y, {"controls": np.arange(74, 104)}, source,
                     [(np.arange(74), np.arange(74))], ("controls",), localizer=("controls",))
    assert room["chosen_unit"] == 1
