"""study.html and study.md say which seeds ran, not only how many (studies/table.py's seeds_said)."""
import pytest

from downpour.studies.html import write_html
from downpour.studies.markdown import write_markdown


@pytest.mark.parametrize("seeds, said", [
    ([0, 1], "2 paired seeds per condition (seeds 0 and 1)"),
    (list(range(160)), "160 paired seeds per condition (seeds 0 to 159)"),
    ([3, 5, 9], "3 paired seeds per condition (seeds 3, 5 and 9)"),
])
def test_the_page_names_the_seeds_it_ran(tmp_path, seeds, said):
    """A reader citing the page could not tell which seeds its numbers came from (study.json's "seeds" alone)."""
    result = {"study": "x", "question": "Q?", "quick": False, "seeds": seeds, "seconds": 1.0, "cells_run": 3,
              "jobs": 1, "command": "downpour study x", "verdict": "One.", "figures": [],
              "cells": [{"condition": "a", "params": {}, "n": len(seeds), "figures": {}}]}
    assert f"<p>{said}, full setting;" in write_html(result, tmp_path / "study.html").read_text()
    assert f"\n{said}, full setting;" in write_markdown(result, tmp_path / "study.md").read_text()
