"""Sentences of report.html that depend on what the run was: the loss headline (one logged row, a greedy
run's stages), the first-layer filters' notes (copies of one filter, a designed, random or Gabor-started
layer, edge-like filters of one orientation), the top images' (what they were drawn from, and the concept's share
of it) and what the face test can say of a run that saw no face (the invariance sentences are report_invariance's)."""
from __future__ import annotations

import math
from typing import Any

from downpour._names import plural
from downpour.analysis.choice import TIE_RULE
from downpour.analysis.edges import ONE_ORIENTATION, ONE_ORIENTATION_MIN
from downpour.analysis.report_parts import esc, num, pct
from downpour.data.images import item_noun
from downpour.data.patches import DATA_JSON
from downpour.errors import DownpourError, first_line
from downpour.train.divergence import diverged_words

# model.first_layer kinds whose filters were not learned from the data (downpour/layers/gabor.py)
_NOT_LEARNED = {"gabor": "a designed Gabor bank, frozen: not learned",
                "random": "fixed random filters, frozen: not learned"}
# "gabor-init" starts from the Gabor bank and learns: its edge-like share is training's. The report said it was
# "what the layer was given, not what training found" of it too: cat-demo with it, 300 steps, 0% edge-like.
_GABOR_START = ('model.first_layer = "gabor-init": these filters started as a designed Gabor bank and were learned '
                "from there: their edge-like share is what training made of that start, not what the layer was given.")


def loss_headline(training: dict[str, Any]) -> str:
    """First and last logged loss; a greedy run's per stage (its ``loss`` is stage 1's cost first and
    the last stage's at the end: two different sums that read as divergence side by side); a joint run's
    with each stage's share beside it (the sum hides the stage that trains: cat-demo joint with a frozen
    Gabor stage 1, 300 steps, read "Loss 5773 → 5392" where stage 2's own cost fell 319 → 117 and stage 1's,
    with nothing to train, wandered between 5051 and 6230); one logged row said as one (``a → a`` read as a
    loss that did not move)."""
    if training.get("diverged"):     # (its figures below are of a model that ran away: said first, not under them)
        words = diverged_words(training["diverged"])      # (not str.capitalize: it lowers every later letter)
        return (f"<strong>{esc(words[:1].upper() + words[1:])}</strong>: every figure below is "
                f"of a model that ran away, not of one that learned. Train it again with a lower learning rate "
                f"(train.lr, or cluster.lr on a cluster) or, on a cluster, less staleness.")
    count = training.get("logged_rows")
    rows = f"over {esc(count)} logged rows"
    stages = training.get("stages") or []
    if count == 1 and not stages:
        return (f"Loss {num(training.get('last_loss'))} at step {esc(training.get('last_step'))}, the only logged "
                f"row (the run was shorter than train.log_every): no change to report.")
    if not stages:
        shares = training.get("joint_stages")     # (an analysis.json from before 2026-12-04 has none)
        each = (f", the sum of each stage's own cost (trained together): {_stage_ends(shares, steps=False)}"
                if shares else "")
        return (f"Loss {num(training.get('first_loss'))} → {num(training.get('last_loss'))} {rows}{each}."
                f"{_diagnostics(training)}")
    return f"Loss, each stage's own cost (trained in turn): {_stage_ends(stages)}, {rows}."


def _stage_ends(stages: list[dict[str, Any]], steps: bool = True) -> str:
    """``stage1 200 → 160 (steps 10–20); stage2 ...``, a stage with nothing to train said so."""
    def one(s: dict[str, Any]) -> str:
        if s["first_step"] == s["last_step"]:     # (cat-3stage, 30 steps: "2255 → 2255 (steps 10–10)")
            text = f"{esc(s['stage'])} {num(s['first_loss'])} (one logged row, step {esc(s['first_step'])})"
        else:
            text = f"{esc(s['stage'])} {num(s['first_loss'])} → {num(s['last_loss'])}"
            text += f" (steps {esc(s['first_step'])}–{esc(s['last_step'])})" if steps else ""
        return text + (" (frozen: no parameter of it trains, so its cost moves only with the batches)"
                       if s.get("frozen") else "")
    return "; ".join(one(s) for s in stages)


def _diagnostics(training: dict[str, Any]) -> str:
    """The diagnostics logged beside the cost (``metric/...``), first and last, and what an RBM's cost is. Its
    contrastive divergence is a free-energy gap that rises as the chains catch up: rbm-digits read "Loss -2.053 →
    0.2474" alone, as divergence, while its reconstruction error fell 2.562 → 1.38 and its pseudo-likelihood rose."""
    ends = training.get("diagnostics") or {}
    text = "; ".join(f"{esc(name)} {num(a)} → {num(b)}" for name, (a, b) in ends.items())
    text = f" Logged beside the cost, not part of it: {text}." if text else ""
    if training.get("free_energy_gap"):
        text += (" The contrastive-divergence cost is a free-energy gap between the data and the model's samples, "
                 "not a likelihood: it need not fall as the RBM learns" + (", the diagnostics say how it did." if ends else "."))
    return text


def first_layer_note(f: dict[str, Any]) -> str:
    """What a designed, random or Gabor-started first layer is (an analysis.json without ``first_layer``: nothing)."""
    kind = f.get("first_layer", "learned")
    if kind == "gabor-init":
        return f'<p class="note">{_GABOR_START}</p>'
    if kind not in _NOT_LEARNED:
        return ""
    return (f'<p class="note">model.first_layer = "{esc(kind)}": these filters are {_NOT_LEARNED[kind]}; '
            f"their edge-like share says what the layer was given, not what training found.</p>")


def moved_note(f: dict[str, Any]) -> str:
    """How far training moved the filters from the weights it started from (analysis.json's ``filters.from_start``;
    "" without it: a given first layer, or an analysis.json written before 2026-12-07): a picture of filters still
    near their random start shows the start, whatever the edge test finds in it. Where the start rebuilt from the
    run's seed is not the one training recorded (``filters.from_start_left_out``), why, in one line."""
    m = f.get("from_start")
    if why := f.get("from_start_left_out"):
        return f'<p class="note">{esc(why[:1].upper() + why[1:])}.</p>'
    if not m:
        return ""
    checked = ", checked against the fingerprint training recorded of its start" if m.get("verified") else ""
    return (f'<p class="note">Each filter against the weights training started from (the run\'s architecture built '
            f"with its own seed{checked}): cosine {m['mean']:.2f} on average, {m['min']:.2f}–{m['max']:.2f} "
            f"(1: unmoved but for scale); against another random draw (the random twin's), {m['other_draw']:.2f}. "
            "Near 1, the picture shows mostly the random start, which training left in place.</p>")


def edge_interval(f: dict[str, Any]) -> str:
    """' (95% interval 31%-72% over its 8 maps: ...)' after the edge-like share (analysis.json's
    ``filters.edge_fraction_ci``; "" for a file written before 2026-12-06, which lacks it)."""
    ci, units = f.get("edge_fraction_ci"), f.get("edge_fraction_units")
    if not ci:
        return ""
    if f.get("edge_fraction_over") == "maps":
        over = (f"its {plural(units, 'map')}: the L2 pools sum each map's neighbouring positions, which lie in "
                "different banks, so a map's filters are not independent and each map counts once, as if its filters "
                "were copies")
    else:
        over = f"its {plural(units, 'filter')}, taken as independent"
    return f" (95% interval {pct(ci[0])}–{pct(ci[1])} over {over}; another training run can differ more)"


def distinct(f: dict[str, Any]) -> str:
    """How many edge-like filters are copies of one another (analysis.json before 2026-12-02: nothing).
    A designed layer repeats one bank at every tiled position by construction: said so, not called a collapse;
    a Gabor-started one starts so, and its copies are what training left of that."""
    share = f.get("edge_distinct_fraction")
    if share is None:
        return ""
    edgy = round(f["edge_fraction"] * f["count"])
    text = (f"<p>Of the edge-like filters, {pct(share)} are distinct: no two with |cosine| of 0.9 or more (mean "
            f"|cosine| between them {f['edge_mean_abs_cosine']:.2f}).</p>") if edgy > 1 else ""
    if (n := copies(f)) is not None:
        kind = f.get("first_layer", "learned")
        if kind == "gabor":
            text += (f'<p class="note">The copies are by construction: model.first_layer = "gabor" '
                     f"puts the same bank at every one of the layer's filter banks ({plural(n, 'distinct filter')}), "
                     f"not a collapse in training.</p>")
        elif kind == "gabor-init":
            text += (f'<p class="note">Many are still copies: model.first_layer = "gabor-init" starts every one of the '
                     f"layer's filter banks from the same Gabor bank, and training has not moved them apart "
                     f"({plural(n, 'distinct filter')}).</p>")
        elif collapsed(f):   # (not frozen random filters, a different one at every position: never trained)
            text += (f'<p class="note">Most edge-like filters here are copies of a few: the layer has collapsed onto '
                     f"{plural(n, 'distinct filter')}, which the edge-like share alone does not show.</p>")
    return text


def copies(f: dict[str, Any]) -> int | None:
    """How many distinct filters the edge-like ones come down to where fewer than half of them are distinct
    (``edge_distinct_fraction`` < 0.5, more than one edge-like filter), else None."""
    share = f.get("edge_distinct_fraction")
    edgy = round((f.get("edge_fraction") or 0) * f.get("count", 0))
    return max(1, round(share * edgy)) if share is not None and edgy > 1 and share < 0.5 else None


def collapsed(f: dict[str, Any]) -> bool:
    """The copies are a learned layer's collapse (not a designed bank's repeats, nor a Gabor start's leftovers)."""
    return copies(f) is not None and f.get("first_layer", "learned") not in ("gabor-init", *_NOT_LEARNED)


def one_orientation(f: dict[str, Any]) -> str:
    """The edge-like filters all of one orientation: one structure they share, not a bank of edge detectors
    (analysis.json before 2026-12-04: nothing). rbm-digits after 500 steps: 77% edge-like, agreement 0.99, all
    whole-digit templates whose tall silhouette reads as a vertical ridge; cat-demo, ufldl-sae, tica-8x8: 0.08-0.14."""
    agreement = f.get("edge_orientation_agreement")
    edgy = round((f.get("edge_fraction") or 0) * f["count"])
    if agreement is None or agreement < ONE_ORIENTATION or edgy < ONE_ORIENTATION_MIN:
        return ""
    return (f'<p class="note">The {edgy} edge-like filters share one orientation (agreement {agreement:.2f}; 1 is '
            f"one orientation, a bank of edge detectors learned from images scores ~0.1): they are one structure the "
            f"filters share, not a bank of edges. Filters as large as the whole image can pass as edges by an "
            f"object's outline alone (rbm-digits' 8x8 filters are whole-digit templates, many of them edge-like "
            f"because a digit's tall silhouette is one vertical bar at that scale): look at the filter picture.</p>")


def data_note(data: Any, heading: str = "Data", where: str = DATA_JSON) -> str:
    """One line on the files a run could not use (data.json's ``skipped`` and ``unlisted``), the symbolic links it
    did not follow (``loops``: each to a folder holding it, its files read once), files used only later
    (``recovered``) or enlarged to ``data.size`` (``upscaled``, crops mode: a blur), or nothing. Without it a run
    whose folder lost a third of its images to bad files reads like one that trained on all of them, unless one opens
    data.json. ``heading`` and ``where``: a labelled folder's own line (analysis.json's ``labelled_set``: the
    concept's unreadable images, said in the report, not the log alone)."""
    if not isinstance(data, dict):
        return ""
    skipped = [e for e in data.get("skipped") or [] if isinstance(e, dict)]
    unlisted = [e for e in data.get("unlisted") or [] if isinstance(e, dict)]
    upscaled = [e for e in data.get("upscaled") or [] if isinstance(e, dict)]
    parts = []
    if skipped:
        reason = first_line(skipped[0].get("reason") or "?")[:160]
        noun = item_noun(str(skipped[0].get("file")))     # (an array's row is skipped for NaN, not as unreadable)
        parts.append(f"{plural(data.get('n_skipped', len(skipped)), noun)} skipped"
                     f"{', unreadable or too small' if noun == 'file' else ''} (first: {skipped[0].get('file')}: {reason})")
    recovered = [name for name in data.get("recovered") or [] if isinstance(name, str)]
    if recovered:
        parts.append(f"{plural(len(recovered), 'file')} unreadable for a while and read later (first: {recovered[0]})")
    if unlisted:
        parts.append(f"{plural(len(unlisted), 'folder')} that could not be listed left out (first: "
                     f"{unlisted[0].get('folder')}: {unlisted[0].get('reason')})")
    loops = [e for e in data.get("loops") or [] if isinstance(e, dict)]
    if loops:         # (said here, not in the log alone)
        parts.append(f"{plural(len(loops), 'symbolic link')} to a folder holding {'it' if len(loops) == 1 else 'them'}"
                     f" not followed, the files there read once (first: {loops[0].get('link')} -> {loops[0].get('to')})")
    if upscaled:      # (said here, not only counted in data.json)
        parts.append(f"{plural(data.get('n_upscaled', len(upscaled)), item_noun(str(upscaled[0].get('file'))))} "
                     "enlarged to data.size in crops mode, "
                     f"a blur (first: {upscaled[0].get('file')}, {upscaled[0].get('size')})")
    return f'<p class="note">{esc(heading)}: {esc("; ".join(parts))}; {esc(where)} names every one.</p>' if parts else ""


def pictured_names(sign: int) -> tuple[str, str]:
    """What the stimulus figure shows, by the pictured unit's sign: the input that excites it most and its top images,
    or (the concept lowers it, -1) the one that suppresses it most and the images it answers least; the figure's panel,
    the report's heading and the image's label say them alike, not "optimal stimulus and top images" for either."""
    return ("optimal stimulus", "top images") if sign > 0 else ("most suppressing stimulus", "images it answers least")


def top_words(top: dict[str, Any], sign: int = 1) -> str:
    """The top images (for a unit the concept lowers, sign -1, the ones it answers least, as the figure shows), the
    images they were drawn from and the concept's share of those (its chance level)."""
    k, hits = len(top["indices"]), top["positive_in_top"]
    which = f"its top {k}" if sign > 0 else f"the {k} it answers least"
    if "pool" not in top:                     # an analysis.json from before 2026-12-04: drawn from every image
        which = f"its top {k} images" if sign > 0 else f"the {k} images it answers least"
        return f"{which}, {hits} of them from the concept's class"
    share = top["positive_in_pool"] / max(top["pool"], 1)
    return (f"{which} of {esc(top['drawn_from'])}: {hits} of them from the concept's class, against "
            f"{k * share:.2g} expected by chance (the class is {pct(share)} of those images{_by_chance(top)}; the number "
            "above each is the unit's response to it)")


def _by_chance(top: dict[str, Any]) -> str:
    """How often a random draw of as many images from the same pool holds as many of the concept's (hypergeometric
    upper tail): ": a random 9 of them hold 6 or more in 25% of draws". Beside its expectation alone the count
    reads as a finding: 6 of 9 against 4.5 (a 30-step cat-demo)."""
    from scipy.stats import hypergeom

    k, hits, pool, positives = len(top["indices"]), top["positive_in_top"], top["pool"], top["positive_in_pool"]
    if not k or k > pool or not hits:     # (none of the concept's: "0 or more in 100% of draws" says nothing)
        return ""
    p = float(hypergeom.sf(hits - 1, pool, positives, k))
    return f": a random {k} of them hold {hits} or more in {pct(p)} of draws"


# the ``tie_rule``s of a bootstrap range: the pooled one, and each unit's own of rows written earlier on 2026-12-05
BOOTSTRAP_RULES = (TIE_RULE, "bootstrap range")


def tie_limit_words(row: dict[str, Any], alike: str, own: str, limit: bool = True, ci: bool = False) -> str:
    """What an undecided tie's test AUCs spread wider than, in the words of the rule its row was told by
    (:func:`~downpour.analysis.choice.undecided`): its ``tie_rule``'s bootstrap range (:data:`BOOTSTRAP_RULES`: the
    pooled one, or each unit's own error in a row written earlier on 2026-12-05, said alike); a row without one
    (written before 2026-12-05) as many alike units' range given the unit's 95% interval (``alike`` counts them, ``own``
    is whose); one without a ``tie_spread_limit`` (earlier still) that interval itself. ``limit``: the row's figure
    beside it (the limit, or with ``ci`` the interval; over several splits the row's is its first split's alone, so not
    given). The figure follows a comma, not in a parenthesis: :func:`chosen_among` says it inside its own."""
    figure = f", {row['tie_spread_limit']:.3f}" if limit and "tie_spread_limit" in row else ""
    if row.get("tie_rule") in BOOTSTRAP_RULES:
        return "chance would in 95% of resamplings of the test images" + figure
    if "tie_spread_limit" in row:
        return f"{alike} alike units' would in 95% of ties{figure}, given {own} 95% interval"
    interval = f" [{row['auc_ci'][0]:.3f}, {row['auc_ci'][1]:.3f}]" if limit and ci else ""
    return f"{own} 95% interval{interval}"


def chosen_among(row: dict[str, Any], localizer: bool = False, first: str = "") -> str:
    """" (chosen among 7 units with selection AUC 1.000)" beside a chosen unit whose choice was tied (its row's
    ``tied``), "" where it was not (or analysis.json, written before 2026-12-04, lacks the count). ``localizer``: the
    tie was on the worst AUC over the localizer's sets, not the selection AUC; ``first``: "split" or "fold", the row's
    unit was chosen on several of them, its tie counted on the first that chose it (its ``selection_auc`` is their
    mean). It also gives the tied units' test AUC (the row's ``tied_auc``) and, when the tied units' test AUCs spread
    wider than chance would in 95% of resamplings of the test images (on that split; the row's ``tie_spread_limit`` and
    ``tie_rule``; ``undecided``, :func:`~downpour.analysis.choice.undecided`), says the selection split could not tell
    them apart. A row written earlier on 2026-12-05 was told against as many alike units' range given the unit's own 95%
    interval, and is said as such; older rows against that interval, or more than 1% of the candidates tied."""
    n = row.get("tied", 1)
    if n <= 1:
        return ""
    method = str(row.get("method", ""))
    noun = "pixels" if "pixel" in method else "filters" if "filter" in method else "units"
    share = f" of {row['candidates']}" if "candidates" in row else ""
    if localizer or first:
        where = f" on the first {first} that chose it" if first else ""
        said = f"chosen among {n}{share} {noun} tied at the top of the choice{where}"
    else:
        said = f"chosen among {n}{share} {noun} with selection AUC {row['selection_auc']:.3f}"
    if row.get("undecided"):
        there = f" on that {first}" if first else ""     # (several splits: told against that one's own interval)
        against = tie_limit_words(row, str(n), "this one's")   # (each row in its own rule's words)
        said += f": their test AUCs spread wider than {against}{there}, so the selection split cannot tell them apart"
    t = row.get("tied_auc")
    if t:
        # (said inside this parenthesis, so with none of its own: "(each split's ...)", "(0.854–1.000)" nested)
        each = f", each split's tie averaged over the {row['splits']} splits," if row.get("splits", 1) > 1 else ""
        said += (f"; the tied {noun}' test AUC{each} {t['mean']:.3f} ± {t['std']:.3f}, range {t['min']:.3f}–"
                 f"{t['max']:.3f}, this one's {row.get('auc', row.get('test_auc', math.nan)):.3f}")
    return f" ({said})"


def faces_seen(run: Any) -> str | None:
    """"" when the run (a RunDir) trained on lfw faces; else the data keys that say it saw none
    ("data.source = 'natural'"); None when its config.toml cannot be read (the report's words then name no key)."""
    try:
        d = run.config.data
    except DownpourError:
        return None
    # (the summary's and the twin refusal's words, DataConfig.no_faces_setting: words of its own could name
    # data.train_faces = 0 where the summary above it names data.faces_fraction = 0, both set)
    return "" if d.trains_on_faces() else d.no_faces_setting()


TRAINED_ON = {   # what the network trained on of a labelled set (analysis.json's face_neuron and probes[] trained_on)
    "images and labels": "The network trained on these images with their labels: this measures how well it "
                         "fits them, not how it does on images it has not seen.",
    "images": "The network's features were learned on these images (not their labels).",
    "labels": "The network was trained on these labels (face against non-face, on lfw's training part; not on "
              "these held-out images): what of it tells them apart, a unit or a probe of a layer, does what the "
              "labels trained it to do, not what the paper's face neuron did, found without any label (its logits "
              "layer is the classifier's answer itself). Its own classifier's held-out accuracy (Classifier "
              "accuracy) is this network's figure."}


def owed_note(seen: str | None, trained_on: str | None = None) -> str:
    """The face test's note on what the unit owes to faces. A run that trained on none is its own no-faces
    network: the note suggests no twin, which is refused for it (analysis.no_faces_twin names data.source). A
    supervised network trained on the face labels (``trained_on`` "labels", analysis.json's face_neuron's) is told
    that, not to train a twin without faces: its unit answers the labels, and a twin would train on one class."""
    if trained_on == "labels":
        return f'<p class="note">{TRAINED_ON["labels"]}</p>'
    if seen:
        return (f'<p class="note">This network trained on no lfw face ({esc(seen)}): whatever its unit separates '
                "here it did not learn from faces, so it answers the question a no-faces twin asks of a network "
                "that did (docs/analysis.md, &ldquo;Trained without a face&rdquo;); it has no twin to train.</p>")
    return ('<p class="note">The criterion does not ask whether the unit owes anything to the faces it trained on: '
            "on the main recipe a network trained without a face (<code>data.train_faces = 0</code>) passed it more "
            "often (docs/analysis.md, &ldquo;Trained without a face&rdquo;). <code>analysis.no_faces_twin = true</code> "
            "(the main job's default: <code>downpour train</code> trains it into <code>RUN/no-faces</code>) or "
            "<code>downpour crossfit --control no-faces</code> scores that network beside this one.</p>")


def untied_note(sharing: dict[str, Any], samples: Any) -> str:
    """What an untied first layer means, with this run's numbers and cat-untied's measured cost, not a general
    "with the ~1,250 images that ship offline that is far too little data per filter" of every untied layer:
    lcn-digits (3x3 filters, 1,797 digits, supervised) trains on none of those images and measured no such thing."""
    if sharing.get("kind") != "untied":
        return ""
    seen = (f"from their own window of each of the run's {samples:,} training samples (model.json)"
            if isinstance(samples, int) and not isinstance(samples, bool) else "from their own window of each training image")
    return (f'<p class="note">This layer is fully untied: each of its {esc(sharing.get("banks"))} positions has its own '
            f"filters, which learn only {seen}, where shared filters learn from every window. On "
            "<code>cat-untied</code> (1,246 crops, 8x8 filters, seed 0) that left 6.0% of the filters edge-like, "
            "against 41-66% (mean 53%) with the main job's 4 shared banks over 24 seeds (docs/analysis.md, the same "
            "edge test); if these look like noise, give the layer many more images, or share its filters "
            "(model.tile).</p>")


AGREEMENT_UNIQUE = 0.5   # starts' mean cosine below this: solutions over 60 degrees apart, not one optimum


def several_optima(stim: dict[str, Any]) -> str:
    """Words for starts that ended on different inputs, or nothing. The report called the best start's answer
    "the input that excites the unit most" whatever the starts' agreement: cat-demo's 4 starts all reached
    -6.616 with a mean cosine of 0.01 (cat-3stage 0.03, tica-8x8 0.41; ufldl-sae, pyramid-rica 1.00), so its
    picture was one of many inputs the unit answers alike."""
    agreement = stim.get("agreement")
    if agreement is None or agreement >= AGREEMENT_UNIQUE:
        return ""
    moved = [r for r in stim.get("restarts", []) if isinstance(r, (int, float))]
    reached = f", reaching {min(moved):.4g} to {max(moved):.4g}" if len(moved) >= 2 else ""
    return (f": the starts ended on different inputs{reached}, so the picture is one of several inputs the unit "
            "answers about as strongly, not a unique optimum")
