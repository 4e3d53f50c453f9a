"""The costs study's design: its conditions and seeds (the study itself, and what its conditions are:
:mod:`downpour.studies.costs`)."""
from __future__ import annotations

from typing import Any

from downpour.studies import QUESTIONS
from downpour.studies.designs import Condition, Design

SIZES = {"less": 500, "more": 10_000}                      # training patches
# each penalty's weights, weak to strong (the strongest stops short of dead codes)
PENALTIES = {"l1": (1e-3, 3e-3, 1e-2), "weight_l2": (1e-5, 1e-4, 1e-3), "kl_sparsity": (0.1, 1.0, 3.0),
             "pooled_l2": (1e-3, 3e-3, 1e-2)}
QUICK_PENALTIES = {"l1": (1e-2,), "weight_l2": (1e-3,)}
RHO = 0.05
STEPS = {False: 1000, True: 150}


def penalty_spec(term: str, weight: float) -> Any:
    return {"weight": weight, "rho": RHO} if term == "kl_sparsity" else weight


class CostsDesign(Design):
    name = "costs"
    question = QUESTIONS["costs"]
    seeds_full = 6
    seeds_quick = 2
    quick_what = "a few steps, two penalties"

    def conditions(self) -> list[Condition]:
        steps = STEPS[self.quick]
        penalties = QUICK_PENALTIES if self.quick else PENALTIES
        out = []
        for size, samples in SIZES.items():
            base = [("data.samples", samples), ("train.steps", steps)]
            out.append(Condition(f"{size}/none", {"data": size, "samples": samples, "penalty": "none", "weight": 0.0,
                                                  "vs": "less/none" if size != "less" else ""}, tuple(base), size))
            for term, weights in penalties.items():
                for w in weights:
                    out.append(Condition(f"{size}/{term}={w:g}",
                                         {"data": size, "samples": samples, "penalty": term, "weight": w,
                                          "vs": f"{size}/none"},
                                         tuple(base + [(f"objective.{term}", penalty_spec(term, w))]), size))
        return out
