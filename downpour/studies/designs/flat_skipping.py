"""The flat-skipping study's design: its conditions and seeds (the study itself, and what its conditions are:
:mod:`downpour.studies.flat_skipping`)."""
from __future__ import annotations

from downpour.studies import QUESTIONS
from downpour.studies.designs import Condition, Design

THRESHOLDS = {False: (0.003, 0.01, 0.03, 0.1, 0.3, 1.0), True: (0.03, 0.3)}
STEPS = {False: 300, True: 16}              # per stage (greedy: stage 1, then stage 2)
BLOCK = 4                                   # output tiles decided together (25x25 outputs -> 7x7 tiles)


class FlatSkippingDesign(Design):
    name = "flat-skipping"
    question = QUESTIONS["flat-skipping"]
    seeds_full = 6
    seeds_quick = 2
    quick_what = "a few training steps, two thresholds"

    def thresholds(self) -> tuple[float, ...]:
        return THRESHOLDS[self.quick]

    def conditions(self) -> list[Condition]:
        steps = 2 * STEPS[self.quick]
        forms = (("whitened", "spectral"),) if self.quick else (("whitened", "spectral"), ("unwhitened", "none"))
        return [Condition(name, {"whiten": whiten, "stage_steps": steps // 2, "block": BLOCK, "vs": "off"},
                          (("data.whiten", whiten), ("train.steps", steps)), name)
                for name, whiten in forms]
