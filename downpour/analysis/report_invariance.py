"""The report's invariance sentences (apart from report_notes): the table's rows (each transform's range,
in its units, said to be a lower bound where it runs to the sweep's end), the AUC ranges beside them, the widths over
the units tied at the top of the choice, what the curves' 1 and 0 are and what a warp put where it uncovers area
outside the image (analysis.invariance_fill)."""
from __future__ import annotations

from typing import Any

from downpour.analysis.circle import round_through, went_round
from downpour.analysis.invariance import RELATIVE, identity_index, kept_auc, whole_turn
from downpour.analysis.invariance_widths import range_width, width_units
from downpour.analysis.report_parts import esc

_UNITS = {"scale": "× {:g} … × {:g}", "translation_x": "{:g} … {:g} pixels", "translation_y": "{:g} … {:g} pixels",
          "rotation": "{:g} … {:g} degrees", "out_of_plane_rotation": "{:g} … {:g} degrees"}


def warped_against(a: dict[str, Any]) -> tuple[str, str]:
    """What the invariance sweep's AUC sets the concept's images against (analysis.json's object): lfw's faces against
    its non-faces, any other concept (a folder's class, a digit) against the other classes, so the report and
    the figure do not say "non-faces" of a folder's cat images against its other photos."""
    options = a.get("options") or {}
    if options.get("dataset", "lfw") == "lfw" and options.get("positive", 1) in (1, "face"):
        return "faces", "non-faces"
    return str((a.get("face_neuron") or {}).get("positive_class", "the concept")), "the other classes"


def invariance_rows(inv: dict[str, Any]) -> list[list[str]]:
    """[transform, range] for the report's invariance table: in its units, and a range that runs to an end of
    the measured sweep said to (the unit may hold up further: the range is a lower bound there). A curve whose
    untransformed images leave the unit short of its baseline has no range: said so, not a bare "–"."""
    swept = {c["transform"]: c for c in inv.get("curves", [])}
    rows = []
    for name, r in inv.get("summary", {}).get("ranges", {}).items():
        curve = swept.get(name, {})
        if r is None:
            short = curve.get("normalised_to", inv.get("normalised_to", RELATIVE)) != RELATIVE   # (a pose curve's own)
            unswept = curve.get("values") and identity_index(curve) is None    # (said, not "–")
            rows.append([name, _no_identity(name) if unswept else
                         f"none: the unit is not {_side(inv)} its baseline even at the identity" if short else "–"])
            continue
        text = _range_text(name, r)
        values = curve.get("values")
        # the summary's flag (a range that went round past +-180 ends beyond the sweep, measured), read from the
        # range in a file written before 2026-12-05, which has no flag (its ranges do not go round)
        flags = inv["summary"].get("censored")
        ended = bool(values) and bool(flags.get(name) if flags is not None else _at_an_end(r, values))
        rows.append([name, text + _end_words(name, r, ended, values)])
    return rows


def _range_text(name: str, r: list[float]) -> str:
    """``name``'s range ``r`` in its units; a rotation range that went round past +-180 (walked as -15 … 270,
    :mod:`~downpour.analysis.circle`) as the two signed arcs it covers, its width and the angles it leaves out:
    "from -15 round through 180 to -90 degrees", not the walk's "-15 … 270 degrees", an angle no sweep has."""
    if not went_round(name, r) or whole_turn(name, r):
        return _UNITS.get(name, "{:g} … {:g}").format(*r)
    lo, hi = r
    a, b = (lo, hi - 360) if hi > 180 else (lo + 360, hi)
    return f"{round_through(a, b)} degrees ({hi - lo:g} wide: every angle but those between {b:g} and {a:g})"


def _no_identity(name: str) -> str:
    """The words for a curve whose sweep lacks the identity (a custom sweep): nothing untransformed to keep."""
    return (f"none: the sweep has no untransformed point ({'scale 1' if name == 'scale' else name + ' 0'}), so "
            "nothing untransformed to keep")


def _at_an_end(r: list[float], values: list[float]) -> bool:
    """Whether the range ``r`` runs to an end of the sweep ``values``: the unit may hold up further (invariance.py's
    ``censored``, read from the range where a file predates the flag)."""
    return r[0] <= min(values) or r[1] >= max(values)


# the words after a rotation range of the whole turn (:func:`~downpour.analysis.invariance.whole_turn`): it ran to both
# ends of the sweep, but -180 and 180 degrees are one angle, so it is measured (it read "the whole sweep: at least this")
EVERY_ANGLE = " (every angle: the whole turn)"


def _end_words(name: str, r: list[float], ended: bool, values: list[float]) -> str:
    """The words after ``name``'s range ``r``: :data:`EVERY_ANGLE` for the whole turn; where it ran to an end of the
    sweep ``values`` (``ended``), that it is a lower bound there; else none (a range that went round past +-180,
    :func:`~downpour.analysis.circle.went_round`, is measured: :func:`_range_text` writes it)."""
    if whole_turn(name, r):
        return EVERY_ANGLE
    if went_round(name, r) or not ended:     # (one that went round is measured, :func:`_range_text` says how)
        return ""
    whole = r[0] <= min(values) and r[1] >= max(values)
    return " (the whole sweep: at least this)" if whole else " (to the sweep's end: at least this far)"


def range_ci_cells(inv: dict[str, Any]) -> list[str] | None:
    """Per row of :func:`invariance_rows`, its range's width with the 95% bootstrap interval over the test images
    (analysis.json's ``invariance.summary.range_ci``: "2.5 octaves [1.5, 3]; ends × [0.177, 0.25]
    and × [1.75, 2.828]"), "–" for a transform without one (a pose curve); None for a file without intervals."""
    summary = inv.get("summary", {})
    ranges = summary.get("ranges", {})
    return _ci_cells(ranges, summary.get("range_ci"), ranges)


def selectivity_ci_cells(inv: dict[str, Any]) -> list[str] | None:
    """Per row of :func:`invariance_rows`, the AUC range's width with its 95% bootstrap interval, both classes
    resampled (``invariance.selectivity.range_ci``), and the untransformed AUC's: as
    :func:`range_ci_cells`, "; untransformed AUC [0.61, 0.83]" after it."""
    sel = inv.get("selectivity") or {}
    cis, rows = sel.get("range_ci"), inv.get("summary", {}).get("ranges", {})
    cells = _ci_cells(sel.get("ranges", {}), cis, rows)
    if cells is None:
        return None
    for i, name in enumerate(rows):
        at = (cis.get(name) or {}).get("auc")
        if at is not None:
            said = f"untransformed AUC [{at[0]:.3f}, {at[1]:.3f}]"
            cells[i] = said if cells[i] == "–" else f"{cells[i]}; {said}"
    return cells


def _ci_cells(ranges: dict[str, Any], cis: dict[str, Any] | None, rows: Any) -> list[str] | None:
    """The cells of :func:`range_ci_cells` and :func:`selectivity_ci_cells`: per name of ``rows``, its range in
    ``ranges`` and its interval in ``cis``."""
    if not cis:
        return None
    out = []
    for name in rows:
        ci, r = cis.get(name), ranges.get(name)
        if ci is None or r is None:
            out.append("–")
            continue
        b = ci["replicates"]
        if ci["width"] is None:
            out.append(f"none: no resampled set of the images has a range ({b} resamples)")
            continue
        mark = "× " if name == "scale" else ""
        (w0, w1), low, high = ci["width"], _ends(name, ci["low"]), _ends(name, ci["high"])
        text = f"{range_width(name, r):.3g} {width_units(name)} [{w0:.3g}, {w1:.3g}]; ends {mark}{low} and {mark}{high}"
        if ci["censored"]:
            text += f"; {ci['censored']} of {b} resamples to the sweep's end"
        if ci["without_range"]:
            text += f"; {ci['without_range']} of {b} without a range, left out"
        out.append(text)
    return out


def wide_intervals(inv: dict[str, Any]) -> str:
    """A sentence naming the transforms whose width's interval (``invariance.summary.range_ci``) is wider than the width
    itself, "" where none is: on lfw's 30 held-out faces a cat-demo run's scale range reads "0.17 octaves [0, 5.17]",
    and a reader comparing two runs' widths needs the word that one run's width says little."""
    summary = inv.get("summary", {})
    ranges, cis = summary.get("ranges", {}), summary.get("range_ci") or {}
    wide = [name for name, ci in cis.items() if ci and ci.get("width") is not None and ranges.get(name) is not None
            and ci["width"][1] - ci["width"][0] > range_width(name, ranges[name])]
    if not wide:
        return ""
    return (f" On {inv.get('images', 'these')} images the interval is wider than the width itself for "
            f"{', '.join(wide)}: one run's width there says little; compare seeds (a study) before reading a "
            "difference between two runs' widths.")


def _ends(name: str, interval: list[float]) -> str:
    """One end's interval in :func:`_ci_cells`: "[a, b]"; for rotation, angles past +-180 (a resample's walk round the
    turn, :mod:`~downpour.analysis.circle`) as the angles they are, and an interval that crosses it in words, as
    :func:`_range_text` writes a range: "[from 135 round through 180 to -45]", not in the walk's own coordinates
    ("[-225, -45]", an angle no sweep has). An interval a whole turn
    wide or wider (-190 … 190) holds every angle, as :func:`~downpour.analysis.circle.walked_range` reads a walk that
    met itself, and is written as a range of the whole turn is (:data:`EVERY_ANGLE`): "[-180, 180] (every angle: the
    whole turn)", not "[170, -170]", which reads as a 20-degree arc."""
    if name != "rotation":
        return f"[{interval[0]:g}, {interval[1]:g}]"
    if whole_turn(name, interval):
        return "[-180, 180]" + EVERY_ANGLE        # (a range's words: one turn, whose ends are one angle)
    a, b = (v - 360 if v > 180 else v + 360 if v < -180 else v for v in interval)
    crossed = (a != interval[0]) != (b != interval[1])
    if crossed and (a == 180 or b == -180):     # an end at ±180, one angle: [180, 225] is -180 … -135, not an arc
        a, b, crossed = (-180 if a == 180 else a), (180 if b == -180 else b), False    # "from 180 round through 180"
    return f"[{round_through(a, b)}]" if crossed else f"[{a:g}, {b:g}]"


def selectivity_rows(inv: dict[str, Any]) -> list[str]:
    """Per row of :func:`invariance_rows`, the range where the unit's AUC of the warped concept images against the other
    class warped alike stays >= halfway between chance and its untransformed AUC (analysis.json's
    ``invariance.selectivity``), "–" for a transform it lacks (out-of-plane rotation)."""
    sel = inv.get("selectivity") or {}
    swept = {c["transform"]: c for c in inv.get("curves", [])}
    out = []
    for name in inv.get("summary", {}).get("ranges", {}):
        if name not in sel.get("ranges", {}):
            out.append("–")
            continue
        r, auc = sel["ranges"][name], sel["auc"][name]
        if auc is None:         # (a custom sweep without it: not the nearest value's)
            out.append(_no_identity(name))
            continue
        if r is None:
            out.append(f"none: AUC {auc:.3f} untransformed, no lead over chance to keep")
            continue
        text = _range_text(name, r) + f" (AUC ≥ {kept_auc(auc, sel['keep']):.3f})"
        out.append(text + _end_words(name, r, sel["censored"].get(name), swept.get(name, {}).get("values") or r))
    return out


def _side(inv: dict[str, Any]) -> str:
    """Which way the unit answers the concept: a unit the concept lowers (sign -1) is measured below its baseline."""
    return "below" if inv.get("sign", 1) < 0 else "above"


def invariance_words(inv: dict[str, Any]) -> str:
    """What the invariance curves' 1 and 0 are (up to the standard-error clause). It said "the untransformed response
    above the unit's mean on the other class" of every unit: ufldl-sae's unit 3, which faces lower (0.002 against
    0.039), and a folder's unit whose concept images did not move it past that mean at all (rings after 200 steps:
    curves divided by their largest value, a table of bare "–" and no word why)."""
    side = _side(inv)
    mean = f"the unit's mean on the other class ({inv.get('baseline', 0):.3g}; 0 on this scale)"
    head = f"Response of unit {esc(inv['unit'])} over {esc(inv['images'])} images of the concept"
    if inv.get("normalised_to", RELATIVE) == RELATIVE:
        return f"{head}, how far {side} {mean}, as a share of the untransformed images' (1 on this scale)"
    return (f"{head}: on the untransformed images it is not {side} {mean}, so it has no response there to keep and "
            f"no range is read; the curves show only their shape, how far {side} that mean, divided by "
            "the largest such value")


def tied_invariance(inv: dict[str, Any], selectivity: bool = False) -> list[str]:
    """Per row of :func:`invariance_rows`, the range's width over the units tied with the pictured one (analysis.json's
    ``invariance.tied``): "0.85 ± 0.30 octaves, median 0.90 (0–1), over the 5 of 7 with a range",
    and how many ran to the sweep's end (", 2 of them to the sweep's end: the mean is at least this"). A tied unit
    without a range answers the concept no more than its baseline: left out of the figures, and said
    (:func:`tied_unresponsive`); a median beside the mean (files written before 2026-12-05 have none).
    ``selectivity``: the widths of the AUC ranges (``invariance.tied.selectivity``, :func:`selectivity_rows`' ranges)
    instead, in the same words; a unit at or below chance untransformed has none. The mean's 95% interval over resamples
    of the images (``invariance.tied.mean_ci``, :func:`~downpour.analysis.invariance_ci.tied_intervals`) follows the ±:
    the std is the units' spread, not how far another set of images would move the mean."""
    tied = inv.get("tied") or {}
    src = (tied.get("selectivity") or {}) if selectivity else tied
    widths = src.get("widths", {})
    mean_cis = (tied.get("mean_ci") or {}).get("selectivity" if selectivity else "widths") or {}
    out = []
    for name in inv.get("summary", {}).get("ranges", {}):
        w = widths.get(name)
        if not w:                 # (out-of-plane rotation: the chosen unit's alone)
            out.append("–")
        elif w["mean"] is None:
            out.append(f"none of {tied['size']} has a range")
        else:
            # (a range at the sweep's end is a lower bound, so the mean is too: the column says so)
            # (a rotation range of the whole turn ran to both ends but is measured: counted apart)
            turns = sum(whole_turn(name, r) for r in src.get("ranges", {}).get(name) or [])
            ended = max(0, (w["censored"] if "censored" in w else _ended(inv, name)) - turns)
            at_end = f", {ended} of them to the sweep's end: the mean is at least this" if ended else ""
            at_end += f", {turns} of them at every angle (the whole turn)" if turns else ""
            median = f", median {w['median']:.3g}" if w.get("median") is not None else ""
            up = _upper_end(widths["scale_up"]) if name == "scale" and "scale_up" in widths else ""
            ci = mean_cis.get(name)
            ci = f" (the mean's 95% interval over the resampled images: [{ci[0]:.3g}, {ci[1]:.3g}])" if ci else ""
            spread = f"{w['mean']:.3g} ± {w['std']:.2g} {w['units']}{ci}{median} ({w['min']:.3g}–{w['max']:.3g})"
            out.append(f"{spread}, over "
                       + (f"the {w['measured']} of {tied['size']} with a range" if w["measured"] < tied["size"]
                          else f"all {tied['size']}") + at_end + up)
    return out


def _upper_end(u: dict[str, Any]) -> str:
    """The scale width's upper end alone over the tied units (``widths.scale_up``; the two-sided width's
    sweep's-end count cannot say which end ran out, nearly always the shrinking one):
    "; its upper end 1 ± 0.5 octaves above 1x, median 1 (0.5–1.5), 1 of them at the sweep's largest scale"."""
    if u.get("mean") is None:
        return ""
    ended = u.get("censored") or 0
    median = f", median {u['median']:.3g}" if u.get("median") is not None else ""
    return (f"; its upper end {u['mean']:.3g} ± {u['std']:.2g} {u['units']}{median} "
            f"({u['min']:.3g}–{u['max']:.3g}), " + (f"{ended} of them at the sweep's largest scale: at least this"
                                                    if ended else "none at the sweep's largest scale"))


def fill_words(inv: dict[str, Any]) -> str:
    """What the warps put where they uncover area outside the image (analysis.json's ``invariance.fill``; a file
    written before 2026-12-05 has none, and was measured with the edges repeated, the only fill then)."""
    fill = inv.get("fill", "border")
    if fill == "mean" and inv.get("rotation_aperture") == "disc":
        return ("What a shift or a shrink uncovers is each image's own mean, a plain canvas "
                '(analysis.invariance_fill = "mean"); the rotation sweep shows every image, the unturned one too, inside '
                "the disc inscribed in the frame, that mean outside it (rotation_aperture = \"disc\"), so the canvas is "
                "the same at every angle and only the content turns.")
    if fill == "mean":      # (measured on 2026-12-05 before the disc: a turn's corners met the image in a moving edge)
        return ("What a warp uncovers (a shift, a shrink, a turn's corners) is each image's own mean, a plain canvas "
                '(analysis.invariance_fill = "mean"); the turned images were not in a disc (this analysis.json '
                "was made before the rotation aperture), so a turn's flat corners met the image in an edge that moves "
                "with the angle.")
    before = "" if "fill" in inv else ", the only fill when this analysis.json was made"
    return (f"What a warp uncovers (a shift, a shrink, a turn's corners) is the image's edge pixels repeated "
            f'(analysis.invariance_fill = "{esc(fill)}"{before}): an image shifted far stays a smear of itself, so its '
            "translation ranges may run long.")


def _ended(inv: dict[str, Any], name: str) -> int:
    """How many of the tied units' ranges for ``name`` run to an end of the sweep, counted from ``invariance.tied.ranges``
    and the pictured unit's curve (the tied units share its sweep): an analysis.json from before 2026-12-05 has no
    ``censored`` count, and its column read such widths (2.00 octaves, the whole 0.5x-2x sweep) as measured."""
    values = next((c["values"] for c in inv.get("curves", []) if c["transform"] == name), None)
    ranges = (inv.get("tied") or {}).get("ranges", {}).get(name) or []
    if not values:
        return 0
    return sum(1 for r in ranges if r is not None and _at_an_end(r, values))


def tied_unresponsive(inv: dict[str, Any]) -> str:
    """The sentence on the tied units without a range (analysis.json's ``invariance.tied.unresponsive``), "" when every
    one has a range."""
    tied = inv.get("tied") or {}
    n = len(tied.get("unresponsive", []))
    if not n:
        return ""
    return (f" {n} of the {tied['size']} tied units answer these images no more than the other class (their "
            "baseline): they have no response for a transform to keep, so no range; the widths are over the other "
            f"{tied['size'] - n}, not {n} zeros among them (a zero would be a unit that loses its answer at the first "
            "step).")
