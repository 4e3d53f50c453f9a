"""The report's line on where a stopped run ended (an error, Ctrl-C, SIGTERM, every worker lost, a lost shard), the
first thing its training section says, whichever runner trained it:

    stop_note(run)   # '<p class="note">Stopped after step 131 of 400: KeyboardInterrupt.</p>'; "" for a run that ended

Read from the ``stopped`` {step, steps, by} of the runner's summary (cluster.json; a Sandblaster run's
sandblaster.json) and of data.json, the record a local or cluster run writes on any stop, on files or a built-in set
(a local run has no summary file: data.json is its only one). Both of a run say the same stop: it is said once, the
later step's (a cluster.json kept from a stop that a resume's Ctrl-C went past), the summary's at a tie. A run that a
stop left with no model has no report (`downpour report` says where its checkpoint stands), so the line shows on a
stop's model (every worker lost) or on a resume stopped past the model reported.
"""
from __future__ import annotations

from typing import Any

from downpour.analysis.report_parts import esc, run_json, summary_name
from downpour.data.patches import DATA_JSON
from downpour.errors import first_line
from downpour.train.rundir import RunDir


def stop_note(run: RunDir) -> str:
    """The note (HTML), or "" where neither record says the run stopped."""
    stopped = run_stop(run)
    return f'<p class="note">{esc(stopped_line(run, stopped))}</p>' if stopped else ""


def run_stop(run: RunDir) -> dict[str, Any] | None:
    """The run's last stop as its records keep it ({step, steps, by}), or None: the summary's and data.json's
    ``stopped``, the later step's (max keeps the first of a tie: the summary's, in the runner's own words)."""
    records = (run_json(run, summary_name(run)), run_json(run, DATA_JSON))
    found = [s for s in map(_stopped, records) if s is not None]
    return max(found, key=lambda s: s["step"] if isinstance(s.get("step"), int) else -1, default=None)


def stopped_line(run: RunDir, stopped: dict[str, Any]) -> str:
    """"Stopped after step 33 of 60: shard 1 lost at step 33 ...", a Sandblaster run's "after L-BFGS iteration 3 of
    10": the first line of ``by``, which keeps the error's whole message (a worker's traceback through Ray)."""
    unit = "L-BFGS iteration" if run.config.cluster.algorithm == "sandblaster" else "step"
    return f"Stopped after {unit} {stopped.get('step')} of {stopped.get('steps')}: {first_line(stopped['by'])}."


def _stopped(record: Any) -> dict[str, Any] | None:
    """A record's ``stopped`` (:func:`~downpour.analysis.report_parts.run_json`'s: None where the file is not there
    or not JSON), where it says by what; else None."""
    stopped = record.get("stopped") if isinstance(record, dict) else None
    return stopped if isinstance(stopped, dict) and stopped.get("by") else None
