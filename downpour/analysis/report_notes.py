"""Sentences of report.html that depend on what the run was: the loss headline (one logged row, a greedy
run's stages)."""
from __future__ import annotations

from typing import Any

from downpour.analysis.report_parts import esc, num


def loss_headline(training: dict[str, Any]) -> str:
    """First and last logged loss; a greedy run's per stage (its ``loss`` is stage 1's cost first and
    the last stage's at the end: two different sums that read as divergence side by side); one logged
    row said as one (``a → a`` read as a loss that did not move)."""
    count = training.get("logged_rows")
    rows = f"over {esc(count)} logged rows"
    stages = training.get("stages") or []
    if count == 1 and not stages:
        return (f"Loss {num(training.get('last_loss'))} at step {esc(training.get('last_step'))}, the only logged "
                f"row (the run was shorter than train.log_every): no change to report.")
    if not stages:
        return f"Loss {num(training.get('first_loss'))} → {num(training.get('last_loss'))} {rows}."
    each = "; ".join(f"{esc(s['stage'])} {num(s['first_loss'])} → {num(s['last_loss'])} "
                     f"(steps {esc(s['first_step'])}–{esc(s['last_step'])})" for s in stages)
    return f"Loss, each stage's own cost (trained in turn): {each}, {rows}."
