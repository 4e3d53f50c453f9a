"""The first-layer study's design: its conditions and seeds (the study itself, and what its conditions are:
:mod:`downpour.studies.first_layer`)."""
from __future__ import annotations

from downpour.studies import QUESTIONS
from downpour.studies.designs import Condition, Design

KINDS = ("learned", "gabor", "random", "gabor-init")
STEPS = {False: 400, True: 16}          # S, per stage (full, quick)


class FirstLayerDesign(Design):
    name = "first-layer"
    question = QUESTIONS["first-layer"]
    seeds_full = 8
    seeds_quick = 2
    quick_what = "a few dozen steps"

    def steps(self) -> int:
        return STEPS[self.quick]

    def conditions(self) -> list[Condition]:
        s = self.steps()
        out = []
        for kind in KINDS:
            learns = kind in ("learned", "gabor-init")
            # A frozen first layer has nothing to train in a greedy schedule's first half: joint gives
            # stage 2 the same S steps (stage 1's cost is still computed and logged, on the same batches).
            sets = (("model.first_layer", kind), ("train.schedule", "greedy" if learns else "joint"),
                    ("train.steps", 2 * s if learns else s))
            out.append(Condition(kind, {"first_layer": kind, "stage1_steps": s if learns else 0, "stage2_steps": s,
                                        "frozen_during_stage2": True}, sets, "learned" if learns else "fixed"))
        return out
