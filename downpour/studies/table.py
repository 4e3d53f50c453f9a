"""A study's tables as cells, one set of rules for study.html and study.md: each condition's parameters and figures
(value [low, high], with what its interval left out or only bounds), and each comparison the verdict reads with its
p-values. A :class:`Markup` says how text is escaped and how an aside after a figure is set (HTML's ``<small>``,
plain text in markdown); the pages assemble the cells into their own tables."""
from __future__ import annotations

import html
import math
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from downpour._names import listed, plural
from downpour.studies import STUDIES, design_class
from downpour.studies.about import ABOUT
from downpour.studies.bounds import bound_caption
from downpour.studies.captions import caption_of
from downpour.studies.column_words import column_words
from downpour.studies.data_note import data_sentence
from downpour.studies.figure_words import figure_words
from downpour.studies.holm import under_holm
from downpour.studies.words import no_spread, unbounded

Shown = Callable[[dict[str, Any], str], "str | None"]   # a study's own HTML for a row's param or extra cell, or None


@dataclass(frozen=True)
class Markup:
    escape: Callable[[str], str]      # text as the page shows it
    small: Callable[[str], str]       # an aside after a figure, "(3 of 8 seeds left out)", with its leading space
    shown: Callable[[str], str]       # a study's own cell (HTML, :meth:`~downpour.studies.base.Study.shown`) here
    head: Callable[[str, str], str]   # a column's heading (words, key): study.html's carries its key as its title


def _unhtml(text: str) -> str:
    return html.unescape(text.replace("<small>", "").replace("</small>", ""))


def _titled(words: str, key: str) -> str:
    return html.escape(words) if words == key else f'<span title="{html.escape(key)}">{html.escape(words)}</span>'


HTML = Markup(html.escape, lambda s: f" <small>{s}</small>", lambda s: s, _titled)
MARKDOWN = Markup(lambda s: s.replace("|", "\\|").replace("\n", " "), lambda s: f" {s}",
                  lambda s: _unhtml(s).replace("|", "\\|"), lambda words, key: MARKDOWN.escape(words))


def fmt(value: Any, markup: Markup = HTML) -> str:
    """A number for a table: 3 significant digits; ints as they are; nan as '–'."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return markup.escape(str(value))
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return "–" if math.isnan(value) else ("∞" if value > 0 else "−∞")
    return f"{value:.3g}"


DEGENERATE = "a degenerate measure, drawn ◇ in its figure"    # a figure with no spread over more than one seed


def interval(triple: list[float] | tuple[float, float, float], difference: bool = False, markup: Markup = HTML) -> str:
    """'0.42 [0.38, 0.46]'; an interval with an end not finite in the verdicts' words (:func:`~downpour.studies.words.
    unbounded`; a paired ``difference`` 0 in every seed of too few: "0 (no seed differed: too few seeds to tell)"),
    not "0 [−∞, ∞]"."""
    value, low, high = triple
    if math.isfinite(value) and not (math.isfinite(low) and math.isfinite(high)):
        return fmt(value, markup) + markup.small(f"({markup.escape(unbounded(triple, difference))})")
    return fmt(value, markup) + markup.small(f"[{fmt(low, markup)}, {fmt(high, markup)}]")


def figure(row: dict[str, Any], key: str, markup: Markup = HTML) -> str:
    """One figure's cell: value [low, high], and the seeds its interval left out, if any."""
    if key not in row["figures"]:
        return ""
    left_out = row.get("missing", {}).get(key)
    value, low, high = row["figures"][key]
    if no_spread((value, low, high)) and row["n"] > 1:
        # (up to rounding: 0.8999999999999999 [0.8999999999999989, 0.9000000000000009] was shown as 0.9 [0.9, 0.9])
        # no spread: Student's t gives zero width however few the seeds (a probe's 27 of 30 right in both of 2
        # seeds read 0.900 [0.900, 0.900], as certain as a thousand seeds); say what it is instead
        # (and its figures draw it ◇, figures.SAME_MARK: the table and the figure say the measure is degenerate)
        shown = fmt(value, markup) + markup.small(f"(the same in every seed{' measured' if left_out else ''}: "
                                                  f"{DEGENERATE})")
    else:
        shown = interval(row["figures"][key], key.startswith(("d_", "delta_")), markup)
    ended = row.get("censored", {}).get(key)     # (a range at the sweep's end is a lower bound)
    if ended and not key.startswith("d_"):
        shown += markup.small(f"({ended} of {row['n']} seeds at the sweep's end: at least this)")
    why = f", {ended} with both at the sweep's end" if ended and key.startswith("d_") else ""
    b = row.get("bounded", {}).get(key)      # (one range at the sweep's end gives only a bound)
    if b:
        shown += markup.small(f"({b['at_least'] + b['at_most']} of the {b['kept']} seeds kept only a bound)")
    return shown + (markup.small(f"({left_out} of {row['n']} seeds left out{why})") if left_out else "")


def plain(value: Any, markup: Markup = HTML) -> str:
    if isinstance(value, dict):       # (staleness's diverged_vs: seeds, delta, reading; was shown as a Python repr)
        return "; ".join(f"{markup.escape(str(k))} {plain(v, markup)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v, markup) for v in value)
    return fmt(value, markup)


def conditions(rows: list[dict[str, Any]], shown: Shown | None = None, headings: dict[str, str] | None = None,
               markup: Markup = HTML) -> tuple[list[str], list[list[str]], int]:
    """The conditions table: its headings, one list of cells per condition, and how many columns from the left are
    text (the condition and its parameters; the rest are numbers). ``shown(row, key)``: the study's own HTML for a
    parameter's or an extra's cell (None: as stored); ``headings``: a column's heading by key."""
    own = shown or (lambda row, key: None)
    params, figures, extra = keys = _keys(rows)
    columns = [markup.head(words, key) for key, words in headed(keys, headings)]    # params', figures', extras'
    head = [markup.head("condition", "condition"), *columns[:len(params)], "n", *columns[len(params):]]

    def mine(row: dict[str, Any], key: str, stored: str) -> str:
        cell = own(row, key)
        return stored if cell is None else markup.shown(cell)

    body = [[markup.escape(r["condition"]), *(mine(r, k, fmt(r["params"].get(k, ""), markup)) for k in params),
             str(r["n"]), *(figure(r, k, markup) for k in figures),
             *(mine(r, k, plain(r.get("extra", {}).get(k, ""), markup)) for k in extra)] for r in rows]
    return head, body, 1 + len(params)


def _keys(rows: list[dict[str, Any]]) -> tuple[list[str], list[str], list[str]]:
    """The conditions table's keys in its order: the rows' params, figures and extras."""
    return tuple(list(dict.fromkeys(k for r in rows for k in r.get(part, {})))   # type: ignore[return-value]
                 for part in ("params", "figures", "extra"))


def _named(key: str, figures: list[str]) -> str:
    # an extra named as a figure (the mechanisms study's readings of its paired differences) is that figure's reading:
    # its column said "d_probe_digits" twice, once the interval and once "lower"
    return f"{key} reading" if key in figures else key


def headed(keys: tuple[list[str], list[str], list[str]],
           headings: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """(column key, heading) for each of the conditions table's params, figures and extras: the study's own heading
    (``headings``) or the key in words (:func:`~downpour.studies.column_words.column_words`)."""
    params, figures, extra = keys
    own = headings or {}

    def words(key: str) -> str:
        if key.endswith(" reading"):
            return own.get(key) or column_words(key[:-len(" reading")]) + " reading"
        return own.get(key) or column_words(key)
    return [(k, words(k)) for k in [*params, *figures, *(_named(k, figures) for k in extra)]]


def keys_note(rows: list[dict[str, Any]], headings: dict[str, str] | None = None) -> str:
    """Under the conditions table (plain text): each heading in words with the key study.json stores it by, where
    they differ, so that a column is found in study.json and a reader's script."""
    said = headed(_keys(rows), headings)
    pairs = [f"{words}: {key}" for key, words in said if words != key]
    delta = (" Δ: a paired difference, each seed's figure minus its reference condition's on the same seed."
             if any(words.startswith("Δ ") for _, words in said) else "")
    return f"Columns by study.json's keys: {'; '.join(pairs)}.{delta}" if pairs else ""


def comparisons(rows: list[dict[str, Any]], markup: Markup = HTML) -> tuple[list[str], list[list[str]]]:
    """One line per comparison the verdict reads (``row["tests"]``): what the condition is compared with (the test's
    ``against``; a correlation, with 0), its figure in the verdict's words (:func:`~downpour.studies.figure_words.
    figure_words`), its reading, p and Holm's p. Without what it is against, templates' two comparisons of what the
    faces gave the face unit (against the no-faces twin, against the reference condition) read as one line twice."""
    head = ["condition", "against", "comparison", "reading", "p", "Holm p", "under Holm"]
    body = [[markup.escape(r["condition"]), markup.escape(_against(t)), markup.escape(figure_words(name)),
             markup.escape(t["reading"]), fmt(t["p"], markup), fmt(t["p_holm"], markup), under_holm(t)]
            for r in rows for name, t in r.get("tests", {}).items()]
    return head, body


COMPARED_TEXT = 4     # the comparisons table's text columns from the left: condition, against, comparison, reading


def _against(test: dict[str, Any]) -> str:
    return test.get("against") or ("0 (its sign)" if test.get("correlation") else "")


def is_text(i: int, n: int, text: int, holds: bool = False) -> bool:
    """Whether column ``i`` of ``n`` is set left as text: the first ``text`` (:func:`conditions`' count, or
    :data:`COMPARED_TEXT` for :func:`comparisons`), and the last where ``holds`` (the comparisons' "under Holm"); the
    rest are numbers."""
    return i < text or (holds and i == n - 1)


def chance(rows: list[dict[str, Any]]) -> str:
    """How often this study's comparisons leave 0 out by chance alone (it said 35, whatever the study read)."""
    n = sum(len(r.get("tests", {})) for r in rows)
    return (f"with no effect anywhere, its {plural(n, 'comparison')} at 95% would leave 0 out about {0.05 * n:.2g} times (at "
            f"least once in {100 * (1 - 0.95 ** n):.0f}% of studies, were they independent)")


# How each kind of interval is made: the page's note opens with it, and docs/studies.md ("Intervals") quotes it as it
# stands here (tests/test_stats_rules.py holds the two to one text). The time ratios' is among them.
INTERVAL_KINDS = (
    "Intervals are 95%: Wilson for proportions, Bonett & Price's adjusted Wald for paired differences of proportions, "
    "Student's t for means and paired differences of means (the sign test's for a paired difference with no spread), "
    "and for a ratio measured per seed against its reference (a time ratio) the geometric mean of the seeds' ratios "
    "with Student's t on their logs, taken back out of logs (x2 and x0.5 lie as far from x1).")


def intervals_note(rows: list[dict[str, Any]]) -> str:
    """What the intervals are, under the conditions table (plain text)."""
    return (
        f"{INTERVAL_KINDS} An interval's ends are cut at what its figure can be (an accuracy or a share in [0, 1], a "
        "time at 0), which changes no reading. A seed whose figure is not finite is left out of its interval, and said "
        f"so. Each interval is for its own comparison, not adjusted for the many a verdict reads: {chance(rows)}. The "
        "comparisons table gives each comparison's p-value (the test its interval inverts: paired t or the sign test; "
        "for a paired proportion McNemar's exact test, which a \"higher\" or \"lower\" needs beside an interval that "
        "leaves out 0) and Holm's adjusted p over all of them: a \"higher\" or \"lower\" whose Holm p is 0.05 or more "
        "is a lead to recheck with more seeds, not a finding.")


def seeds_said(seeds: list[int]) -> str:
    """The page's first words: how many paired seeds and which, "2 paired seeds per condition (seeds 0 and 1)", or
    "(seeds 0 to 159)" for a run of more than 2 (the page said the count alone; the seeds were in study.json only)."""
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        which = f"seeds {seeds[0]} to {seeds[-1]}"
    else:
        which = ("seed " if len(seeds) == 1 else "seeds ") + listed(map(str, seeds))
    return f"{plural(len(seeds), 'paired seed')} per condition ({which})"


def figure_caption(result: dict[str, Any], name: str, folder: Path) -> str:
    """Figure ``name``'s caption on both pages: what it draws (its PNG's, in ``folder``:
    :func:`~downpour.studies.captions.caption_of`), the seeds of ``result`` (study.json's content) as its page says
    them, and where it draws means that are only lower bounds (:func:`~downpour.studies.bounds.bound_caption`: the
    figure alone draws them like measured ones)."""
    said = (caption_of(folder / name), f"Seeds: {seeds_said(result['seeds'])}.",
            bound_caption(result["cells"], Path(name).stem))
    return " ".join(s for s in said if s)


def setting(result: dict[str, Any]) -> str:
    """The page's words for its setting. The quick one says what answers the question instead: the full setting,
    its seeds and roughly how long it takes (``downpour study NAME --help``'s time), not only "too few seeds to answer
    anything", leaving where the answer is to the help and docs/studies.md. No parenthesis: the help's time holds
    one ("about 6 min (17 min beside other jobs)")."""
    if not result["quick"]:
        return "full setting"
    name = result["study"]
    full = ""
    if name in STUDIES:
        took = f", {ABOUT[name][1]} on 2 cores" if name in ABOUT else ""
        full = (f"; the answer is the full setting's, without --quick: {design_class(name).seeds_full} paired "
                f"seeds per condition{took}")
    return f"quick setting, a smoke test with too few seeds to answer anything{full}"


def cost(result: dict[str, Any]) -> str:
    """What the study cost: its cells over every run of the folder (and how many runs of theirs have no cost
    recorded: :meth:`~downpour.studies.cells.CellCache.total_cost`), and this run's own time (a resumed study's last
    run may have run no cell: it read "0.4 s" for cells that took 32.6)."""
    spent = result.get("cells_cost", {})
    jobs = result.get("jobs", "?")
    where = "in this process" if jobs == 1 else "" if jobs == 0 else f"in {jobs} worker processes"
    this = f"this run {result['seconds']} s, {plural(result.get('cells_run', 0), 'cell')} {where}".rstrip()
    if "seconds" not in spent:
        return this
    unknown = spent.get("unknown", 0)
    gone = f", and {plural(unknown, 'run')} whose cost is not recorded" if unknown else ""
    return (f"its cells took {spent['seconds']} s ({spent.get('cpu_seconds', 0)} CPU-s) over every run of the folder"
            f"{gone}; {this}")


def reproduce(result: dict[str, Any]) -> tuple[str, str]:
    """The command the page gives to reproduce the study, and where to run it ("" or " in the folder that holds this
    one"): study.json's ``command``, an absolute ``--out`` said as the folder's name ("--out /tmp/q/real/costs" named
    one machine's folder, and the page is read moved or copied), in either of argparse's forms, ``--out PATH`` or
    ``--out=PATH`` (downpour writes the first; a command edited by hand may read the second)."""
    parts = shlex.split(result["command"])
    for i, part in enumerate(parts):
        if part == "--out" and i + 1 < len(parts) and os.path.isabs(parts[i + 1]):
            parts[i + 1] = os.path.basename(os.path.normpath(parts[i + 1]))
            return shlex.join(parts), " in the folder that holds this one"
        if part.startswith("--out=") and os.path.isabs(path := part.removeprefix("--out=")):
            parts[i] = "--out=" + os.path.basename(os.path.normpath(path))
            return shlex.join(parts), " in the folder that holds this one"
    return result["command"], ""


def page_notes(result: dict[str, Any]) -> list[tuple[str, str]]:
    """The page's notes above its verdict, (heading, plain text): that the study's cells ran on several platforms
    (study.json's ``platforms_note``) or under several installs (``installs_note``), and what they did with data of
    the user's own (study.json's ``data``: :func:`~downpour.studies.data_note.data_sentence`); none where none
    applies."""
    notes = [("Machines", result.get("platforms_note", "")), ("Installs", result.get("installs_note", ""))]
    data = data_sentence(result.get("data"))
    return [*((head, note[0].upper() + note[1:] + ".") for head, note in notes if note),
            *([("Data", data)] if data else [])]
