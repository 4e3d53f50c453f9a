"""Is a face unit missing from the network, or only from the choice? A diagnostic that peeks at the test.

    rows = headroom(responses, y, negatives, source, splits, controls=("phase_scrambled", ...))
    rows[s]["best_worst"], rows[s]["chosen_worst"], rows[s]["best_rank"]

The face test chooses one unit per split on the selection images (faces vs non-faces; with a
localizer, also against those faces' controls) and scores it unchanged on the test set's controls.
When it fails, two causes look alike: the network has no unit that tells faces from their
low-level-matched controls, or it has one and the choice passed it over. Here every unit is scored
on the split's test faces against each control (in the direction its selection AUC points), and its
*worst* control is kept. The best of those over
all units is what an oracle that looks at the test could reach: an upper bound (optimistic: the
maximum over hundreds of units on 20 faces), not a method, and never part of the verdict.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from downpour.analysis.choice import auc_scores, eligible, order


def headroom(responses: list[np.ndarray], y: np.ndarray, negatives: dict[str, np.ndarray], source: np.ndarray,
             splits: list[tuple[np.ndarray, np.ndarray]], controls: tuple[str, ...],
             localizer: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Per split: the chosen unit's worst-control AUC on the test faces against the best any unit reaches.

    responses: one (M, U) array per split (the units of that split's network on all M images);
    y, negatives, source, splits as :func:`~downpour.analysis.controls.score_controls` takes them;
    controls: the negative sets to take the worst of; ``localizer``: the sets the choice also used
    (:func:`~downpour.analysis.choice.order`), so the rank is the choice's own. Keys:
    ``chosen_unit``, ``chosen_worst``, ``best_unit``, ``best_worst``, ``best_rank`` (1 = the unit the
    selection chose first) and ``units_above_chosen`` (units whose worst control beats the chosen one's).
    """
    y = np.asarray(y).astype(np.int64)
    out = []
    for r, (select, test) in zip(responses, splits):
        against = tuple(r[negatives[n][np.isin(source[negatives[n]], select)]] for n in localizer)
        ranked, _, sign = order(r[select], y[select], against)              # (U,) each: the choice's ranking
        faces = test[y[test] == 1]
        in_test = np.isin(source, test)
        worst = np.full(r.shape[1], np.inf)
        for name in controls:
            rows = negatives[name][in_test[negatives[name]]]
            labels = np.r_[np.ones(len(faces)), np.zeros(len(rows))]
            auc = auc_scores(np.concatenate([r[faces], r[rows]]), labels)
            worst = np.minimum(worst, np.where(sign > 0, auc, 1.0 - auc))
        # a unit the choice could never take (not finite, or constant, on the selection), or not finite on the
        # test images it is scored on, is no headroom: an all-NaN unit read as worst AUC 1.0, the "best" unit
        usable = eligible(r[select], against) & np.isfinite(r[in_test]).all(axis=0)
        worst = np.where(usable, worst, -np.inf)
        chosen, best = int(ranked[0]), int(np.argmax(worst))
        out.append({"chosen_unit": chosen, "chosen_worst": float(worst[chosen]), "best_unit": best,
                    "best_worst": float(worst[best]), "best_rank": int(np.flatnonzero(ranked == best)[0]) + 1,
                    "units_above_chosen": int((worst > worst[chosen]).sum())})
    return out
