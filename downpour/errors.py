"""Errors a run reports to its user (the CLI prints them without a traceback)."""
from __future__ import annotations


class RunError(RuntimeError):
    """A run stopped for a reason outside its config (every worker lost, ...); what it had done is saved."""
