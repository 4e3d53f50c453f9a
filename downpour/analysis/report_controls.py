"""The report's face test section (and a folder concept's controls): the table of AUC [95% CI]
per negative set and method, the verdict in words, and the same test for every feature layer."""
from __future__ import annotations

from typing import Any

from downpour._names import plural
from downpour.analysis.auc_words import auc_ci
from downpour.analysis.face_verdict import LEARNED, NO_FACES, PER_NETWORK
from downpour.analysis.labelled import BUILT_IN
from downpour.analysis.report_notes import chosen_among, owed_note, tie_limit_words
from downpour.analysis.report_parts import ends, esc, inline_png, pct, table
from downpour.analysis.verdict_figure import verdict_caption, verdict_png


def tested_concept(a: dict[str, Any]) -> str | None:
    """The concept an analysis (analysis.json's object) tests against controls: a labelled folder's class, or None
    for lfw's faces (the face test)."""
    fn = a.get("face_neuron") or {}
    concept = (fn.get("controls_setup") or {}).get("concept")
    if concept is None and (a.get("options") or {}).get("dataset", "lfw") not in BUILT_IN:   # concept_controls = []
        concept = fn.get("positive_class")
    return concept


def heading(a: dict[str, Any]) -> str:
    """The section's title: the face test, or a folder concept's controls (never "face" for stripes)."""
    concept = tested_concept(a)
    return f"Controls for {concept}: low-level-matched negatives" if concept else "The face test: low-level-matched negatives"


def _faces_each(row: dict[str, Any]) -> str:
    """Faces per fold: "20", or "33-34" when the folds differ (100 faces in 3 folds)."""
    low, high = row.get("test_positives_range", [row["test_positives"]] * 2)
    return str(high) if low == high else f"{low}-{high}"


def set_labels(setup: dict[str, Any]) -> dict[str, str]:
    """Each negative set's name as the page says it (``controls_setup.negatives``' labels), by its key."""
    return {k: v.get("label", k) for k, v in setup.get("negatives", {}).items()}


def controls(a: dict[str, Any], seen_faces: str | None = None) -> str:
    """The face test (or a folder concept's controls: ``controls_setup.concept``): AUC [95% CI] and accuracy per
    negative set and method, then the verdict in words; ``seen_faces``: :func:`faces_seen`'s answer for the run."""
    fn = a["face_neuron"]
    rows, classes = fn.get("controls") or [], []
    verdict = fn["controls_verdict"] if rows else fn.get("controls_verdict") or {}   # (written with the rows: a KeyError
    sentences = "".join(f"<li>{esc(t)}</li>" for t in verdict.get("sentences", []))   # names an edit, not "Criterion: .")
    if not rows:
        return f'<ul class="note">{sentences}</ul>' if sentences else '<p class="note">No face test in this analysis.</p>'
    setup = fn["controls_setup"]
    labels = set_labels(setup)
    cells, previous = [], None
    n = rows[0]["splits"]
    once = setup.get("select") in ("train", "crossfit")   # chosen once (per fold), else per held-out split
    localizer = setup.get("choice") == "localizer"        # (then a tie is on the worst AUC over its sets)
    for r in rows:
        label = labels.get(r["negatives"], r["negatives"])
        ci = r.get("accuracy_ci")
        accuracy = (pct(r['accuracy_mean']) + ends(ci, pct) if once and ci
                    else f"{pct(r['accuracy_mean'])} ± {pct(r['accuracy_std'])}")
        cells.append(["" if r["negatives"] == previous else label, r["method"],
                      "–" if r["candidates"] == 1 else f"{r['unit']}{chosen_among(r, localizer)}" if once and n == 1
                      # each fold is its own network: a unit index shared by folds names no one unit (a pixel does)
                      else "one per fold (its own network)" if once and r["method"] in PER_NETWORK
                      else f"{r['unit']} ({r['unit_share']:.0%} of {'folds' if n > 1 and once else 'splits'})"
                           f"{chosen_among(r, localizer, 'fold' if once else 'split')}",
                      auc_ci(r), accuracy])
        classes.append("learned" if r["method"] == LEARNED else "")
        previous = r["negatives"]
    boot = setup.get("bootstrap", {})
    concept = setup.get("concept")
    against = ("by its worst AUC against the non-faces and against the controls built from those faces: a localizer"
               if setup.get("choice") == "localizer" else f"{concept} vs the other classes" if concept
               else "faces vs non-faces")
    selection = str(setup.get("selection", "other images")).removesuffix(", once")   # (analysis.json of 2026-11-30 to -12-03)
    choice = (f"Every method picks its unit and sign once, on {esc(selection)} ({against}), "
              f"and is scored unchanged on every set; AUC and accuracy come with a "
              if once else
              f"Every method picks its unit and sign once per split, on the selection part ({against}), and is scored "
              f"unchanged on every set. AUC: mean over {n} splits, with a ")
    accuracy_words = ("accuracy: threshold from the selection images, balanced test sets, with its interval."
                      if once else
                      "accuracy: threshold from the selection split, balanced test sets, mean ± std over the splits. "
                      "The unit column is the one chosen most often.")
    column = "accuracy [95% CI]" if once else f"accuracy over {n} splits"
    tested = (f"All {setup.get('faces')} lfw faces, each tested once by the run that never trained on it "
              f"({n} folds, {_faces_each(rows[0])} faces each; AUC: mean over the folds)"
              if setup.get("select") == "crossfit" else f"Held-out lfw faces ({rows[0]['test_positives']} per test)")
    if concept:     # a folder's concept: its own words, and only the controls it asked for
        made = [labels.get(k, k) for k in dict.fromkeys(r["negatives"] for r in rows) if k != rows[0]["negatives"]]
        tested = f"Held-out {esc(concept)} images ({rows[0]['test_positives']} per test)"
        sets = (f"the folder's other classes, and controls built from the same held-out images that keep their "
                f"low-level statistics ({esc(', '.join(made))}; none from an image its split chose on). ")
        seen = f"every other method sees {esc(setup.get('representation', {}).get('baselines', 'the raw images'))}"
    else:
        sets = ("the lfw non-faces, and controls built from the same faces that keep their low-level statistics "
                "(phase-scrambled, upside-down, block-shuffled, spectrum-matched crops of photographs with no face). ")
        seen = "every other method sees the raw 25x25 grey images, the same for every run"
    return (f"<p>{tested} against each negative set separately: {sets}"
            f"{choice}{esc(boot.get('interval', 'percentile 95%'))} bootstrap interval over the held-out source images "
            f"({esc(boot.get('replicates', '?'))} replicates). The learned unit and the random-weights twin see the "
            f"run's prepared input; {seen}; "
            f"{accuracy_words}</p>"
            + table(cells, ["negatives", "method", "unit", "AUC [95% CI]", column],
                     "face-controls-table", classes)
            + f"<p>{esc(verdict.get('rule', ''))}. Criterion: {esc(verdict.get('criterion', ''))}.</p><ul>{sentences}</ul>"
            + verdict_picture(rows, setup)
            + ('<p class="note">One run, tested on the faces it held out. <code>downpour crossfit</code> trains one '
               "run per fold of lfw_subset and tests every one of its 100 faces with the run that never saw it: "
               "narrower intervals, and the spread from training to training.</p>"
               if setup.get("select") == "train" else "")
            + undecided_note(rows, setup)
            + ("" if concept or any(r["method"] == NO_FACES for r in rows)
               else owed_note(seen_faces, fn.get("trained_on")))
            + controls_by_layer(fn.get("controls_by_layer") or [], setup))


def verdict_picture(rows: list[dict[str, Any]], setup: dict[str, Any]) -> str:
    """The table's intervals as a figure beside the verdict, and its caption from the same numbers (the verdict's
    intervals seen, not only read off the table), drawn from the rows as the page is written."""
    labels = set_labels(setup)
    picture = inline_png(verdict_png(rows, labels), "each method's AUC with its 95% interval, per negative set")
    return (f'<figure id="face-verdict">{picture}'
            f'<figcaption class="note">{esc(verdict_caption(rows, labels))}</figcaption></figure>')


def undecided_note(rows: list[dict[str, Any]], setup: dict[str, Any]) -> str:
    """Where the learned unit's tie was ``undecided`` (:func:`~downpour.analysis.choice.undecided`),
    the note that says what that implies: the tied units' mean test AUC per negative set beside the unit's, the
    figures a tie-break cannot choose."""
    def undecided_in(r: dict[str, Any]) -> int:      # splits whose own tie was undecided (rows before: the first's)
        return r.get("undecided_splits", int(bool(r.get("undecided"))))

    learned = [r for r in rows if r["method"] == LEARNED and undecided_in(r) and r.get("tied_auc")]
    if not learned:
        return ""
    r0 = learned[0]
    labels = set_labels(setup)
    fold = "fold" if setup.get("select") == "crossfit" else "split"
    counts = sorted({undecided_in(r) for r in learned})   # (each negative set's, not the first's alone)
    span = str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
    each = "; ".join(f"{labels.get(r['negatives'], r['negatives'])} {r['tied_auc']['mean']:.3f} "
                     f"(median {r['tied_auc']['median']:.3f}; this unit {r['auc']:.3f}"
                     + (f"; undecided on {plural(undecided_in(r), fold)})" if len(counts) > 1 else ")")
                     for r in learned)
    over = f", each {fold}'s tie averaged over the {r0['splits']} {fold}s" if r0["splits"] > 1 else ""
    # (several splits: each has its own tie, a cross-fit's fold its own network, so the first split that chose the
    # row's unit does not speak for all: a second fold's 40 of 100 tied would go unsaid)
    # (undecided: the tied units' test AUCs spread wider than chance spreads them in 95% of bootstrap resamplings of
    # the same split's test images, tie_rule "pooled bootstrap range"; rows written before 2026-12-05 hold older
    # rules: "bootstrap range" (each unit at its own error, said alike), wider than as many alike units' would in
    # 95% of ties given the unit's 95% interval, wider than that interval whatever the number tied, or more than 1%
    # of the layer tied, over several splits against the interval of the mean over them)
    # (a row of an earlier rule is said against its own: tie_limit_words)
    one = r0["splits"] == 1
    against = tie_limit_words(r0, "as many", "its", limit=one, ci=True)
    # (not "among units of the 288 tied": the layer's candidates would read as the number tied)
    chosen = (f"On {span} of the {r0['splits']} {fold}s the learned unit was chosen among several of the layer's "
              f"{r0['candidates']} units tied at the top of the choice whose test AUCs spread wider than {against} "
              f"on that {fold}"
              if r0["splits"] > 1
              else f"The learned unit was chosen among {r0['tied']} of {r0['candidates']} units tied at the top of the "
                   f"choice ({r0['tie_share']:.1%} of the layer), whose test AUCs spread {r0['tied_auc']['min']:.3f}–"
                   f"{r0['tied_auc']['max']:.3f}, wider than {against}")
    return (f'<p class="note">{chosen}: the selection images cannot tell them apart, and which one is reported is the '
            "tie-break's (the larger Cohen's d). What the layer holds is the tied set; its mean test AUC"
            f"{over}: {esc(each)}.</p>")


def controls_by_layer(rows: list[dict[str, Any]], setup: dict[str, Any]) -> str:
    """The learned unit's AUC [CI] on each negative set, for every feature layer (✓ = criterion met)."""
    if not rows:
        return ""
    names = set_labels(setup)
    labels = [names.get(c["negatives"], c["negatives"]) for c in rows[0]["negatives"]]
    body = [[r["layer"]] + ([auc_ci(c) + (" ✓" if c["passes"] else "")
                             for c in r["negatives"]] if r["negatives"] else
                            [f"not measured: {r.get('not_measured', '')}"] + [""] * (len(labels) - 1))   # (table() escapes)
            for r in rows]
    return ("<p>The same test for the best unit of every feature layer (first row: the analysed layer; ✓: the "
            "criterion is met against that negative set). Each layer's unit is chosen on the same selection images, "
            "so a row is as honest as the table above; reading many rows is a search, so trust a pattern, not one cell.</p>"
            + table(body, ["layer", *labels], "face-controls-by-layer", ["learned"] + [""] * (len(body) - 1)))
