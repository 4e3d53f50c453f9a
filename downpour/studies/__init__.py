"""The questions of MISSION.md, each answered by a study: ``downpour study NAME``.

A study module defines one :class:`~downpour.studies.base.Study` subclass; :data:`STUDIES` maps
the command's names to them, imported on use, and :data:`QUESTIONS` gives each its question, which the
class reads: ``downpour study list`` prints them without importing a study (each imports torch, 3 s).
That class subclasses the study's design (:mod:`downpour.studies.designs`: its conditions and seeds), which
:data:`DESIGNS` names: ``downpour study NAME --help`` imports it alone, no torch.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from downpour._names import nearest
from downpour.errors import ConfigError

if TYPE_CHECKING:
    from downpour.studies.base import Study
    from downpour.studies.designs import Condition, Design

__all__ = ["DESIGNS", "QUESTIONS", "STUDIES", "Condition", "Study", "design_class", "study_class"]

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
# name -> "module:class" of its design, the class's base: what its help says
DESIGNS = {
    "staleness": "downpour.studies.designs.staleness:StalenessDesign",
    "templates": "downpour.studies.designs.templates:TemplatesDesign",
    "flat-skipping": "downpour.studies.designs.flat_skipping:FlatSkippingDesign",
    "mechanisms": "downpour.studies.designs.mechanisms:MechanismsDesign",
    "first-layer": "downpour.studies.designs.first_layer:FirstLayerDesign",
    "costs": "downpour.studies.designs.costs:CostsDesign",
    "architectures": "downpour.studies.designs.architectures:ArchitecturesDesign",
}
# name -> the question of MISSION.md it answers, in one line (the study's ``question``)
QUESTIONS = {
    "staleness": ("Local optima: does asynchrony (stale gradients from delayed pushes and parallel workers) "
                  "help SGD escape poor local minima, or hurt it?"),
    "templates": ("Memory and compute: what do untied (locally connected), tiled and convolutional templates cost "
                  "in parameters, memory, FLOPs and time, and what do they learn, at equal maps and at equal parameters?"),
    "flat-skipping": ("Flat-skipping: how much computation does skipping the filter where a neighbourhood's variance is "
                      "near zero save, on images with more or less flat area, and what does it cost the features?"),
    "mechanisms": ("Brain mechanisms: do a multi-resolution pyramid or foveated glimpses (attention) in front of a "
                   "feature-learning stage improve what it learns (probe accuracy, invariance) and at what compute?"),
    "first-layer": ("Hand-designed templates: must the first layer's edge detectors be learned without labels, or do "
                    "designed (Gabor) or random filters serve the network as well?"),
    "costs": ("Cost-function design: is a penalty (L1, weight decay, KL sparsity, TICA's pooled L2) there to make codes "
              "sparse or to prevent over-fitting, and how are the two related?"),
    "architectures": ("Whole-network design: on the same data and the same training FLOPs, how do the cat network, a "
                      "convolutional autoencoder, an RBM, an RNN and the UFLDL sparse autoencoder compare?"),
}


def __getattr__(name: str) -> Any:
    """``Condition`` and ``Study`` on first use: the base imports the model registry (torch), a condition is a
    design's (no torch)."""
    if name == "Condition":
        from downpour.studies.designs import Condition
        return Condition
    if name == "Study":
        from downpour.studies.base import Study
        return Study
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def study_class(name: str) -> type[Study]:
    return _imported(STUDIES[_known(name)])


def design_class(name: str) -> type[Design]:
    """The study's design, without the study's module (and torch); a study registered without a design of its own
    in :data:`DESIGNS` is its own (imported)."""
    return _imported(DESIGNS[name]) if _known(name) in DESIGNS else study_class(name)


def _known(name: str) -> str:
    if name not in STUDIES:
        raise ConfigError(f"unknown study {name!r}{nearest(name, STUDIES)}; `downpour study list` names them")
    return name


def _imported(where: str) -> Any:
    """The class ``where`` ("module:class") names."""
    module, cls = where.split(":")
    return getattr(importlib.import_module(module), cls)
