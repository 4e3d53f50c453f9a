"""``study.html``: the question, the generated verdict, the table of conditions with 95% intervals,
the comparisons the verdict reads with their p-values (unadjusted and Holm's), the figures, and the
command that reproduces it all."""
from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any, Callable

from downpour._names import plural
from downpour.studies.bounds import bound_caption
from downpour.studies.data_note import data_sentence
from downpour.studies.words import no_spread, unbounded

Shown = Callable[[dict[str, Any], str], "str | None"]   # a study's own HTML for a row's param or extra cell, or None

STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}
th{background:#f4f4f4}td.l,th.l{text-align:left}.verdict{background:#f6f8fa;padding:1em;border-left:4px solid #4a7}
code{background:#f4f4f4;padding:2px 4px}img{max-width:100%;margin:1em 0}"""


def fmt(value: Any) -> str:
    """A number for a table: 3 significant digits; ints as they are; nan as '–'."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return html.escape(str(value))
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return "–" if math.isnan(value) else ("∞" if value > 0 else "−∞")
    return f"{value:.3g}"


def _cost(result: dict[str, Any]) -> str:
    """What the study cost: its cells over every run of the folder, and this run's own time (a resumed study's
    last run may have run no cell: it read "0.4 s" for cells that took 32.6)."""
    cost = result.get("cells_cost", {})
    jobs = result.get("jobs", "?")
    where = "in this process" if jobs == 1 else "" if jobs == 0 else f"in {jobs} worker processes"
    this = f"this run {result['seconds']} s, {result.get('cells_run', 0)} cells {where}".rstrip()
    if "seconds" not in cost:
        return this
    return f"its cells took {cost['seconds']} s ({cost.get('cpu_seconds', 0)} CPU-s) over every run of the folder; {this}"


def _platforms(result: dict[str, Any]) -> str:
    """The sentence that says the study's cells ran on several platforms (study.json's ``platforms_note``), if so,
    and what they did with data of the user's own (study.json's ``data``:
    :func:`~downpour.studies.data_note.data_sentence`)."""
    note = result.get("platforms_note", "")
    data = data_sentence(result.get("data"))
    return ((f"<p><b>Machines.</b> {html.escape(note[0].upper() + note[1:])}.</p>\n" if note else "")
            + (f"<p><b>Data.</b> {html.escape(data)}</p>\n" if data else ""))


def interval(triple: list[float] | tuple[float, float, float], difference: bool = False) -> str:
    """'0.42 [0.38, 0.46]'; an interval with an end not finite in the verdicts' words (:func:`~downpour.studies.words.
    unbounded`; a paired ``difference`` 0 in every seed of too few: "0 (no seed differed: too few seeds to tell)"),
    not "0 [−∞, ∞]" as until 2026-12-06."""
    value, low, high = triple
    if math.isfinite(value) and not (math.isfinite(low) and math.isfinite(high)):
        return f"{fmt(value)} <small>({html.escape(unbounded(triple, difference))})</small>"
    return f"{fmt(value)} <small>[{fmt(low)}, {fmt(high)}]</small>"


def rows_table(rows: list[dict[str, Any]], shown: Shown | None = None, headings: dict[str, str] | None = None) -> str:
    """One line per condition: its parameters, then every figure as value [low, high]. ``shown(row, key)``: the
    study's own HTML for a parameter's or an extra's cell (None: as stored); ``headings``: a column's heading by key."""
    own = shown or (lambda row, key: None)
    heading = (headings or {}).get
    params = list(dict.fromkeys(k for r in rows for k in r["params"]))
    figures = list(dict.fromkeys(k for r in rows for k in r["figures"]))
    extra = list(dict.fromkeys(k for r in rows for k in r.get("extra", {})))
    head = "".join(f"<th class=l>{html.escape(heading(k, k))}</th>" for k in ["condition", *params])
    # an extra named as a figure (the mechanisms study's readings of its paired differences) is that figure's reading:
    # its column said "d_probe_digits" twice, once the interval and once "lower"
    named = [f"{k} reading" if k in figures else k for k in extra]
    head += "<th>n</th>" + "".join(f"<th>{html.escape(heading(k, k))}</th>" for k in [*figures, *named])
    body = []
    for r in rows:
        cells = f"<td class=l>{html.escape(r['condition'])}</td>"
        cells += "".join(f"<td class=l>{_or(own(r, k), fmt(r['params'].get(k, '')))}</td>" for k in params)
        cells += f"<td>{r['n']}</td>"
        cells += "".join(f"<td>{_figure(r, k)}</td>" for k in figures)
        cells += "".join(f"<td>{_or(own(r, k), _plain(r.get('extra', {}).get(k, '')))}</td>" for k in extra)
        body.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _or(own: str | None, stored: str) -> str:
    return stored if own is None else own


def tests_table(rows: list[dict[str, Any]]) -> str:
    """One line per comparison the verdict reads (``row["tests"]``): its reading, p and Holm's p."""
    body = [f"<tr><td class=l>{html.escape(r['condition'])}</td><td class=l>{html.escape(name)}</td>"
            f"<td class=l>{html.escape(t['reading'])}</td><td>{fmt(t['p'])}</td><td>{fmt(t['p_holm'])}</td>"
            f"<td class=l>{_holds(t)}</td></tr>"
            for r in rows for name, t in r.get("tests", {}).items()]
    if not body:
        return "<p>none</p>"
    head = ("<tr><th class=l>condition</th><th class=l>comparison</th><th class=l>reading</th><th>p</th>"
            "<th>Holm p</th><th class=l>under Holm</th></tr>")
    return f"<table>{head}{''.join(body)}</table>"


def _chance(rows: list[dict[str, Any]]) -> str:
    """How often this study's comparisons leave 0 out by chance alone (it said 35, whatever the study read)."""
    n = sum(len(r.get("tests", {})) for r in rows)
    return (f"with no effect anywhere, its {plural(n, 'comparison')} at 95% would leave 0 out about {0.05 * n:.2g} times (at "
            f"least once in {100 * (1 - 0.95 ** n):.0f}% of studies, were they independent)")


def _holds(test: dict[str, Any]) -> str:
    if test["reading"] not in ("higher", "lower"):
        return ""
    return "holds" if test["p_holm"] < 0.05 else "a lead"


def _figure(row: dict[str, Any], key: str) -> str:
    """One figure's cell: value [low, high], and the seeds its interval left out, if any."""
    if key not in row["figures"]:
        return ""
    left_out = row.get("missing", {}).get(key)
    value, low, high = row["figures"][key]
    if no_spread((value, low, high)) and row["n"] > 1:
        # (up to rounding: 0.8999999999999999 [0.8999999999999989, 0.9000000000000009] was shown as 0.9 [0.9, 0.9])
        # no spread: Student's t gives zero width however few the seeds (a probe's 27 of 30 right in both of 2
        # seeds read 0.900 [0.900, 0.900], as certain as a thousand seeds); say what it is instead
        shown = f"{fmt(value)} <small>(the same in every seed{' measured' if left_out else ''})</small>"
    else:
        shown = interval(row["figures"][key], difference=key.startswith(("d_", "delta_")))
    ended = row.get("censored", {}).get(key)     # (since 2026-12-05: a range at the sweep's end is a lower bound)
    if ended and not key.startswith("d_"):
        shown += f" <small>({ended} of {row['n']} seeds at the sweep's end: at least this)</small>"
    why = f", {ended} with both at the sweep's end" if ended and key.startswith("d_") else ""
    b = row.get("bounded", {}).get(key)      # (since 2026-12-05: one range at the sweep's end gives only a bound)
    if b:
        shown += f" <small>({b['at_least'] + b['at_most']} of the {b['kept']} seeds kept only a bound)</small>"
    return shown + (f" <small>({left_out} of {row['n']} seeds left out{why})</small>" if left_out else "")


def _plain(value: Any) -> str:
    if isinstance(value, dict):       # (staleness's diverged_vs: seeds, delta, reading; was shown as a Python repr)
        return "; ".join(f"{html.escape(str(k))} {_plain(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value)
    return fmt(value)


def _figure_block(name: str, rows: list[dict[str, Any]]) -> str:
    """A figure, captioned where it draws means that are only lower bounds (:func:`~downpour.studies.bounds.
    bound_caption`; since 2026-12-05, when the figure alone drew them like measured ones)."""
    img = f'<img src="{html.escape(name)}" alt="{html.escape(Path(name).stem)}">'
    caption = bound_caption(rows, Path(name).stem)
    return f"<figure>{img}<figcaption><small>{html.escape(caption)}</small></figcaption></figure>" if caption else img


def write_html(result: dict[str, Any], path: Path, shown: Shown | None = None,
               headings: dict[str, str] | None = None) -> Path:
    """The page of ``result`` (study.json's content); ``shown``, ``headings``: the study's own, for its table."""
    figures = "".join(_figure_block(f, result["cells"]) for f in result["figures"])
    verdict = "".join(f"<p>{html.escape(p)}</p>" for p in result["verdict"].split("\n\n"))
    setting = "quick setting (a smoke test: too few seeds to answer anything)" if result["quick"] else "full setting"
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>downpour study {html.escape(result['study'])}</title>
<style>{STYLE}</style></head><body>
<h1>Study: {html.escape(result['study'])}</h1>
<p><b>Question.</b> {html.escape(result['question'])}</p>
<p>{len(result['seeds'])} paired seeds per condition, {setting}; {_cost(result)}.
Reproduce with <code>{html.escape(result['command'])}</code>.</p>
{_platforms(result)}<h2>Verdict</h2><div class="verdict">{verdict}</div>
<h2>Conditions</h2>{rows_table(result['cells'], shown, headings)}
<p><small>Intervals are 95%: Wilson for proportions, Bonett &amp; Price's adjusted Wald for paired
differences of proportions, Student's t for means and paired differences of means (the sign test's
for a paired difference with no spread). An interval's ends are cut at what its figure can be (an
accuracy or a share in [0, 1], a time at 0), which changes no reading. A seed whose figure is not finite is
left out of its interval, and said so. Each interval is for its own comparison, not adjusted for the
many a verdict reads: {_chance(result['cells'])}. The table below gives each comparison's
p-value (the test its interval inverts: paired t or the sign test; for a paired proportion McNemar's exact
test, which a "higher" or "lower" needs beside an interval that leaves out 0) and Holm's adjusted p over all of them: a "higher" or
"lower" whose Holm p is 0.05 or more is a lead to recheck with more seeds, not a finding.</small></p>
<h2>Comparisons</h2>{tests_table(result['cells'])}
<h2>Figures</h2>{figures or '<p>none</p>'}
</body></html>
"""
    path.write_text(page)
    return path
