"""What the studies' verdicts, their pages and the run report say holds no parenthesis inside another: "(Δ -0.44 (no
interval: too few seeds to tell))" and "(lower (a lead: not after Holm's correction))" read as a tangle where one
parenthesis, "(Δ -0.44, no interval: too few seeds to tell)", says it all (words.difference's ``aside``,
holm.lead_mark's ``mark``). Square brackets, an interval's, may sit inside one."""
import copy
import math


def nested(text):
    """Each "(" opened inside an open "(", with the words before it: [] where none is. A paragraph (text between blank
    lines) is read alone, so one left open does not spill into the next."""
    found = []
    for paragraph in text.split("\n\n"):
        depth = 0
        for i, ch in enumerate(paragraph):
            if ch == "(":
                depth += 1
                if depth == 2:
                    found.append(paragraph[max(0, i - 100):i + 60])
            elif ch == ")":
                depth = max(0, depth - 1)
    return found


def unbounded(rows):
    """``rows`` with every figure's interval unbounded: the quick setting's too few seeds, "(no interval: ...)"."""
    rows = copy.deepcopy(rows)
    for row in rows:
        row["figures"] = {k: [t[0], -math.inf, math.inf] for k, t in row["figures"].items()}
    return rows


def leads(rows):
    """``rows`` with every comparison that reads higher or lower at p 0.04: with more than one, Holm's correction
    keeps none (once :func:`~downpour.studies.holm.holm` has run), so each is marked a lead."""
    rows = copy.deepcopy(rows)
    for row in rows:
        for test in row.get("tests", {}).values():
            if test.get("reading") in ("higher", "lower"):
                test["p"] = 0.04
    return rows


def check_verdict_nests_nothing(name, rows):
    """The study ``name``'s verdict (run.verdict_text, as study.json's) from ``rows``, from them with every interval
    unbounded, with every reading a lead, and with both: no parenthesis inside another in any of them."""
    from downpour.studies import study_class
    from downpour.studies.run import verdict_text
    from downpour.studies.holm import holm

    for variant in (copy.deepcopy(rows), unbounded(rows), leads(rows), leads(unbounded(rows))):
        holm(variant)
        text = verdict_text(study_class(name)(quick=True), variant, True, False)
        assert nested(text) == [], (name, nested(text))


def page_text(html):
    """An HTML page's words, each paragraph, list item, table cell, heading and caption a paragraph of its own (for
    :func:`nested`), scripts and styles left out."""
    import html as entities
    import re

    html = re.sub(r"<(script|style)\b.*?</\1>", "", html, flags=re.S)
    html = re.sub(r"<(p|li|dd|dt|td|th|h\d|div|caption|figcaption|tr|br)\b[^>]*>", "\n\n", html)
    return entities.unescape(re.sub(r"<[^>]+>", "", html))
