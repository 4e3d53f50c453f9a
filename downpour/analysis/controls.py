"""Choose each method once, on faces vs one kind of negative; score it unchanged on every negative set.

Notation (shapes in the comments):
    n   held-out *source* images (faces and non-faces, labels ``y``); rows 0..n-1 of every score matrix
    M   all scored images: the n sources, then every control image; ``source[r]`` is the source image
        row r was built from (a source's own index for rows < n)
    K   a method's candidates (a layer's units, pixels, filters; 1 for a scalar statistic)
    S   seeded selection/test splits of the sources; B bootstrap replicates

Per split and method the candidate and its sign are chosen once, on the selection sources (faces vs
non-faces, by the AUC furthest from 0.5; the sign is the side it falls on), the accuracy threshold
is the best one for that sign on the same images. The rule is then scored, unchanged, on the test
faces against each negative set restricted to the test split: a control counts only if it was built
from a test face. Choosing per negative set would be a different, easier test (a single eye pixel
tells upright from inverted faces).

Bootstrap intervals (percentile, 95%). A replicate draws one vector of multinomial weights over the
source images (faces and non-faces resampled separately, so each class keeps its size), shared by
every split; a control image carries the weight of the face it was built from. Its AUC is the
split-average of weighted Mann-Whitney AUCs, with each split's choices held fixed. So the interval
covers which images happened to be held out (and the controls made of them); it does *not* cover
selection variability (averaged over splits, never resampled), the seeds that built the controls
(phase noise, which crops), or training (another run learns other units).

Why it is fast: per split and negative set each method's test comparisons are a small matrix
H (K_pos, K_neg) of 1 / 0.5 / 0; all replicates' weighted AUCs are then one batched product
(W_pos @ H) · W_neg, (B, p) x (M_methods, p, q) -> (M_methods, B, q), summed over q.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Union

import numpy as np

from downpour._names import plural
from downpour.analysis.choice import choice, tie_verdict, tied_figures

# A method's responses: (M, K) fixed; one (M, K) per split (cross-fitting: each split's own network);
# or fitted per split: selection source indices -> (M, K).
Responses = Union[np.ndarray, list, Callable[[np.ndarray], np.ndarray]]


def _test_sizes(per_split: list[tuple[int, int]]) -> dict[str, Any]:
    faces, negatives = zip(*per_split)
    return {"test_positives": max(faces), "test_negatives": max(negatives),
            "test_positives_range": [min(faces), max(faces)], "test_negatives_range": [min(negatives), max(negatives)]}


# Two scores this close, relative to their size, are one value computed along two paths: a statistic a control
# keeps by construction (the mean intensity or contrast of a phase-scrambled, block-shuffled or spectrum-matched
# copy) differs from its face's by float32 rounding, a few ulps (1.2e-7 each). At 1e-9 some such pairs still split
# (main job, mean intensity vs phase-scrambled 0.500 [0.498, 0.502]); at 1e-6 all do ([0.500, 0.500]), and the
# learned unit's AUCs and intervals did not move.
TIE = 1e-6


def comparisons(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Mann-Whitney kernel: (..., p) and (..., q) scores -> (..., p, q) with 1 (pos higher), 0.5 (tie, within
    :data:`TIE` of their size), 0. (With exact ties only, a face and its own control would score 1 or 0 on rounding
    noise, and a 4-image concept's mean intensity read 0.500 [0.239, 0.743] against phase-scrambled copies of
    itself.)"""
    a, b = pos[..., :, None], neg[..., None, :]
    diff = a - b
    tied = np.abs(diff) <= TIE * np.maximum(np.abs(a), np.abs(b))
    return (diff > 0) * ~tied + 0.5 * tied


CHUNK = 4_000_000     # tied units x faces x negatives compared at once (32 MB of float64)


def tied_aucs(scores: np.ndarray, units: np.ndarray, signs: np.ndarray, faces: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(T,) the test AUC of each of ``units`` (the tied set, each in its own sign's direction) for (M, K) ``scores``,
    faces ``faces`` against negatives ``rows`` (rows of ``scores``): the kernel the chosen unit is scored with
    (:func:`comparisons`), a chunk of units at a time."""
    v = (scores[:, units] * signs).T                                             # (T, M)
    step = max(1, CHUNK // max(len(faces) * len(rows), 1))
    return np.concatenate([comparisons(v[i:i + step][:, faces], v[i:i + step][:, rows]).mean(axis=(1, 2))
                           for i in range(0, len(v), step)])


TIE_REPLICATES = 200    # replicates a tie's chance range is drawn from (the first of the row's): its 95% point


def tie_of(scores: np.ndarray, units: np.ndarray, signs: np.ndarray, faces: np.ndarray, rows: np.ndarray,
           w_pos: np.ndarray, w_neg: np.ndarray, own: np.ndarray | None = None) -> dict[str, Any]:
    """A tied set's row keys on one test split (:func:`~downpour.analysis.choice.tie_verdict`): its units' test AUCs
    (:func:`tied_aucs`) against their range over the split's bootstrap replicates (:func:`ranked_aucs`, the first
    :data:`TIE_REPLICATES` of the (B, p) / (B, q) weights ``w_pos`` / ``w_neg``), and ``aucs``, those test AUCs."""
    aucs = tied_aucs(scores, units, signs, faces, rows)
    v = (scores[:, units] * signs).T                                             # (T, M)
    reps = (ranked_aucs(v[:, faces], v[:, rows], w_pos[:TIE_REPLICATES], w_neg[:TIE_REPLICATES], own)
            if len(units) > 1 else np.zeros((1, 1)))
    return {**tie_verdict(aucs, reps), "aucs": aucs}


def ties_once(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, dict[str, list[int]]]]:
    """:func:`score_controls`' rows without their ``tied_units`` / ``tied_signs``, and those once per method:
    ``{method: {"units", "signs"}}`` (analysis.json's ``controls_ties``; none in one written before 2026-12-05). A
    method's tie is one choice, the same in every negative set's row (a 5,000-unit layer's 929 tied units were written 5
    times over); a row keeps its ``tied`` count, and its ``method`` names its entry (:func:`tied_set` reads either
    form)."""
    ties: dict[str, dict[str, list[int]]] = {}
    out = []
    for row in rows:
        row = dict(row)
        got = {"units": row.pop("tied_units"), "signs": row.pop("tied_signs")}
        if ties.setdefault(row["method"], got) != got:      # (one choice per method: never, unless that changes)
            raise ValueError(f"method {row['method']!r}: its rows hold different tied sets")
        out.append(row)
    return out, ties


def tied_set(ties: dict[str, Any] | None, row: dict[str, Any]) -> tuple[list[int], list[int]]:
    """(units, signs) tied at the top of ``row``'s choice, the chosen unit first: from ``ties`` (``controls_ties``,
    :func:`ties_once`), or from the row itself (analysis.json before 2026-12-05)."""
    if "tied_units" in row:
        return row["tied_units"], row["tied_signs"]
    got = (ties or {})[row["method"]]
    return got["units"], got["signs"]


def bootstrap_weights(y: np.ndarray, replicates: int, rng: np.random.Generator) -> np.ndarray:
    """(B, n) multinomial counts, each class resampled within itself (class sizes kept)."""
    weights = np.zeros((replicates, len(y)))
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        weights[:, members] = rng.multinomial(len(members), np.full(len(members), 1.0 / len(members)), size=replicates)
    return weights


def weighted_auc(h: np.ndarray, w_pos: np.ndarray, w_neg: np.ndarray, own: np.ndarray | None = None) -> np.ndarray:
    """Weighted Mann-Whitney AUC of every method for every replicate.

    h: (methods, p, q) comparisons; w_pos (B, p), w_neg (B, q) -> (methods, B). A replicate whose
    positives or negatives all have weight 0 gets NaN (left out of the percentiles). ``own`` (p, q):
    the pairs of a face and a control built from it, which share one draw w. A pair weighs w_pos * w_neg,
    but an own pair weighs w, not w * w: a face drawn k times brings its own controls k times, one pair per
    copy (the other k * (k - 1) would compare a copy with its twin's controls, pairs no sample of distinct
    faces holds). With w * w, whose mean is about 2 where any other pair's is 1, the replicates leant to the
    own pairs: a face and its own control are the likeliest to be alike (gradient energy against phase-scrambled
    faces, a cross-fit of 5 folds: AUC 0.291, interval [0.237, 0.314], centred 0.016 below it).
    """
    num = (np.matmul(w_pos, h) * w_neg).sum(axis=-1)                        # (methods, B)
    i, j = np.nonzero(own) if own is not None else ((), ())
    return _own_pairs(num, h[:, i, j], w_pos, w_neg, i, j)


def _own_pairs(num: np.ndarray, h_own: np.ndarray, w_pos: np.ndarray, w_neg: np.ndarray, i: Any, j: Any) -> np.ndarray:
    """(methods, B) weighted AUCs from their numerators ``num``, the own pairs (``i``, ``j``; their comparisons
    ``h_own`` (methods, pairs)) weighing w, not w * w (:func:`weighted_auc`); NaN where a class has no weight."""
    den = w_pos.sum(axis=1) * w_neg.sum(axis=1)                            # (B,)
    if len(i):
        extra = w_pos[:, i] * (w_neg[:, j] - 1.0)                          # (B, pairs): w * w - w, with w = w_neg
        num = num - h_own @ extra.T
        den = den - extra.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def ranked_aucs(pos: np.ndarray, neg: np.ndarray, w_pos: np.ndarray, w_neg: np.ndarray,
                own: np.ndarray | None = None, tie: float = TIE) -> np.ndarray:
    """(T, B) :func:`weighted_auc` of T units, their (T, p) scores of the faces ``pos`` and (T, q) of the negatives
    ``neg``, by ranks, not pairs: each unit's scores sorted once, every replicate's negative weight summed below each
    face, O(B T (p + q)) where the pairs are O(B T p q) (bench/tie_null.py: 0.1-0.8x the pairs' time). Scores
    within ``tie`` of their size are tied (the kernel of :func:`comparisons`, merged along the sorted order)."""
    lo, hi, negatives = _runs(pos, neg, tie)
    num = _below_weights(lo, hi, negatives, w_pos, w_neg)
    t = len(pos)
    i, j = np.nonzero(own) if own is not None else ((), ())
    h_own = comparisons(pos[:, i][..., None], neg[:, j][..., None])[..., 0, 0] if len(i) else np.zeros((t, 0))
    return _own_pairs(num, h_own, w_pos, w_neg, i, j)


def _runs(pos: np.ndarray, neg: np.ndarray, tie: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`ranked_aucs`' ranks: each unit's (T, p) faces ``pos`` and (T, q) negatives ``neg`` sorted together; for
    each face, how many negatives sort below its tied run's start and below its stop (``lo``, ``hi``, (T, p)), and
    each unit's negatives in sorted order (T, q)."""
    t, p = pos.shape
    v = np.concatenate([pos, neg], axis=1)                                        # (T, n): the faces first
    n = v.shape[1]
    order = np.argsort(v, axis=1, kind="stable")
    s = np.take_along_axis(v, order, axis=1)
    opens = np.ones((t, n), dtype=bool)                                           # a tied run starts here
    opens[:, 1:] = s[:, 1:] - s[:, :-1] > tie * np.maximum(np.abs(s[:, 1:]), np.abs(s[:, :-1]))
    at = np.arange(n)
    start = np.maximum.accumulate(np.where(opens, at, 0), axis=1)                 # (T, n) its run's first position
    closes = np.ones((t, n), dtype=bool)                                          # ... and ends here
    closes[:, :-1] = opens[:, 1:]
    stop = np.minimum.accumulate(np.where(closes, at + 1, n)[:, ::-1], axis=1)[:, ::-1]   # ... and one past its last
    where = np.argsort(order, axis=1)[:, :p]                                     # (T, p) each face's sorted position
    is_neg = order >= p
    below_run = np.zeros((t, n + 1), dtype=np.int64)                              # negatives before each position
    np.cumsum(is_neg, axis=1, out=below_run[:, 1:])
    # each face's run: how many negatives sort below its start and below its stop, and the negatives in sorted order
    lo = np.take_along_axis(below_run, np.take_along_axis(start, where, axis=1), axis=1)       # (T, p)
    hi = np.take_along_axis(below_run, np.take_along_axis(stop, where, axis=1), axis=1)
    negatives = order[is_neg].reshape(t, n - p) - p                               # (T, q)
    return lo, hi, negatives


def _below_weights(lo: np.ndarray, hi: np.ndarray, negatives: np.ndarray, w_pos: np.ndarray,
                   w_neg: np.ndarray) -> np.ndarray:
    """(T, B) :func:`ranked_aucs`' numerators from :func:`_runs`: per replicate, the faces' weights x the negatives'
    weight each face outscores (below its run, and half of those in it)."""
    t, q = negatives.shape
    # whole counts (bootstrap_weights') sum to half-integers of at most a replicate's (faces' weight) x (negatives'
    # weight): exact in float32, at half the memory traffic (not p x q x the largest count, a bound a count short:
    # counts of 7 and 8 on 700 + 700 images would come out 1.8e-8 off the pairs')
    counts = all(np.array_equal(w, np.round(w)) for w in (w_pos, w_neg))
    big = float((w_pos.sum(axis=1) * w_neg.sum(axis=1)).max(initial=0))
    exact = np.float32 if counts and big < 2 ** 22 else np.float64
    w_exact = w_neg.astype(exact)
    step = max(1, CHUNK // max(len(w_neg) * (q + 1), 1))
    num = np.empty((t, len(w_neg)))
    for k in range(0, t, step):
        below = np.zeros((len(w_neg), min(step, t - k), q + 1), dtype=exact)  # (B, c, q + 1): weight below
        np.cumsum(w_exact[:, negatives[k:k + step]], axis=-1, out=below[..., 1:])
        # a face outscores the negatives below its run and ties those in it: (below start + below stop) / 2
        half = 0.5 * (np.take_along_axis(below, lo[None, k:k + step], -1)
                      + np.take_along_axis(below, hi[None, k:k + step], -1))
        num[k:k + step] = np.einsum("bcp,bp->cb", half, w_pos.astype(exact))
    return num


def weighted_accuracy(hit_pos: np.ndarray, hit_neg: np.ndarray, w_pos: np.ndarray, w_neg: np.ndarray) -> np.ndarray:
    """Balanced accuracy of every method for every replicate: hits (methods, p) / (methods, q), weights
    (B, p) / (B, q) -> (methods, B); NaN where a class has no weight."""
    with np.errstate(invalid="ignore", divide="ignore"):
        pos = (w_pos @ hit_pos.T.astype(float)) / w_pos.sum(axis=1, keepdims=True)     # (B, methods)
        neg = (w_neg @ hit_neg.T.astype(float)) / w_neg.sum(axis=1, keepdims=True)
    return (0.5 * (pos + neg)).T


def score_controls(methods: dict[str, Responses], y: np.ndarray, negatives: dict[str, np.ndarray], source: np.ndarray,
                   splits: list[tuple[np.ndarray, np.ndarray]], *, replicates: int = 2000,
                   seed: int | np.random.SeedSequence = 0,
                   levels: dict[str, str] | None = None, paired: str | None = None,
                   per_split: bool = False, localizer: tuple[str, ...] = (),
                   networks: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """One row per (negative set, method): the rule chosen on the selection split, scored on each test set.

    methods: name -> (M, K) responses, a list of them (one per split), or a function of the selection
    source indices returning them (a probe fitted per split). y: (n,) source labels, 1 = the concept. negatives: name -> rows (into
    the M images) of that negative set. source: (M,) source index of every row. splits: (selection,
    test) source indices per split. Row keys: ``negatives``, ``level``, ``method``, ``auc`` (mean over
    splits), ``auc_ci`` [low, high], ``accuracy_mean`` / ``accuracy_std`` (balanced test accuracy with
    the selection threshold, over splits; ``accuracy_ci`` its bootstrap interval), ``splits``, ``unit`` (the candidate chosen most often) and
    ``unit_share``, ``sign``, ``threshold`` (of the first split that chose ``unit`` with that sign;
    the rule fires when ``sign * (response - threshold) > 0``), ``tied``, ``tied_units``, ``tied_signs`` (that split's
    candidates tied with ``unit`` on the choice's criterion, ``unit`` first), ``selection_auc``, ``candidates``,
    ``test_positives`` / ``test_negatives`` (per split; the largest when the splits differ, as the
    folds of a cross-fit can: ``test_positives_range`` / ``test_negatives_range`` [smallest, largest]),
    ``tie_share``, ``undecided``, ``tie_spread_limit`` and ``tie_rule`` (that split's tie, :func:`tie_of`),
    ``undecided_splits`` (the splits whose own tie was) and ``tied_auc``.
    ``seed`` draws the bootstrap weights. ``paired``: a method whose rows also get ``paired``, for each
    other method {"delta": its AUC minus the other's, "ci": [low, high]}: the same images and the same
    replicates for both, so the interval of the difference is far narrower than two separate ones.
    ``per_split``: rows also get ``split_auc`` (each split's AUC) and ``split_unit`` (its choice).
    ``networks``: methods whose candidates are another network's units in each split (a cross-fit's folds): over
    several splits, a unit index shared by them names no one unit, so their rows' ``unit`` and ``unit_share`` are
    None (each split's unit: ``split_unit``) and ``sign``, ``threshold`` and the tie are the first split's (not the
    index chosen most often: unit 181, unit_share 0.5, where 2 of 4 folds chose their own 181st units).
    ``localizer``: negative sets that join the choice: every method is then chosen by its worst
    selection AUC over the selection non-faces and, for each set named, its images built from a
    *selection* source (:func:`~downpour.analysis.choice.ranking`); the test still scores only those built from test sources.
    """
    y = np.asarray(y).astype(np.int64)
    source = np.asarray(source)
    n = len(y)
    if not np.array_equal(source[:n], np.arange(n)):
        raise ValueError("the first len(y) rows must be the source images themselves (source[:n] == 0..n-1)")
    names, sets = list(methods), list(negatives)
    for m, given in methods.items():
        if isinstance(given, list) and len(given) != len(splits):
            raise ValueError(f"method {m!r}: {len(given)} response arrays for {len(splits)} splits")
    # Resample only the sources some split tests (all of them when the splits cover the set).
    pool = np.unique(np.concatenate([np.asarray(t) for _, t in splits]))
    weights = np.zeros((replicates, n))                                           # (B, n)
    weights[:, pool] = bootstrap_weights(y[pool], replicates, np.random.default_rng(seed))
    boot = np.zeros((len(sets), len(names), replicates))                          # split-sum of replicate AUCs
    boot_acc = np.zeros_like(boot)                                                # ... and balanced accuracies
    # the splits each replicate could score: one whose test faces (or negatives) all drew weight 0 has no
    # AUC there and is left out of that replicate's mean (with many small folds, every replicate had one)
    scored = np.zeros_like(boot)
    auc = np.zeros((len(splits), len(sets), len(names)))
    acc = np.zeros_like(auc)
    chosen: dict[str, list[tuple]] = {m: [] for m in names}   # per split: unit, sign, selection AUC, K, threshold, tied
    # (negatives, method): per split, its tie (:func:`tie_of`), told against that split's own replicates (choice.
    # undecided), not the row's auc_ci, of the mean over the splits, ~1/sqrt(S) as wide, against which a
    # `downpour train` run's learned unit on lfw's non-faces read undecided on 10 of 10
    tied_test: dict[tuple[str, str], list[dict[str, Any]]] = {}
    sizes: dict[str, list[tuple[int, int]]] = {}   # (faces, negatives) tested, per split
    for s, (select, test) in enumerate(splits):
        select, test = np.asarray(select), np.asarray(test)
        faces = test[y[test] == 1]                                                  # (p,) source rows
        rules = []                                                                  # per method: (M,) signed responses, threshold
        localized = [negatives[name][np.isin(source[negatives[name]], select)] for name in localizer]
        for name, rows in zip(localizer, localized):
            if not len(rows):
                raise ValueError(f"localizer: no {name!r} image was built from a selection image of split {s}")
        for m in names:
            given = methods[m]
            scores = given if isinstance(given, np.ndarray) else given[s] if isinstance(given, list) else given(select)
            against = tuple(scores[r] for r in localized)                         # the localizer's negatives
            picked = choice(scores[select], y[select], against)
            k, sign, threshold, sel_auc = picked[:4]
            bad = int((~np.isfinite(scores[np.isin(source, test), k])).sum())
            if bad:   # a NaN compares as neither higher nor tied: it would be scored as a miss, unsaid
                raise ValueError(f"{m}: unit {k}, chosen on split {s}, responds non-finite to {plural(bad, 'test image')}")
            chosen[m].append((k, sign, sel_auc, scores.shape[1], threshold, picked.ties()))
            rules.append((sign * scores[:, k], sign * threshold, scores, picked))
        in_test = np.isin(source, test)
        for g, name in enumerate(sets):
            rows = negatives[name][in_test[negatives[name]]]                          # (q,) this split's negatives
            sizes.setdefault(name, []).append((len(faces), len(rows)))
            v = np.stack([r[0] for r in rules])                                      # (methods, M)
            t = np.array([r[1] for r in rules])[:, None]                             # (methods, 1)
            h = comparisons(v[:, faces], v[:, rows])                                 # (methods, p, q)
            auc[s, g] = h.mean(axis=(1, 2))
            acc[s, g] = 0.5 * ((v[:, faces] > t).mean(axis=1) + (v[:, rows] <= t).mean(axis=1))
            own = source[faces][:, None] == source[rows][None, :]                    # (p, q): a face and its controls
            b_auc = weighted_auc(h, weights[:, faces], weights[:, source[rows]], own)
            b_acc = weighted_accuracy(v[:, faces] > t, v[:, rows] <= t, weights[:, faces], weights[:, source[rows]])
            ok = np.isfinite(b_auc) & np.isfinite(b_acc)
            boot[g] += np.where(ok, b_auc, 0.0)
            boot_acc[g] += np.where(ok, b_acc, 0.0)
            scored[g] += ok
            for m, (_, _, scores, picked) in zip(names, rules):
                tied_test.setdefault((name, m), []).append(tie_of(scores, picked.tied, picked.tied_signs, faces, rows,
                                                                  weights[:, faces], weights[:, source[rows]], own))
    with np.errstate(invalid="ignore", divide="ignore"):
        boot /= scored                     # (a replicate no split could score: NaN, left out below)
        boot_acc /= scored
    low, high = np.nanpercentile(boot, [2.5, 97.5], axis=-1)                      # (sets, methods) each
    acc_low, acc_high = np.nanpercentile(boot_acc, [2.5, 97.5], axis=-1)
    if paired is not None:
        p = names.index(paired)
        diff = boot[:, p:p + 1] - boot                                            # (sets, methods, B)
        d_low, d_high = np.nanpercentile(diff, [2.5, 97.5], axis=-1)
    out = []
    # each method's row rule, the same for every negative set (a split its own network: no one unit to name)
    row_rules = {m: _row_rule(chosen[m], m in networks and len(splits) > 1) for m in names}
    for g, name in enumerate(sets):
        for j, m in enumerate(names):
            unit, share, at, sign = row_rules[m]
            first, ties = chosen[m][at], tied_test[(name, m)]
            out.append({"negatives": name, "level": (levels or {}).get(name, ""), "method": m,
                        "auc": float(auc[:, g, j].mean()), "auc_ci": [float(low[g, j]), float(high[g, j])],
                        "accuracy_mean": float(acc[:, g, j].mean()), "accuracy_std": float(acc[:, g, j].std()),
                        "accuracy_ci": [float(acc_low[g, j]), float(acc_high[g, j])],
                        "splits": len(splits), "unit": unit, "unit_share": share,
                        "sign": sign, "threshold": first[4], **first[5],
                        "tie_share": first[5]["tied"] / int(first[3]),
                        # its tied units' test AUCs spread wider than chance spreads them on that split's replicates
                        # (choice.undecided), that limit and its rule (tie_spread_limit, tie_rule)
                        **{k: ties[at][k] for k in ("undecided", "tie_spread_limit", "tie_rule")},
                        # each split's own tie (a cross-fit's folds are different networks: the first one's says
                        # nothing of the others), each against its own split's replicates
                        "undecided_splits": sum(t["undecided"] for t in ties),
                        "tied_auc": tied_figures([t["aucs"] for t in ties]),
                        "selection_auc": float(np.mean([c[2] for c in chosen[m]])), "candidates": int(chosen[m][0][3]),
                        **_test_sizes(sizes[name])})
            if per_split:
                out[-1]["split_auc"] = [float(a) for a in auc[:, g, j]]
                out[-1]["split_unit"] = [int(c[0]) for c in chosen[m]]
            if paired == m:
                out[-1]["paired"] = {o: {"delta": float(auc[:, g, j].mean() - auc[:, g, k].mean()),
                                         "ci": [float(d_low[g, k]), float(d_high[g, k])]}
                                     for k, o in enumerate(names) if o != m}
    return out


def _row_rule(chosen: list[tuple], own: bool) -> tuple[int | None, float | None, int, int]:
    """(unit, its share of the splits, the split whose rule a row gives, sign): the unit chosen most often, with its
    commoner sign; ``own`` (each split its own network's units): no unit, no share, the first split's rule."""
    if own:
        return None, None, 0, int(chosen[0][1])
    unit, count = Counter(c[0] for c in chosen).most_common(1)[0]
    sign = int(Counter(c[1] for c in chosen if c[0] == unit).most_common(1)[0][0])
    return int(unit), count / len(chosen), next(i for i, c in enumerate(chosen) if c[:2] == (unit, sign)), sign
