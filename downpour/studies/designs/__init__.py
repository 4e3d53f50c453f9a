"""What a study is before it runs: its name, question, conditions and seeds, one module a study here.

``downpour study NAME --help`` says them from the study's design alone (:func:`downpour.studies.design_class`);
the study's own module (:class:`~downpour.studies.base.Study`: running its cells, their rows, verdict and
figures) subclasses it and imports torch, the model registry and the analysis, 3-4 s the help does not
need. A design imports none of them: the standard library and :mod:`downpour.studies` alone.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class Condition:
    name: str                                      # unique within the study, e.g. "lr0.25/delay4"
    params: dict[str, Any]                         # what defines it, JSON-able (shown in study.json)
    sets: tuple[tuple[str, Any], ...] = ()         # config overrides of the cells' runs
    group: str = ""                                # for tables and figures: e.g. "phase", "control"


@dataclass
class Design:
    """A study's conditions × paired seeds, in its full setting or its quick one (``quick``: the few-minute
    setting the tests use); ``sets``: the user's --set overrides, on every cell."""

    name: ClassVar[str]
    question: ClassVar[str]                        # the question of MISSION.md it answers, in one line
    seeds_full: ClassVar[int] = 20
    seeds_quick: ClassVar[int] = 3
    quick_what: ClassVar[str]                      # the quick setting in a few words ("a few training steps, 3 arms"):
                                                   # the quick verdict's first paragraph says it (Study.quick_paragraph)
    quick: bool = False
    sets: list[tuple[str, Any]] = field(default_factory=list)

    def conditions(self) -> list[Condition]:
        raise NotImplementedError


class MeasuredDesign(Design):
    """The design of a study whose cells train and measure one network each (studies/measured.py)."""

    seeds_quick = 2
