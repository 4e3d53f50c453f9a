"""The templates study's design: its conditions and seeds (the study itself, and what its conditions are:
:mod:`downpour.studies.templates`)."""
from __future__ import annotations

from downpour.studies import QUESTIONS
from downpour.studies.designs import Condition, MeasuredDesign

STEPS_FULL, STEPS_QUICK = 300, 16


class TemplatesDesign(MeasuredDesign):
    name = "templates"
    question = QUESTIONS["templates"]
    seeds_full = 6
    quick_what = "a few training steps"

    def conditions(self) -> list[Condition]:
        steps = STEPS_QUICK if self.quick else STEPS_FULL

        def cond(name: str, tile: int, maps: tuple[int, int], vs: str, group: str) -> Condition:
            kind = {0: "untied", 1: "convolution"}.get(tile, f"tiled {tile}x{tile}")
            return Condition(name, {"tiling": kind, "tile": tile, "maps": list(maps), "steps": steps, "vs": vs},
                             (("model.tile", tile), ("model.maps", list(maps)), ("train.steps", steps)), group)

        out = [cond("untied", 0, (8, 8), "", "equal maps")]
        if not self.quick:
            out.append(cond("tile4", 4, (8, 8), "untied", "equal maps"))
        out.append(cond("tile2", 2, (8, 8), "untied", "equal maps"))
        if not self.quick:
            out.append(cond("conv", 1, (8, 8), "untied", "equal maps"))
        out.append(cond("conv32", 1, (32, 8), "tile2", "equal parameters"))
        return out
