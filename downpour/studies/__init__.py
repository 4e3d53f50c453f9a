"""The questions of MISSION.md, each answered by a study: ``downpour study NAME``.

A study module defines one :class:`~downpour.studies.base.Study` subclass; :data:`STUDIES` maps
the command's names to them, imported on use.
"""
from __future__ import annotations

import importlib

from downpour._names import nearest
from downpour.config import ConfigError
from downpour.studies.base import Condition, Study

__all__ = ["STUDIES", "Condition", "Study", "study_class"]

# name -> "module:class"
STUDIES = {
    "staleness": "downpour.studies.staleness:StalenessStudy",              # Q1 local optima
    "templates": "downpour.studies.templates:TemplatesStudy",              # Q2 memory and compute
    "flat-skipping": "downpour.studies.flat_skipping:FlatSkippingStudy",   # Q3 skipping flat regions
    "mechanisms": "downpour.studies.mechanisms:MechanismsStudy",           # Q4 brain mechanisms
    "first-layer": "downpour.studies.first_layer:FirstLayerStudy",         # Q5 hand-designed templates
    "costs": "downpour.studies.costs:CostsStudy",                          # Q6 cost-function design
    "architectures": "downpour.studies.architectures:ArchitecturesStudy",  # Q7 network design
}


def study_class(name: str) -> type[Study]:
    if name not in STUDIES:
        raise ConfigError(f"unknown study {name!r}{nearest(name, STUDIES)}; `downpour study list` names them")
    module, cls = STUDIES[name].split(":")
    return getattr(importlib.import_module(module), cls)
