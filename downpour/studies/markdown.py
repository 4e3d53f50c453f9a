"""``study.md``: study.html's page as markdown, for notes, papers and docs that quote a study's tables rather than
copy them by hand: the question, the command, the generated verdict, the conditions and comparisons tables (the same
cells as study.html's, :mod:`~downpour.studies.table`) and the figures, linked relative to the folder."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from downpour.studies import table
from downpour.studies.code_commit import commits_sentence
from downpour.studies.table import Shown
from downpour.train.model_file import replace_text


def md_table(head: list[str], body: list[list[str]], text: int, holds: bool = False) -> str:
    """A markdown table, its text columns left-aligned (:func:`~downpour.studies.table.is_text`: the first ``text``,
    and the last where ``holds``) and the rest (numbers) right-aligned, as study.html sets them."""
    rule = ["---" if table.is_text(i, len(head), text, holds) else "---:" for i in range(len(head))]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in [head, rule, *body])


def write_markdown(result: dict[str, Any], path: Path, shown: Shown | None = None,
                   headings: dict[str, str] | None = None) -> Path:
    """The markdown page of ``result`` (study.json's content); ``shown``, ``headings``: the study's own, as for
    study.html."""
    md = table.MARKDOWN
    rows = result["cells"]
    head, body, text = table.conditions(rows, shown, headings, md)
    compared, tests = table.comparisons(rows, md)
    command, where = table.reproduce(result)     # (an absolute --out said as the folder's name)
    parts = [
        f"# Study: {result['study']}",
        f"**Question.** {md.escape(result['question'])}",
        f"{table.seeds_said(result['seeds'])}, {table.setting(result)}; {table.cost(result)}. "
        f"Reproduce with `{command}`{where}. {commits_sentence(result)}".rstrip(),
        *(f"**{name}.** {md.escape(note)}" for name, note in table.page_notes(result)),
        "## Verdict",
        "\n>\n".join(f"> {md.escape(p)}" for p in result["verdict"].split("\n\n")),
        "## Conditions",
        md_table(head, body, text),
        *([md.escape(note)] if (note := table.keys_note(rows, headings)) else []),
        table.intervals_note(rows),
        "## Comparisons",
        md_table(compared, tests, table.COMPARED_TEXT, holds=True) if tests else "none",
        "## Figures",
        "\n\n".join(_figure(f, result, path.parent) for f in result["figures"]) or "none",
    ]
    replace_text(path, "\n\n".join(parts) + "\n")    # whole or not at all, as study.html
    return path


def _figure(name: str, result: dict[str, Any], folder: Path) -> str:
    """A figure, with study.html's caption (:func:`~downpour.studies.table.figure_caption`)."""
    caption = table.figure_caption(result, name, folder)
    return f"![{Path(name).stem}]({name})" + (f"\n\n*{table.MARKDOWN.escape(caption)}*" if caption else "")
