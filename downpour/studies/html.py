"""``study.html``: the question, the generated verdict, the table of conditions with 95% intervals,
the comparisons the verdict reads with their p-values (unadjusted and Holm's), the figures, and the
command that reproduces it all."""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from downpour.studies import table
from downpour.studies.code_commit import commits_sentence
from downpour.studies.table import Shown
from downpour.train.model_file import replace_text

STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}
th{background:#f4f4f4}td.l,th.l{text-align:left}.verdict{background:#f6f8fa;padding:1em;border-left:4px solid #4a7}
code{background:#f4f4f4;padding:2px 4px}img{max-width:100%;margin:1em 0}"""


def _platforms(result: dict[str, Any]) -> str:
    """The page's notes (:func:`~downpour.studies.table.page_notes`: the machines, the installs, the user's data),
    one paragraph each."""
    return "".join(f"<p><b>{head}.</b> {html.escape(text)}</p>\n" for head, text in table.page_notes(result))


def rows_table(rows: list[dict[str, Any]], shown: Shown | None = None, headings: dict[str, str] | None = None) -> str:
    """The conditions table (:func:`~downpour.studies.table.conditions`) as HTML."""
    head, body, text = table.conditions(rows, shown, headings, table.HTML)
    return html_table(head, body, text)


def tests_table(rows: list[dict[str, Any]]) -> str:
    """The comparisons the verdict reads (:func:`~downpour.studies.table.comparisons`) as HTML."""
    head, body = table.comparisons(rows, table.HTML)
    return html_table(head, body, table.COMPARED_TEXT, holds=True) if body else "<p>none</p>"


def html_table(head: list[str], body: list[list[str]], text: int, holds: bool = False) -> str:
    """``text`` columns from the left (and the last, ``holds``) left-aligned, the rest numbers."""
    def cls(i: int, n: int) -> str:
        return " class=l" if table.is_text(i, n, text, holds) else ""
    row = "".join(f"<th{cls(i, len(head))}>{h}</th>" for i, h in enumerate(head))
    rows = "".join("<tr>" + "".join(f"<td{cls(i, len(r))}>{c}</td>" for i, c in enumerate(r)) + "</tr>" for r in body)
    return f"<table><tr>{row}</tr>{rows}</table>"


def page(title: str, body: str) -> str:
    """A whole page in the studies' style (study.html's, the index's): ``title`` plain text, ``body`` HTML."""
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{STYLE}</style></head><body>
{body}</body></html>
"""


def _figure_block(name: str, result: dict[str, Any], folder: Path) -> str:
    """A figure and its caption (:func:`~downpour.studies.table.figure_caption`)."""
    img = f'<img src="{html.escape(name)}" alt="{html.escape(Path(name).stem)}">'
    caption = table.figure_caption(result, name, folder)
    return f"<figure>{img}<figcaption><small>{html.escape(caption)}</small></figcaption></figure>" if caption else img


def write_html(result: dict[str, Any], path: Path, shown: Shown | None = None,
               headings: dict[str, str] | None = None) -> Path:
    """The page of ``result`` (study.json's content); ``shown``, ``headings``: the study's own, for its table."""
    figures = "".join(_figure_block(f, result, path.parent) for f in result["figures"])
    verdict = "".join(f"<p>{html.escape(p)}</p>" for p in result["verdict"].split("\n\n"))
    command, where = table.reproduce(result)
    keys = table.keys_note(result["cells"], headings)     # (none where every heading is its key: no empty paragraph)
    keys = f"<p><small>{html.escape(keys)}</small></p>\n" if keys else ""
    body = f"""<h1>Study: {html.escape(result['study'])}</h1>
<p><b>Question.</b> {html.escape(result['question'])}</p>
<p>{html.escape(table.seeds_said(result['seeds']))}, {html.escape(table.setting(result))}; {table.cost(result)}.
Reproduce with <code>{html.escape(command)}</code>{where}. {html.escape(commits_sentence(result))}</p>
{_platforms(result)}<h2>Verdict</h2><div class="verdict">{verdict}</div>
<h2>Conditions</h2>{rows_table(result['cells'], shown, headings)}
{keys}<p><small>{html.escape(table.intervals_note(result['cells']))}</small></p>
<h2>Comparisons</h2>{tests_table(result['cells'])}
<h2>Figures</h2>{figures or '<p>none</p>'}
"""
    # whole or not at all: a stop mid-write left a torn page read as the report
    replace_text(path, page(f"downpour study {result['study']}", body))
    return path
