"""What a reader new to downpour needs around the report's numbers: the findings first, a list of
the sections, where each number is defined, and what each method in the two face tables is.

Without it a student opening report.html meets the loss first, the face test's verdict half-way down, baselines named
only by label ("random weights, same architecture", "gradient energy": what are they?) and no pointer to the docs.
The pointers are text, not links: the page is sent on its own (every picture inlined), so a relative link to the
source's docs/ would break once the file is moved; the in-page links always resolve."""
from __future__ import annotations

import re
from typing import Any

from downpour._names import listed
from downpour.analysis.face_verdict import LOW_LEVEL, PROBE
from downpour.analysis.report_controls import tested_concept
from downpour.analysis.report_notes import collapsed, one_orientation
from downpour.analysis.report_parts import esc

DOCS = "docs/analysis.md"
READING = ("Reading the report", "reading-the-report")        # (heading, its anchor on GitHub)
FACE_TEST = ("The face test: low-level-matched negatives, one choice, intervals",
             "the-face-test-low-level-matched-negatives-one-choice-intervals")
CONCEPT = ("Your concept against low-level-matched controls",      # (a folder's: no face named)
           "your-concept-against-low-level-matched-controls")

# One line per method the best-neuron and face-test tables name (face_verdict's and selectivity's labels); "best of N
# random linear filters" is matched by its start, its N being analysis.random_filters.
METHODS = {
    "learned unit": "one unit of this trained network's analysed layer, the one the choice picks (the paper's "
                    "&ldquo;face neuron&rdquo; is such a unit)",
    "learned unit, paper style": "the same unit scored as the 2012 paper scored it: unit and threshold chosen by "
                                 "accuracy on the very images it is scored on, so higher than a held-out score",
    "chance (majority class)": "always answers the selection images' more common class",
    "random weights, same architecture": "the random twin: this network as the registry builds it with the torch "
                                         "seed set to the config's seed + 1 (its own seed would give the weights it "
                                         "started training from), never trained, its best unit chosen the same way; "
                                         "what the architecture gives without learning",
    "the no-faces network": "the same recipe and seed trained with no face at all (data.train_faces = 0: the main "
                            "job's no-faces/ folder, or analysis.no_faces_run); what the training faces add",
    "best single pixel": "one raw grey pixel, chosen the same way",
    "best of": "random weighted sums of the raw pixels, the best one chosen the same way: what one untrained linear "
               "feature gets",
    "mean intensity": "the image's mean grey level",
    "contrast (std)": "the standard deviation of the image's grey levels",
    "gradient energy": "the mean squared difference between neighbouring pixels of the image scaled to zero mean and "
                       "unit std: how much fine texture it has",
    "logistic regression on raw pixels": "a classifier trained with the labels on all the raw pixels at once: a "
                                         "ceiling for a linear read-out, not one unit",
}
# The accuracy table's rows (selectivity.py) name the face test's PROBE otherwise; analysis.json keeps each name (its
# rows and over_splits are looked up by it), the page shows one, so the two tables name it one way.
SHOWN_AS = {"linear probe on raw pixels (logistic regression)": PROBE}


def method_name(method: str) -> str:
    """A method as the report names it: one name per method in every table (:data:`SHOWN_AS`)."""
    return SHOWN_AS.get(method, method)


def _meaning(method: str) -> str | None:
    if method in METHODS:
        return METHODS[method]
    if method.startswith("learned unit, paper style"):      # (its label goes on to say how it is chosen)
        return METHODS["learned unit, paper style"]
    return METHODS["best of"] if re.fullmatch(r"best of \d+ random linear filters", method) else None


def methods_glossary(a: dict[str, Any]) -> str:
    """What each method of the best-neuron and face-test tables is, in the order the tables name them (a method this
    module has no line for is left out, not guessed)."""
    fn = a.get("face_neuron") or {}
    names = [r.get("method") for r in [*fn.get("rows", []), fn.get("paper_style") or {}, *(fn.get("controls") or [])]]
    lines = {name: _meaning(name) for name in dict.fromkeys(method_name(n) for n in names if isinstance(n, str))}
    items = "".join(f"<dt>{esc(name)}</dt><dd>{meaning}</dd>" for name, meaning in lines.items() if meaning)
    if not items:
        return ""
    heading = CONCEPT[0] if tested_concept(a) else FACE_TEST[0]
    return ('<details id="methods" open><summary>What each method in these tables is</summary>'
            "<p>Every method but the networks sees the raw grey pixels, the same for every run, not the run's "
            f"prepared input. Their full definitions: <code>{DOCS}</code>, &ldquo;{esc(heading)}&rdquo;, in the "
            f"downpour source.</p><dl>{items}</dl></details>")


def in_short(a: dict[str, Any], face_test: str) -> str:
    """The findings `downpour analyze` prints, first on the page: the edge-like share and the face test's summary
    sentence, each with a link to its section (``face_test``: that section's title)."""
    edges = (a.get("filters") or {}).get("edge_fraction")
    verdict = (a.get("face_neuron") or {}).get("controls_verdict") or {}
    sentences = verdict.get("sentences") or []
    held = classifier_words(a.get("classifier"))      # a supervised digits or faces run's first figure
    items = ([f'<li><a href="#classifier">Classifier accuracy</a>: {esc(held)}.</li>'] if held else [])
    items += ([f'<li><a href="#filters">First-layer filters</a>: {100 * edges:.0f}% edge-like'
              f'{edge_ci(a["filters"])}{edge_caveat(a["filters"])}.</li>'] if isinstance(edges, (int, float)) else [])
    if sentences:
        items.append(f'<li><a href="#face-test">{esc(face_test)}</a>: {esc(passed_words(verdict) + sentences[0])}'
                     f'{esc(trained_words(a))}</li>')
    if sentences and verdict.get("criterion"):   # the word the line leans on, defined where it is first read
        items.append(f"<li>The criterion, on each control: the learned unit's {esc(verdict['criterion'])}.</li>")
    return f"<p>In short:</p><ul>{''.join(items)}</ul>" if items else ""


IMAGES = {"digits": "digits", "lfw": "lfw images"}   # what analysis.json's classifier.dataset scored, in words


def classifier_words(c: dict[str, Any] | None) -> str:
    """A supervised run's own classifier on its held-out images (digits or lfw's) against its training ones
    (analysis.json's ``classifier``), or that it held none out; "" without one (an unsupervised network)."""
    if not c:
        return ""
    train = c["train"]
    trained = f"{train['accuracy']:.1%} [{train['ci'][0]:.1%}, {train['ci'][1]:.1%}] on the {train['n']:,} trained on"
    held = c.get("heldout")
    if not held:
        return f"no held-out digit (data.digits_heldout = 0): {trained}, which measures fit"
    return (f"{held['accuracy']:.1%} [{held['ci'][0]:.1%}, {held['ci'][1]:.1%}] on {held['n']:,} held-out "
            f"{IMAGES.get(c.get('dataset'), 'images')}, against {trained} (majority class {c['chance']:.1%})")


def trained_words(a: dict[str, Any]) -> str:
    """After the face test's summary (the page's and `downpour analyze`'s): that a supervised network trained on the
    face labels (analysis.json's ``face_neuron.trained_on`` "labels") has its unit from them; "" otherwise."""
    if (a.get("face_neuron") or {}).get("trained_on") != "labels":
        return ""
    return (" The network was trained on the face labels: its unit answers what it was trained to, not a face found "
            "without labels; the classifier's held-out accuracy is its figure.")


def passed_words(verdict: dict[str, Any]) -> str:
    """The test's outcome before its summary sentence (the report's and `downpour analyze`'s), from ``passes_low_level``
    (the criterion met on every low-level-matched control): without it the main job's "On 1 of 4 ... meets the criterion
    (upside-down faces), which ..." opens the page without saying that one of four is a fail. Nothing where it was not
    run."""
    low = [p for p in verdict.get("per_negatives") or [] if p.get("level") == LOW_LEVEL]
    if not low:
        return ""
    return ("Passed (the criterion is met on every low-level-matched control). " if verdict.get("passes_low_level")
            else "Not passed (passing needs the criterion met on every low-level-matched control). ")


def edge_ci(f: dict[str, Any]) -> str:
    """", 95% interval 31%–72%" after the edge-like share where it was first said (the page's findings, `downpour
    analyze`'s headline), not only in the filters section (``filters.edge_fraction_ci``; "" for an analysis.json
    written before 2026-12-06, which lacks it)."""
    ci = f.get("edge_fraction_ci")
    return f", 95% interval {ci[0]:.0%}–{ci[1]:.0%}" if ci else ""


def edge_caveat(f: dict[str, Any]) -> str:
    """What the filters section says against its edge-like share, in a clause: rbm-digits after 30 steps read "100%
    edge-like" first on the page (and in `downpour analyze`'s headline) while its section said they were one filter
    copied, of one orientation."""
    said = [words for words, note in (("most of them copies of a few", collapsed(f)),
                                      ("all of one orientation", bool(one_orientation(f)))) if note]
    return f" (but {listed(said)}: not a bank of edge detectors)" if said else ""


def contents(body: str) -> str:
    """A list of links to ``body``'s sections (each ``<h2 id=...>``), and where each number is defined."""
    links = " · ".join(f'<a href="#{i}">{title}</a>' for i, title in re.findall(r'<h2 id="([^"]+)">(.*?)</h2>', body))
    return (f'<nav><p class="note">Sections: {links}. What each number means, one line each: <code>{DOCS}</code>, '
            f"&ldquo;{READING[0]}&rdquo;, in the downpour source.</p></nav>")


def two_learned_units(a: dict[str, Any]) -> str:
    """A note where the best-neuron table's learned unit is not the unit the face test chose and the pictures show (the
    main job: 482 in the table, 452 below it): each is chosen on its own images."""
    fn = a.get("face_neuron") or {}
    table = next((r for r in fn.get("rows", []) if r.get("method") == "learned unit"), {}).get("unit")
    pictured = fn.get("pictured") or {}
    by_face_test = str(pictured.get("chosen_by", "")).startswith("the face")
    if table is None or pictured.get("unit") in (None, table) or not by_face_test:
        return ""
    split = fn.get("split") or {}
    chosen_on = str((fn.get("controls_setup") or {}).get("selection", "other images")).removesuffix(", once")
    return (f'<p class="note">This table\'s learned unit ({esc(table)}) is not the face test\'s below ('
            f"{esc(pictured['unit'])}, the unit the later pictures show): this table chooses on its selection split "
            f"of {esc(split.get('selection', '?'))} images, the face test on {esc(chosen_on)}: on other images "
            "another of the layer's units can come out on top.</p>")
