"""The face test's names and its verdict in words (apart from face_controls): what a control test is
about (:class:`Subject`, lfw's faces: :data:`FACES`), the methods' names the rows carry, and which baselines the learned
unit beats on each negative set, read from the rows' numbers (:func:`controls_verdict`: per set, and the summary line
that ``downpour train`` and ``analyze`` print)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from downpour._names import listed
from downpour.analysis.auc_words import auc_ci, listing, paired_words
from downpour.analysis.negatives import CONTROLS, control_label
from downpour.config import AnalysisConfig, DataConfig

LEARNED, TWIN = "learned unit", "random weights, same architecture"
NO_FACES = "the no-faces network"   # the same recipe with data.train_faces = 0: is the unit learned from the faces?
PER_NETWORK = (LEARNED, TWIN, NO_FACES)   # methods whose candidates are a network's units (a cross-fit: a fold's own)
PIXEL, GRADIENT, PROBE = "best single pixel", "gradient energy", "logistic regression on raw pixels"
LFW = "lfw_nonfaces"
LOW_LEVEL = "low-level matched"


@dataclass(frozen=True)
class Subject:
    """What a control test is about, in its sets' names and words: lfw's faces (:data:`FACES`), or a labelled
    folder's concept (:mod:`~downpour.analysis.concept_controls`), so stripes are never called faces."""

    noun: str                   # one image of it: "face", "stripes image"
    negatives: str              # the key of the set it is told from by its labels (lfw's non-faces, the other classes)
    negatives_label: str
    negatives_what: str
    level: str                  # that set's level in the rows ("lfw"); the controls' is LOW_LEVEL
    baselines: str              # what every method but the network's units sees
    kinds: tuple[str, ...] = CONTROLS
    blocks: int = 5             # block_shuffled's grid

    def labels(self) -> dict[str, str]:
        return {self.negatives: self.negatives_label, **{k: control_label(k, self.noun) for k in self.kinds}}


FACES = Subject("face", LFW, "lfw non-faces", "the held-out lfw_subset non-faces", "lfw",
                "native 25x25 grey lfw_subset values in [0, 1], no normalisation or whitening")
NEGATIVES = FACES.labels()


def controls_verdict(rows: list[dict[str, Any]], learned: str = LEARNED, twin: str = TWIN,
                     above_auc: tuple[str, ...] = (PIXEL, GRADIENT), labels: dict[str, str] | None = None) -> dict[str, Any]:
    """Which baselines the learned unit beats on each negative set, from the rows' numbers.

    Rule: the unit *beats* a baseline when their paired difference (its AUC minus the baseline's on the
    same images) has a 95% interval above 0, *loses to* it when that interval is below 0, and is *not
    separated* from it otherwise (rows without a paired figure: its AUC above the upper end of the
    baseline's interval and its own interval above the baseline's AUC, and the mirror for *loses to*).
    Read off the baseline's interval alone, *beats* would let a unit at chance, 0.508 [0.486,
    0.546], "beat" mean intensity fixed at 0.500 on upside-down faces. ``above_interval_of`` /
    ``below_interval_of`` keep that one-sided reading (what the no-faces sentence counts): the unit's AUC above the
    upper end / below the lower end of the baseline's interval. The pass criterion (per negative set): AUC above the
    upper end of the random-weights twin's interval and above the AUCs of ``above_auc`` (best pixel,
    gradient energy), and the unit's own interval above 0.5 (baselines can sit below 0.5 on a control, where a
    unit that cannot tell the faces from it would clear them). Returns ``{"rule", "criterion",
    "per_negatives": [...], "passes_low_level", "sentences"}``: the summary first (the low-level-matched controls that
    meet the criterion, how many of those the unit also *beats* the twin and ``above_auc`` on, and, where the rows have
    the no-faces network, the one-sided reading against it), then one sentence per negative set. ``labels``: each
    negative set's name in words (default: the face test's, :data:`NEGATIVES`).
    """
    per, sentences, labels = [], [], labels or NEGATIVES
    for name in dict.fromkeys(r["negatives"] for r in rows):
        group = {r["method"]: r for r in rows if r["negatives"] == name}
        unit = group[learned]
        beats, loses, unseparated = [], [], []
        for method, r in group.items():
            if method != learned:
                {1: beats, -1: loses, 0: unseparated}[_separated(unit, r, method)].append(method)
        # the unit's AUC against the baseline's interval, either side (not the unit's own interval against the
        # baseline's AUC for "below": the report's "below it on" would count 20 of 96 where "below that network's
        # interval" holds on 24: the 24 main jobs of docs/analysis.md "Trained without a face")
        above = [m for m, r in group.items() if m != learned and unit["auc"] > r["auc_ci"][1]]
        below = [m for m, r in group.items() if m != learned and unit["auc"] < r["auc_ci"][0]]
        # (and the unit must tell the faces from the set at all: a baseline can sit below 0.5 on a control,
        # gradient energy at 0.01 on block-shuffled faces, where a unit at 0.45 would clear every bar)
        missed = _criterion_missed(unit, group, twin, above_auc)
        passes = not missed
        label = labels.get(name, name)
        # (each clause only where it names a baseline: not "beats no baseline; is not separated from ...", nor
        # "beats no baseline" alone where the set has no baseline row)
        said = "; ".join(f"{verb} {listing(ms, group)}{after}" for verb, ms, after in
                         (("beats", beats, _below_chance(beats, group)), ("is not separated from", unseparated, ""),
                          ("loses to", loses, "")) if ms)
        sentence = (f"Against {label}, the learned unit (AUC {auc_ci(unit)}) "
                    + (said or "has no baseline row to compare with")
                    + (". Criterion met." if passes else f". Criterion not met: {'; '.join(missed)}.")
                    + paired_words(unit.get("paired", {}), (twin,) + above_auc + (NO_FACES,)))
        per.append({"negatives": name, "level": unit.get("level", ""), "learned_auc": unit["auc"],
                    "learned_auc_ci": unit["auc_ci"], "paired": unit.get("paired", {}), "beats": beats,
                    "not_separated": unseparated, "loses_to": loses,
                    "above_interval_of": above, "below_interval_of": below,
                    "passes": passes, "sentence": sentence})
        sentences.append(sentence)
    low = [p for p in per if p["level"] == LOW_LEVEL]
    passed = [labels.get(p["negatives"], p["negatives"]) for p in low if p["passes"]]
    summary = (f"On {len(passed)} of {len(low)} low-level-matched controls the learned unit meets the criterion"
               + (f" ({', '.join(passed)})" if passed else "") + _clear_words(low, twin, above_auc, labels))
    if any(NO_FACES in p["paired"] for p in low):
        summary += " " + _from_faces_words([p for p in low if NO_FACES in p["paired"]], labels)
    return {"rule": "beats = its AUC minus the baseline's, paired on the same images, with a 95% interval above 0; loses "
                    "to = that interval below 0; otherwise not separated (without a paired figure: its AUC above the "
                    "baseline's interval and its own interval above the baseline's AUC, and the mirror)",
            "criterion": (f"AUC above the upper end of the interval of \"{twin}\" (the random twin) and above the AUCs "
                          f"of {listed(above_auc)}, and its own interval above 0.5 (point AUCs: the summary also "
                          "counts the controls where it beats each of them by the paired rule)"),
            "per_negatives": per, "passes_low_level": bool(low) and len(passed) == len(low),
            "sentences": [summary] + sentences}


def said_faceless(controls: dict[str, Any], opts: AnalysisConfig, d: DataConfig) -> dict[str, Any]:
    """An analysis's face test (``opts``: its AnalysisConfig) whose summary says where the network saw no lfw face
    (without it, 30 steps on a folder of noise images read "On 4 of 4 low-level-matched controls the learned unit
    meets the criterion", and nothing else)."""
    if opts.runs_face_test() and controls["controls"] and not d.trains_on_faces():
        controls["controls_verdict"]["sentences"][0] += (f" This network trained on no lfw face ({d.no_faces_setting()}): "
                                                         "what its unit tells faces from, it learned from other images.")
    return controls


def _clear_words(low: list[dict[str, Any]], twin: str, above_auc: tuple[str, ...], labels: dict[str, str]) -> str:
    """The stricter reading beside the criterion's count: on how many of the passes the unit also
    *beats* the twin and each of ``above_auc`` by the paired rule (a pass at +0.07 [-0.06, +0.19] over best pixel is not)."""
    met, bars = [p for p in low if p["passes"]], (twin, *above_auc)
    clear = [labels.get(p["negatives"], p["negatives"]) for p in met if set(bars) <= set(p["beats"])]
    short = ["the twin" if b == twin else b for b in bars if any(b not in p["beats"] for p in met)]
    if not met:
        return "."
    one = len(met) == 1     # one pass: "there", not "on 1 of those 1 (the control named again)"
    where = " there" if one else f" on {len(clear)} of those {len(met)}" + (f" ({', '.join(clear)})" if clear else "")
    rest = f"; they leave it not separated from {listed(short, 'or')}{' on the others' * bool(clear)}." if short else "."
    return (f", which compares point AUCs; the paired intervals {'do not put' if one and not clear else 'also put'} it "
            f"above the random-weights twin, {listed(above_auc)}{where}{rest}")


def _from_faces_words(low: list[dict[str, Any]], labels: dict[str, str]) -> str:
    """Whether the unit owes its AUC to the faces: above the no-faces network's on how many controls."""
    above = [labels.get(p["negatives"], p["negatives"]) for p in low if NO_FACES in p["above_interval_of"]]
    below = [labels.get(p["negatives"], p["negatives"]) for p in low if NO_FACES in p["below_interval_of"]]
    return (f"Against {NO_FACES} (the same recipe and seed, trained with data.train_faces = 0), it is above the "
            f"upper end of that network's interval on {len(above)} of {len(low)}"
            + (f" ({', '.join(above)})" if above else "")
            + (f" and below its lower end on {len(below)} ({', '.join(below)})" if below else "")
            + (": on every one the training faces made a difference the intervals can see." if len(above) == len(low)
               else ": on none is it clear of a network that never saw a face." if not above
               else "; on the others it is not clear of a network that never saw a face."))


def _criterion_missed(unit: dict[str, Any], group: dict[str, dict[str, Any]], twin: str,
                      above_auc: tuple[str, ...]) -> list[str]:
    """The parts of the pass criterion the unit misses, in words ([]: it passes). Said in the sentence, since
    *beats* reads the paired interval and the criterion the twin's own: the two can differ."""
    auc, missed = unit["auc"], []
    if twin not in group:
        missed.append(f"no \"{twin}\" row to compare with")     # (quoted: the label has a comma)
    elif not auc > group[twin]["auc_ci"][1]:
        missed.append(f"its AUC {auc:.3f} is not above the upper end of the interval of \"{twin}\" "
                      f"({group[twin]['auc_ci'][1]:.3f})")
    # (a bar without its row misses, as the twin's does: skipped, it would let the summary call the unit "not
    # separated" from a baseline it has no row for)
    missed += [f"no {m} row to compare with" if m not in group
               else f"its AUC is not above {m}'s ({group[m]['auc']:.3f})"
               for m in above_auc if m not in group or not auc > group[m]["auc"]]
    if not unit["auc_ci"][0] > 0.5:
        missed.append(f"its own interval reaches down to {unit['auc_ci'][0]:.3f}, not above 0.5")
    return missed


def _below_chance(beaten: list[str], group: dict[str, dict[str, Any]]) -> str:
    """The words after the baselines the unit beats where some sit below chance, their whole interval under 0.5: they
    rank this set above the concept's images (faces, or a folder's class), so beating them alone does not show the unit
    tells the two apart (its own interval above 0.5 does: the criterion's last part). Without these words the sentence
    reads "beats gradient energy (0.015 [0.001, 0.037])" of a unit at 0.424 [0.311, 0.529] against block-shuffled faces
    (the main job, 20 steps), as if it were a finding."""
    under = [m for m in beaten if group[m]["auc_ci"][1] < 0.5]
    if not under:
        return ""
    one = len(under) == 1
    return (f" ({listed(under)} {'is' if one else 'are'} below chance here, ranking these images above the "
            f"concept's: beating {'it' if one else 'them'} alone does not show the unit tells the two apart)")


def _separated(unit: dict[str, Any], r: dict[str, Any], method: str) -> int:
    """1: the unit is above baseline ``r`` (row of ``method``), -1: below, 0: not separated (the rule of
    :func:`controls_verdict`)."""
    p = unit.get("paired", {}).get(method)
    if p is not None and all(math.isfinite(v) for v in p["ci"]):
        return 1 if p["ci"][0] > 0 else -1 if p["ci"][1] < 0 else 0
    if unit["auc"] > r["auc_ci"][1] and unit["auc_ci"][0] > r["auc"]:
        return 1
    return -1 if r["auc"] > unit["auc_ci"][1] and r["auc_ci"][0] > unit["auc"] else 0
