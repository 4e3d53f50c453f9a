"""The base of the studies whose cells train a real run and measure it with the analysis
(:func:`~downpour.studies.measure.train_and_measure`) and whose rows are paired comparisons
(:func:`~downpour.studies.compare.compare_rows`): templates, mechanisms, architectures (their designs:
:class:`~downpour.studies.designs.MeasuredDesign`)."""
from __future__ import annotations

from typing import Any, ClassVar

from downpour.studies.base import Cells, Condition, Study
from downpour.studies.compare import compare_rows
from downpour.studies.measure import Measures, train_and_measure
from downpour.studies.trained import FACE_TEST_WITH_TWIN


class MeasuredStudy(Study):
    base = "cat-demo"          # for its [data] and [train]; conditions change or swap the model
    measured_by = FACE_TEST_WITH_TWIN    # the face test its cells run, twin included (measure.py)
    base_sets = (("train.tensorboard", False), ("train.log_every", 50), ("train.threads", 1))
    resolution: ClassVar[dict[str, float]] = {}   # per compared figure, the smallest difference worth reporting
    invariance: ClassVar[bool] = False           # also measure the face unit's invariance ranges

    def measures(self) -> Measures:
        return Measures.sized(self.quick, invariance=self.invariance)

    def run_cell(self, condition: Condition, seed: int, context: dict[str, Any]) -> dict[str, float]:
        return train_and_measure(self.cell_config(condition, seed), self.measures(), seed)

    def summarise(self, conditions: list[Condition], cells: Cells, seeds: list[int]) -> list[dict[str, Any]]:
        return compare_rows(conditions, cells, seeds, self.resolution)
