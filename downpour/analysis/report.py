"""``downpour report RUN``: one self-contained ``report.html`` a researcher can send to a colleague.

Built from the run directory only (config.toml, analysis.json, figures/*.png); every picture is
embedded as a base64 data URI, so the file opens anywhere on its own.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


from downpour._names import listed, pasted
from downpour.analysis.report_notes import (data_note, distinct as _distinct, edge_interval, faces_seen,
                                           first_layer_note, moved_note, one_orientation)
from downpour.analysis.report_invariance import (fill_words, invariance_rows, invariance_words, range_ci_cells,
                                                selectivity_ci_cells, selectivity_rows, tied_invariance,
                                                tied_unresponsive, warped_against, wide_intervals)
from downpour.analysis.report_notes import chosen_among, loss_headline as _loss_headline
from downpour.analysis.report_notes import pictured_names, several_optima, top_words
from downpour.analysis.report_notes import TRAINED_ON, untied_note
from downpour.analysis.report_controls import controls as _controls, heading as _controls_heading
from downpour.analysis.report_guide import (IMAGES, contents, in_short, method_name, methods_glossary,
                                              two_learned_units)
from downpour.analysis.report_parts import auc, ends, esc, image, pct, run_json, say_damaged, table
from downpour.analysis.report_training import (config_section, shows_no_image, training_section, title, write_page,
                                               write_training_report)
from downpour.config import DataConfig
from downpour.errors import DownpourError
from downpour.train.json_digest import digest_problem
from downpour.train.rundir import NotARunError, RunDir

def _face_neuron(a: dict[str, Any]) -> str:
    fn = a["face_neuron"]
    summary = {s["method"]: s for s in fn.get("over_splits", [])}
    rows, classes = [], []
    for row in fn["rows"]:      # (an analysis.json from before 2026-12-04 has no test AUC: "–")
        s = summary.get(row["method"])
        chosen = f"{auc(row['selection_auc'])} / " if "selection_auc" in row else ""   # (none before 2026-12-04)
        rows.append([method_name(row["method"]), f"{row.get('unit', '–')}{chosen_among(row)}",
                     chosen + pct(row.get("selection_accuracy")),
                     pct(row["test_accuracy"]) + ends(row.get("test_accuracy_ci"), pct),
                     f"{pct(s['mean'])} ± {pct(s['std'])}" if s else "–",
                     auc(row.get("test_auc")) + ends(row.get("test_auc_ci"), auc),
                     f"{auc(s['auc_mean'])} ± {auc(s['auc_std'])}" if s and "auc_mean" in s else "–"])
        classes.append("learned" if row["method"] == "learned unit" else "")
    paper = fn["paper_style"]
    rows.append([paper["method"], paper["unit"], "–", f"{pct(paper['test_accuracy'])} (same set)", "–", "–", "–"])
    classes.append("paper")
    split = fn["split"]
    n_splits = len(fn.get("split_seeds", [])) or 1
    return (f"<p>Concept: <b>{esc(fn['positive_class'])}</b> in <b>{esc(fn['dataset'])}</b>; layer "
            f"<code>{esc(a['layer'])}</code>. Unit and threshold are chosen on a selection split of {split['selection']} images "
            f"and scored on a disjoint test split of {split['test']} (seed {split['seed']}); every baseline uses the same split. "
            + ("The unit is the one whose selection AUC is furthest from 0.5, as in the face test (ties to the larger "
               "Cohen's d); its threshold the most accurate one on the same images. " if "choice" in fn else "")
            + (SPLIT_WORDS if "test_auc_ci" in fn["rows"][0] else "")
            + f"The fifth and last columns give the test accuracy and test AUC over {n_splits} seeded splits, mean ± std "
            "across the splits: how far the split moves them, not an interval "
            "(the splits are drawn from the same images); the test AUC (0.5: chance, 1: every "
            f"image of {esc(fn['positive_class'])} above every other) is not moved by the classes' sizes, as accuracy is "
            f"({split['positives_in_test']} of the {split['test']} test images are {esc(fn['positive_class'])}).</p>"
            + table(rows, ["method", "unit", "selection AUC / acc." if "choice" in fn else "selection acc.", "test acc.",
                           f"test acc. over {n_splits} splits", "test AUC", f"test AUC over {n_splits} splits"],
                     "face-neuron-table", classes)
            + (f'<p class="note">{TRAINED_ON[fn["trained_on"]]}</p>' if fn.get("trained_on") in TRAINED_ON else "")
            + data_note(a.get("labelled_set"), f"The labelled set {fn['dataset']}", "analysis.json's labelled_set"))


SPLIT_WORDS = ("In brackets, the 95% interval over this split's test images, the row's unit, threshold or probe held "
               "as chosen: Wilson's for the accuracy, a bootstrap resampling each class within itself for the AUC. "
               "They leave out the choice itself: another selection split can pick another unit "
               "(the columns over splits show how far that moves the figures). ")


def _starts(stim: dict[str, Any]) -> str:
    """How far the optimisation's starts agree, in words (up to the sentence's closing parenthesis)."""
    n, silent = len(stim["restarts"]), stim.get("silent_starts", 0)
    why = "the unit gave them no gradient, nor any of their 10 draws again, so they never moved"
    if silent and silent == n:
        starts = "its one start" if n == 1 else f"every one of its {n} starts"
        return (f"but {starts} stayed silent (the unit gave no gradient there, nor at 10 draws again: the picture is a "
                "random draw, not what the unit answers")
    if n >= 2 and stim.get("agreement") is None:
        return (f"best of {n} starts ({silent} of them silent: {why}, so no second solution to compare it with; "
                "raise analysis.stimulus_restarts for one")
    if stim.get("agreement") is None:
        return "from one start (nothing to compare it with: more starts, analysis.stimulus_restarts, tell one optimum from several"
    mirror = (" in absolute value, as the unit answers x and -x alike" if stim.get("symmetric") else "")
    if silent:
        return (f"best of {n} starts ({silent} of them silent and left out: {why}; mean cosine similarity between "
                f"the solutions of the {n - silent} that moved {stim['agreement']:.2f}{mirror}{several_optima(stim)}")
    return f"best of {n} starts (mean cosine similarity between starts' solutions {stim['agreement']:.2f}{mirror}{several_optima(stim)}"


def _among_pool(stim: dict[str, Any], top: dict[str, Any]) -> str:
    """Where the stimulus's response stands among the pool's images' (analysis.json's ``optimal_stimulus.among_pool``;
    "" for a file written before 2026-12-06, which lacks it): " (higher than the responses to 97% of the 60 images the
    top ones are drawn from; the best image's 2.1)"; for a unit the concept lowers, " (lower than ...; the image that
    lowers it most: -1.8)" (not "the best image's", which would read as the image that excites it most)."""
    rank = stim.get("among_pool")
    if not rank:
        return ""
    way, best = ("higher", "the best image's") if stim.get("sign", 1) > 0 else ("lower", "the image that lowers it most:")
    return (f" ({way} than the responses to {rank['percentile']:.0f}% of the {top.get('pool', '?')} images the top "
            f"ones are drawn from; {best} {rank['best_image']:.4g})")


def _pictured_words(a: dict[str, Any]) -> str:
    """Which unit the pictures below show, and why (analysis.json files written before ``pictured`` have none)."""
    pictured = a["face_neuron"].get("pictured")
    if not pictured:
        return f"Unit {esc(a['optimal_stimulus']['unit'])}: the best single neuron of the first split."
    n = pictured.get("tied", 1)
    among = (f" among {n} units tied at the top of its choice (the invariance section gives the spread of their ranges, "
             "analysis.json's invariance.tied each one's)" if n > 1 else "")
    sign = a["optimal_stimulus"]["sign"]
    stimulus, images = pictured_names(sign)
    # ("the images it answers least": "its images it answers least" would read as a clause of the list)
    return (f"Unit {esc(pictured['unit'])}, chosen by {esc(pictured['chosen_by'])}{among}: its responses to the labelled "
            f"images with its threshold, its {stimulus}, {'its' if sign > 0 else 'the'} {images} and its invariance below.")


def _samples(run: RunDir) -> Any:
    """The run's training samples as model.json counts them (None where it has no such count, or the file does not
    match the SHA-256 it records of itself: edited since, its count is not the run's)."""
    meta = run_json(run, "model.json")
    data = meta.get("data") if isinstance(meta, dict) and digest_problem(meta, run.path / "model.safetensors") is None else None
    return data.get("n_samples") if isinstance(data, dict) else None


PROBE_WORDS = ('<p class="note">Accuracy: each of the {n} images predicted once, by the probe fit on the other folds, '
               "with Wilson's 95% interval over the images (it covers which images were tested, not another fit of the "
               "probes). The folds share their training images, so mean ± std over them is how much a fold moves the "
               "accuracy, not an interval of it.</p>")


NORMALIZED = {"patch": "each image set to zero mean and unit standard deviation (data.normalize = 'patch')",
              "ufldl": "each image's mean taken away, clipped at 3 standard deviations and put into [0.1, 0.9] "
                       "(data.normalize = 'ufldl')"}
WHITENED = {"zca": "ZCA-whitened (data.whiten = 'zca')",
            "spectral": "divided by the training set's mean power spectrum (data.whiten = 'spectral')"}


def probe_input_words(data: DataConfig) -> str:
    """What the probes' images go through before every row, ``input pixels`` too: the run's own preparation (its
    ``data.normalize`` and ``data.whiten``, fitted on its training data)."""
    steps = [NORMALIZED[data.normalize]] if data.normalize in NORMALIZED else []
    steps += [WHITENED[data.whiten]] if data.whiten in WHITENED else []
    if not steps:
        return ('<p class="note">Every row, <code>input pixels</code> too, reads the images as the network does: this '
                "run prepares none (data.normalize = 'none', data.whiten = 'none'), so they are the pixels as "
                "loaded, their brightness and contrast with them.</p>")
    gone = (" A cue of overall brightness or contrast, which a logistic regression on the raw pixels can use, is gone "
            "from every row." if data.normalize == "patch" else
            " A cue of overall brightness, which a logistic regression on the raw pixels can use, is gone from every "
            "row." if data.normalize == "ufldl" else "")
    return ('<p class="note">Every row, <code>input pixels</code> too, reads the images as the network does, through '
            f"this run's own preparation fitted on its training data: {', then '.join(steps)}.{gone}</p>")


def _probes(a: dict[str, Any], data: DataConfig) -> str:
    parts = [probe_input_words(data)] if a["probes"] else []
    for p in a["probes"]:
        pooled = all("ci" in r for r in p["rows"])      # (an analysis.json before 2026-12-06 has the folds' alone)
        rows = [[r["features"], r["dims"], *([pct(r["accuracy"]) + ends(r["ci"], pct)] if pooled else []),
                 f"{pct(r['mean'])} ± {pct(r['std'])}"] for r in p["rows"]]
        header = ["features", "dimensions", *(["accuracy [95% interval over images]"] if pooled else []),
                  "accuracy over folds (mean ± std)"]
        parts.append(f"<h3>{esc(p['dataset'])}: {p['samples']} images, {p['classes']} classes, "
                     f"{p['folds']}-fold CV (majority class {pct(p['majority_class_rate'])})</h3>"
                     + (PROBE_WORDS.format(n=p["samples"]) if pooled else "")
                     + table(rows, header, f"probe-table-{p['dataset']}")
                     + (f'<p class="note">{TRAINED_ON[p["trained_on"]]}</p>' if p.get("trained_on") in TRAINED_ON else "")
                     # a probe folder's unreadable images (n_skipped, skipped), as the training data's are said
                     + data_note(p, f"The probe set {p['dataset']}", "its entry in analysis.json's probes"))
    return "".join(parts) or '<p class="note">No probes were run: analysis.probes is empty.</p>'


def _classifier(a: dict[str, Any]) -> str:
    """The network's own classifier on its training images and on the held-out ones (analysis.json's classifier)."""
    c = a.get("classifier")
    if not c:
        return ""
    split, rows, images = c["split"], [], IMAGES.get(c.get("dataset"), "images")
    for name, part in ((f"training {images}", c["train"]), (f"held-out {images} (never trained on)", c["heldout"])):
        if part:
            rows.append([name, f"{part['n']:,}", pct(part["accuracy"]) + ends(part["ci"], pct)])
    held = c["heldout"]
    if "lfw_heldout" in split:      # lfw: the face test's held-out faces and non-faces
        spec = esc(repr(split["lfw_heldout"]))
        source = (f"on the {split['heldout']} lfw images data.lfw_heldout = {spec} holds out of training (the "
                  "held-out faces and non-faces the face test scores)")
    else:
        source = (f"on the {split['heldout']} digits data.digits_heldout = {split['fraction']:g} held out of training "
                  f"(drawn with seed {split['seed']})")
    words = (f"The network's own classifier (its logits' argmax) {source} and on the {split['train']:,} it trained "
             f"on: the gap between them is how far the training figure overstates the accuracy on new {images}."
             if held else f"Held-out accuracy: none: {esc(c['note'])}; trained again with "
             "<code>--set data.digits_heldout=0.2</code>, a run holds a fifth out (the cnn-digits preset does).")
    return (f'<h2 id="classifier">Classifier accuracy</h2><p>{words} Wilson\'s 95% interval over the images; the '
            f"majority class is {pct(c['chance'])} of the {images}.</p>"
            + table(rows, [c.get("dataset", "digits"), "images", "accuracy [95% interval]"], "classifier-table"))


def _invariance(a: dict[str, Any]) -> str:
    inv = a["invariance"]
    floor = inv.get("summary", {}).get("floor", 0.5)
    rows = invariance_rows(inv)
    header = ["transform", f"unbroken range around the identity with response ≥ {floor:g}"]
    cis = range_ci_cells(inv)
    if cis:     # the range's interval over the test images
        rows = [r + [c] for r, c in zip(rows, cis)]
        header.append(f"its width, 95% bootstrap interval over the {esc(inv['images'])} images (the other class's mean "
                      "held fixed); its ends' intervals")
    if inv.get("selectivity"):      # the unit's AUC against the other class, both warped
        rows = [r + [w] for r, w in zip(rows, selectivity_rows(inv))]
        header.append(f"range with AUC ({warped_against(a)[1]} warped alike) ≥ halfway from 0.5 to the untransformed AUC")
        sel_cis = selectivity_ci_cells(inv)
        if sel_cis:     # its interval, both classes resampled
            rows = [r + [c] for r, c in zip(rows, sel_cis)]
            header.append("its width, 95% bootstrap interval (each class resampled within itself); its ends' "
                          "intervals; the untransformed AUC's")
    tied = inv.get("tied") or {}
    note = ""
    if tied.get("size", 1) > 1:      # equally good units: one's range depends on the tie-break, their mean does not
        rows = [r + [w] for r, w in zip(rows, tied_invariance(inv))]
        median = any("median" in w for w in tied.get("widths", {}).values())    # (none before 2026-12-05)
        header.append(f"its width over the {tied['size']} units tied at the top of the choice (mean ± std, "
                      f"{'median, ' if median else ''}min–max)")
        last = "the last column says"
        if tied.get("selectivity") and inv.get("selectivity"):    # the AUC ranges' widths
            rows = [r + [w] for r, w in zip(rows, tied_invariance(inv, selectivity=True))]
            header.append(f"the AUC range's width over the {tied['size']} tied units (mean ± std, median, min–max)")
            last = "the last two columns say"
        note = (f'<p class="note">Unit {esc(inv["unit"])} was chosen among {tied["size"]} units equally good by the '
                f"choice's criterion (its tie goes to the larger Cohen's d); {last} how much its ranges "
                f"depend on that tie-break.{esc(tied_unresponsive(inv))}</p>")
    oop = inv.get("out_of_plane_rotation", {})
    banded = any((c or {}).get("points") for c in ((inv.get("selectivity") or {}).get("range_ci") or {}).values())
    return (f"<p>{invariance_words(inv)}; shaded: ± one standard error of the mean on the response panels "
            f"(analysis.json also has the spread across images)"
            f"{', each AUC’s 95% bootstrap interval on the AUC panels' if banded else ''}; "
            f"dash-dot red: the level the table's ranges are read at, {floor:g} of "
            f"the response{', and under it the AUC each AUC range keeps' if inv.get('selectivity') else ''}. "
            f"{fill_words(inv)}{esc(wide_intervals(inv))}</p>"
            + table(rows, header, "invariance-table") + note
            + (f'<p class="note">{esc(_unmeasured_rotation(oop))}</p>' if not oop.get("available", False) else ""))


def _unmeasured_rotation(oop: dict[str, Any]) -> str:
    """"Out-of-plane rotation was not measured, as it needs images of one object at known poses (analysis.poses); none
    were given.": the reason (invariance's, a clause that starts "needs") outside a parenthesis, as it holds one, and
    after no second colon ("Out-of-plane rotation: not measured: needs ..." read as a label of a label)."""
    reason = oop.get("reason")
    return "Out-of-plane rotation was not measured" + (f", as it {reason}." if reason else ".")


def _filters(f: dict[str, Any], samples: Any = None) -> str:
    """The first-layer filters' sentences; ``samples``: the run's training samples (model.json), or None."""
    if not f.get("available"):
        return '<p class="note">This model has no first-layer filters to draw.</p>'
    shape = "×".join(map(str, f["shape"]))
    what = f'<p class="note">What they are: {esc(f["what"])}.</p>' if f.get("what") else ""
    return what + _filter_sentences(f, shape, samples)


def _filter_sentences(f: dict[str, Any], shape: str, samples: Any) -> str:
    if "edge_fraction" not in f:          # an analysis.json from before the edge measure (2026-11-29)
        return f"<p>{f['count']} filters of shape {shape} (not measured for edges: `downpour analyze` measures them).</p>"
    if f["edge_fraction"] is None:
        return f"<p>{f['count']} filters of shape {shape} (too thin for an orientation measure).</p>"
    c = f.get("criteria", {})
    text = (f"<p>{f['count']} filters of shape {shape}: <b>{pct(f['edge_fraction'])} are edge-like</b>"
            f"{edge_interval(f)} "
            f"(Gaussian noise filters of the same shape: {pct(f['edge_fraction_noise'])}). Edge-like means: energy "
            f"spread over at least {c.get('spread_min_pixels', '?')} pixels, at least {pct(c.get('concentration_min'))} of "
            f"the spectral power near one peak (one orientation and frequency band), that peak below "
            f"{c.get('peak_frequency_max', '?')} cycles/pixel, and orientation coherence at least {c.get('coherence_min', '?')}: single "
            f"pixels, corner spikes, checkerboards, blobs and noise all fail. Mean coherence {f['coherence_mean']:.3f} "
            f"(noise {f['coherence_noise']:.3f}).</p>")
    text += first_layer_note(f) + moved_note(f) + _distinct(f) + one_orientation(f)
    return text + untied_note(f.get("sharing", {}), samples)


def write_report(run_path: str | Path, analyze_if_missing: bool = True, analysed: bool = False) -> Path:
    """Write ``report.html`` into the run directory and return its path.

    Runs the analysis first when ``analysis.json`` is missing (unless ``analyze_if_missing`` is
    False, then that is an error). ``analysed``: the caller ran the analysis just before (`downpour analyze --report`,
    `downpour train`'s report), whose histogram's drawing named a damaged staleness.json already. Raises
    ``NotARunError`` for a directory that is not a run.
    """
    run = RunDir.open(run_path)
    run.check_analysed_model()   # (model.json edited, or its weights changed on disk, since: refused, analysis kept)
    # the records the report leaves notes out for, each named once: a staleness.json by the histogram's drawing
    # (report_training.staleness_histograms) where the report, or the analysis it or its caller runs first, draws it
    if shows_no_image(run):      # (teacher-student: no analysis.json, its training alone)
        say_damaged(run, but=("staleness.json",))
        return write_training_report(run)
    if run.analysis_stale():     # (a run shared without whole weights: its analysis is all there is)
        run.drop_analysis(f"they describe the model at step {run.analysed_step()}, and the model saved is at step "
                          f"{run.model_step()}")
    if not (run.path / "analysis.json").is_file():
        if not analyze_if_missing:
            raise NotARunError(f"{str(run.path)!r} has no analysis.json; run `downpour analyze {run.path}` first")
        from downpour.analysis.run import analyze_run

        analyze_run(run.path)
        analysed = True
    say_damaged(run, but=("staleness.json",) if analysed else ())
    try:
        a = run.read_json("analysis.json")
    except NotARunError as err:      # cut short by a kill or an edit: the same way back as a missing field
        raise NotARunError(f"{err}; `downpour analyze {pasted(run.path)} --report` writes it again") from None
    try:
        body = _body(run, a)
    except DownpourError:
        raise                       # (a figure it lists is missing: named)
    except (KeyError, TypeError, AttributeError, IndexError, ValueError) as err:
        raise NotARunError(f"{str(run.path / 'analysis.json')!r} lacks a field the report reads, or holds it in another "
                           f"shape ({type(err).__name__}: {err}): edited, cut short or written by another version of "
                           f"downpour; `downpour analyze {pasted(run.path)} --report` writes it again") from None
    return write_page(run, body)


_ASKED = (" Its <code>[analysis]</code> table is what <code>downpour train</code> asked for; the options this "
          "report's analysis used (after any <code>downpour analyze --set</code>) are below it.")


def _body(run: RunDir, a: dict[str, Any]) -> str:
    """The report's HTML body from analysis.json's dict ``a``."""
    if not isinstance(a, dict):
        raise TypeError(f"it holds a {type(a).__name__}, not an object")
    training = a["training"]
    sections = _sections(run, a)
    return f"""
<h1>{esc(title(run))}</h1>
<p>Model <b>{esc(a['model'])}</b>, trained {esc(a.get('trained_steps'))} steps; analysed layer <code>{esc(a['layer'])}</code>.
{_loss_headline(training)}</p>
{in_short(a, _controls_heading(a))}{contents(sections)}{sections}"""


def _sections(run: RunDir, a: dict[str, Any]) -> str:
    """The report's sections, from the training curves (a supervised network's classifier accuracy before them) to the
    config."""
    figs = a["figures"]
    stim = a["optimal_stimulus"]
    top = a["top_images"]
    # a supervised network's own classifier first: the figure such a network is trained for ("" for any other)
    return f"""
{_classifier(a)}{training_section(run, figs)}
<h2 id="filters">First-layer filters</h2>
{_filters(a['filters'], _samples(run))}
{image(run, figs.get('filters'), 'first-layer filters')}

<h2 id="face-neuron">The best single neuron</h2>
{_face_neuron(a)}
{two_learned_units(a)}{methods_glossary(a)}

<h2 id="face-test">{esc(_controls_heading(a))}</h2>
{_controls(a, faces_seen(run))}

<h2 id="stimulus">{esc(listed(pictured_names(stim['sign'])).capitalize())}</h2>
<p>{_pictured_words(a)}</p>
{image(run, figs.get('responses'), 'responses of the pictured unit')}
<p>{'An' if several_optima(stim) else 'The'} input of L2 norm {stim['norm']:.3g} (the data's median) that {'excites' if stim['sign'] > 0 else 'suppresses'} unit
{stim['unit']} most: response {stim['activation']:.4g}{_among_pool(stim, top)}, {_starts(stim)}; the unit depends on
{stim.get('receptive_field_pixels', '?')} of the input's values). Beside it, {top_words(top, stim['sign'])}.</p>
{image(run, figs.get('stimulus'), listed(pictured_names(stim['sign'])))}

<h2 id="invariance">Invariance</h2>
{_invariance(a)}
{image(run, figs.get('invariance'), 'invariance curves')}

<h2 id="probes">Linear probes</h2>
{_probes(a, run.config.data)}
{config_section(run, _ASKED)}<details><summary>the options this analysis used (analysis.json)</summary><pre>{esc(json.dumps(a['options'], indent=1))}</pre></details>
"""
