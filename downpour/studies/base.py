"""What a study is: conditions × paired seeds, one cell per pair, rows with intervals, a verdict.

A study subclasses its design (:mod:`downpour.studies.designs`: its name, question, seeds and
``conditions()``, the :class:`Condition` list; ``self.quick``: the few-minute setting the tests use) and
:class:`Study`, and says
- ``run_cell(condition, seed, context)``: one cell, a run of the real machinery, returning its
  figures as a flat dict of numbers (the same keys for every cell of a condition);
- ``summarise(conditions, cells, seeds)``: one row per condition (``condition``, ``group``, ``params``,
  ``n``, ``figures``: name -> [value, low, high] with a 95% interval, ``extra``: other numbers);
- ``verdict(rows)``: a paragraph generated from those intervals (the runner puts the quick setting's warning,
  :meth:`Study.quick_paragraph`, before it);
- ``figures(rows, cells, folder)``: PNG files;
- optionally ``prepare()``: a calibration every cell needs (e.g. the gradient noise
  matched to what staleness adds), computed once, cached with the cells and passed as ``context``;
- optionally ``same_run(condition)``: conditions with equal keys are one run under two names (the
  staleness study's ``iid/…/async4`` is its ``…/async4``): each seed runs once and is recorded
  under every name.

Every condition runs on the same seeds (``paired``): condition k and condition j share seed s, so
their difference on seed s compares like with like.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Hashable

from downpour._names import plural
from downpour.config import RunConfig, load_config
from downpour.models.registry import resolve
from downpour.studies.designs import Condition, Design
from downpour.studies.stats import diverged_paragraph

Cells = dict[tuple[str, int], dict[str, float]]    # (condition name, seed) -> the cell's figures


# what every study but staleness (the in-memory simulator) keeps: its cells train on the local runner, one
# process each (studies/trained.py), and their figures read that runner's checkpoint
LOCAL_CELLS = {key: "every cell trains on the local runner, one process per cell (studies/trained.py), and its "
                    "figures read that runner's checkpoint" for key in ("cluster.runner", "cluster.address")}


@dataclass
class Study(Design):
    """Base class of the studies (one module each under :mod:`downpour.studies`, its design's subclass)."""

    base: ClassVar[str] = "main"                   # the preset (or TOML path) every cell starts from
    base_sets: ClassVar[tuple[tuple[str, Any], ...]] = ()   # the study's own overrides of it, on every cell
    varied_in_cells: ClassVar[tuple[str, ...]] = ()   # keys run_cell sets itself beyond its conditions' sets (refused as --set)
    fixed: ClassVar[dict[str, str]] = LOCAL_CELLS  # keys (and the keys inside them) a --set may not change: why not
    measured_by: ClassVar[str] = ""                # what its cells' figures depend on beyond the config (a measure's
                                                   # version, e.g. trained.FACE_TEST): in the cache's header when set
    headings: ClassVar[dict[str, str]] = {}        # study.html's table: a column's heading where its key says too little
    # a cell whose run diverged (errors.Diverged: every step non-finite, or its loss ran away) is {"diverged": 1.0},
    # counted out of the summary (studies/diverged.py); False: a study whose cells record diverging as an outcome
    # beside every figure (staleness)
    counts_out_diverged: ClassVar[bool] = True

    def shown(self, row: dict[str, Any], key: str) -> str | None:
        """study.html's table: a row's parameter or extra ``key`` in the study's own words (HTML), None as stored."""
        return None

    def cell_config(self, condition: Condition, seed: int) -> RunConfig:
        """The resolved run config of one cell: the study's ``base`` preset, the user's --set overrides,
        the condition's own overrides, then the seed."""
        return resolve(load_config(self.base, [*self.base_sets, *self.sets, *condition.sets, ("seed", seed)]))

    def prepare(self) -> dict[str, Any]:
        return {}

    def same_run(self, condition: Condition) -> Hashable:
        """What makes a cell's run: two conditions with the same key run once per seed. By default the
        name, so every condition runs; a study whose ``run_cell`` depends on the overrides alone returns them."""
        return condition.name

    def run_cell(self, condition: Condition, seed: int, context: dict[str, Any]) -> dict[str, float]:
        raise NotImplementedError

    def summarise(self, conditions: list[Condition], cells: Cells, seeds: list[int]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def verdict(self, rows: list[dict[str, Any]]) -> str:
        raise NotImplementedError

    def claim(self, rows: list[dict[str, Any]]) -> str:
        """The study's question answered in one sentence, with its headline number and interval, generated from the
        rows (:mod:`~downpour.studies.claims`): the verdict's first sentence, after the quick setting's warning, and
        the study index's line. "" for none (the verdict then opens with Holm's count)."""
        return ""

    def figures(self, rows: list[dict[str, Any]], cells: Cells, folder: Path) -> list[Path]:
        return []

    def quick_paragraph(self, rows: list[dict[str, Any]]) -> str:
        """The verdict's warning on the quick setting ("" on the full one), with the seeds it really ran, not
        "2 seeds" whatever --seeds gave; the rest of the setting is the design's ``quick_what``. The runner puts it
        first, once, before :meth:`verdict` (:func:`~downpour.studies.run.verdict_text`; first, as last it would come
        after the conclusions it qualifies; the runner, not each study's ``verdict``, inserts it)."""
        if not self.quick:
            return ""
        n = max((r["n"] for r in rows), default=0)
        return (f"This is the quick setting ({self.quick_what}, {plural(n, 'seed')}): a smoke test of the machinery, "
                "not an answer.")

    def diverged_paragraph(self, rows: list[dict[str, Any]]) -> str:
        """The verdict's paragraph naming the conditions whose seeds were counted out (a run that diverged,
        :func:`~downpour.studies.stats.diverged_paragraph`); a study whose rows split a condition names each once."""
        return diverged_paragraph(rows)
