"""The pieces every downpour HTML page is made of: its style, escaped text, numbers, tables, inlined
pictures, and the page around them (report.html, crossfit.html)."""
from __future__ import annotations

import base64
import html
import logging
import re
from typing import Any

from downpour.data.patches import DATA_JSON
from downpour.train.rundir import NotARunError, RunDir

log = logging.getLogger("downpour.analysis.report_parts")

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .3em .6em; text-align: left; }
th { background: #f3f3f3; } tr.learned td { font-weight: 600; } tr.paper td { font-style: italic; color: #555; }
img { max-width: 100%; border: 1px solid #eee; margin: .5em 0; }
pre { background: #f7f7f7; padding: 1em; overflow-x: auto; font-size: .8em; }
.note { color: #555; font-size: .9em; }
"""


def esc(value: Any) -> str:
    return html.escape(str(value))


def pct(value: Any) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, (int, float)) else "–"


def num(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else "–"


def auc(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "–"


def ends(ci: list[float] | None, fmt: Any) -> str:
    """' [low, high]' of an interval in ``fmt`` (pct, auc); '' for none (an analysis.json before 2026-12-06)."""
    return f" [{fmt(ci[0])}, {fmt(ci[1])}]" if ci else ""


def image(run: RunDir, rel: str | None, alt: str) -> str:
    """An <img> with the PNG inlined, or a note if the analysis made no such figure."""
    if not rel:
        return f'<p class="note">No {esc(alt)} figure for this run.</p>'
    path = run.path / rel
    if not path.is_file():
        raise NotARunError(f"{str(path)!r} is listed in analysis.json but missing; rerun `downpour analyze {run.path}`")
    return inline_png(path.read_bytes(), alt, rel)


def run_json(run: RunDir, name: str) -> Any:
    """A JSON file of the run, or None where it has none or it cannot be read (a note then says nothing)."""
    try:
        return run.read_json(name)
    except NotARunError:
        return None


_JSON_KINDS = {list: "an array", str: "a string", bool: "true or false", type(None): "null"}   # (else a number)


def say_damaged(run: RunDir, but: tuple[str, ...] = ()) -> None:
    """One WARNING for each record the report's notes read (data.json, staleness.json, the runner's summary) that is
    there but not JSON, or JSON but not an object (a cluster.json overwritten with a list): the notes read either as
    none, and a data.json cut short dropped the note of the skipped files, a staleness.json the Staleness paragraph
    and the faults, a cluster.json the placement, without a word. ``but``: the records a warning of this report has
    named already (a staleness.json its histogram was drawn from: the drawing says it)."""
    for name in (DATA_JSON, "staleness.json", summary_name(run)):
        if name in but:
            continue
        try:
            record = run.read_json(name)
        except NotARunError as err:
            if (run.path / name).is_file():
                log.warning("%s: the report leaves out what it would say of it", err)
            continue
        if not isinstance(record, dict):
            held = _JSON_KINDS.get(type(record), "a number")
            log.warning("%r is not a JSON object (it holds %s): the report leaves out what it would say of it",
                        str(run.path / name), held)


def summary_name(run: RunDir) -> str:
    """The runner's summary file: a Sandblaster run's sandblaster.json (it has no cluster.json), else cluster.json."""
    return "sandblaster.json" if run.config.cluster.algorithm == "sandblaster" else "cluster.json"


def inline_png(png: bytes, alt: str, title: str = "") -> str:
    """An <img> of a PNG's bytes, inlined as a base64 data URI."""
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{esc(alt)}"' + (f' title="{esc(title)}">' if title else ">")


def table(rows: list[list[Any]], header: list[str], table_id: str, row_classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>")
    # (no whitespace in an id: a probe on "my cats" would have one)
    table_id = re.sub(r"\s+", "-", table_id)
    return f'<table id="{esc(table_id)}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def page(title: str, body: str) -> str:
    """A whole self-contained page: ``title`` (escaped here) and ``body`` (HTML). The viewport line lays it out at the
    device's width: without it a phone or tablet draws it as a 980-pixel desktop page, shrunk to
    fit."""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{esc(title)}</title>'
            f"<style>{STYLE}</style></head><body>{body}</body></html>\n")
