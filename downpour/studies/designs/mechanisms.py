"""The mechanisms study's design: its conditions and seeds (the study itself, and what its conditions are:
:mod:`downpour.studies.mechanisms`)."""
from __future__ import annotations

from typing import Any

from downpour.studies import QUESTIONS
from downpour.studies.designs import Condition, MeasuredDesign

STEPS_FULL, STEPS_QUICK = 800, 30


class MechanismsDesign(MeasuredDesign):
    name = "mechanisms"
    question = QUESTIONS["mechanisms"]
    seeds_full = 8
    quick_what = "a few training steps"

    def conditions(self) -> list[Condition]:
        steps = STEPS_QUICK if self.quick else STEPS_FULL

        def cond(name: str, model: str, front: str, vs: str, **options: Any) -> Condition:
            sets = (("model.name", model), *((f"model.{k}", v) for k, v in options.items()), ("train.steps", steps))
            return Condition(name, {"model": model, "front": front, **options, "steps": steps, "vs": vs}, sets,
                             "baseline" if not vs else front)

        out = [cond("plain", "multires-none", "none", "")]
        out.append(cond("pyramid3", "pyramid-rica", "pyramid", "plain", levels=3, pyramid="laplacian"))
        if not self.quick:
            out.append(cond("pyramid3-gauss", "pyramid-rica", "pyramid", "plain", levels=3, pyramid="gaussian"))
            out.append(cond("pyramid2", "pyramid-rica", "pyramid", "plain", levels=2, pyramid="laplacian"))
        out.append(cond("glimpse", "glimpse-rica", "glimpse", "plain", glimpses=3, glimpse_scales=2))
        if not self.quick:
            out.append(cond("glimpse-1scale", "glimpse-rica", "glimpse", "plain", glimpses=3, glimpse_scales=1))
        return out
