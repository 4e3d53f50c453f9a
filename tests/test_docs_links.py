"""The links of README.md and docs/**/*.md, as a reader follows them on GitHub: every relative link's file exists
and every ``#anchor`` is a heading of that page (GitHub's slug: lowercased, punctuation but ``-`` and ``_`` dropped,
spaces to ``-``, a repeated heading numbered ``-1``, ``-2``) or an explicit ``<a id="...">``. README's table of
documentation names every page of docs/."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCED = re.compile(r"```.*?```", re.S)
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _prose(path):
    return FENCED.sub("", path.read_text())


def _anchors(path):
    text = _prose(path)
    slugs, seen = set(re.findall(r'<a (?:id|name)="([^"]+)"', text)), {}
    for heading in re.findall(r"^#{1,6}\s+(.*?)\s*$", text, re.M):
        heading = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)       # a link in a heading: its text
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        n = seen[slug] = seen.get(slug, -1) + 1
        slugs.add(slug if n == 0 else f"{slug}-{n}")
    return slugs


def _links():
    for path in DOCS:
        for link in LINK.findall(_prose(path)):
            if not re.match(r"[a-z]+:", link):
                yield path, link


LINKS = list(_links())


def test_the_docs_have_links_to_check():
    # a change of the link pattern would make the test below pass on nothing
    assert len(LINKS) >= 50 and sum("#" in link for _, link in LINKS) >= 15


@pytest.mark.parametrize("path,link", LINKS, ids=[f"{p.name}:{link}" for p, link in LINKS])
def test_every_relative_link_and_anchor_exists(path, link):
    file, _, anchor = link.partition("#")
    target = (path.parent / file) if file else path
    assert target.exists(), f"{path.relative_to(ROOT)}: {link}: no file {file}"
    if anchor and target.suffix == ".md":
        assert anchor in _anchors(target), f"{path.relative_to(ROOT)}: {link}: no heading or <a id> '{anchor}'"


def test_the_readme_documentation_table_names_every_page():
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Documentation"):]
    missing = [p.name for p in sorted((ROOT / "docs").glob("*.md")) if f"[docs/{p.name}](docs/{p.name})" not in table]
    assert not missing, f"README's documentation table lacks {missing}"
