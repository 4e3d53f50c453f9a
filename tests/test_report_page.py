"""The page around every downpour HTML report (report_parts.page) and the width its figures are drawn for."""
from __future__ import annotations

import re

from downpour.analysis.report_parts import page


def test_the_page_is_laid_out_at_a_phones_width_not_shrunk_from_a_desktops():
    """Without a viewport line (until 2026-12-06) a phone drew the report 980 pixels wide, shrunk to its screen."""
    head = page("run", "<p>x</p>").split("</head>")[0]
    assert re.search(r'<meta name="viewport" content="width=device-width, initial-scale=1">', head)
