"""What did it learn: the best single neuron, optimal stimuli, invariance, linear probes, pictures, report.

    from downpour.analysis import analyze_run, write_report
    analyze_run("runs/main")          # analysis.json + figures/*.png
    write_report("runs/main")         # report.html (self-contained)

See docs/analysis.md. The report module is imported lazily by ``write_report`` users; everything
here works on a run directory alone.
"""
import importlib
from typing import Any

# name -> its module, imported on first use (PEP 562): `downpour train` reads only analysis.options, and the
# package importing every analysis module pulled scikit-learn and scipy.stats into each training process
# (1.5 s of its start-up)
_LAZY = {
    "edge_like": "edges", "edge_scores": "edges", "edge_summary": "edges",
    "invariance_curves": "invariance", "transform": "invariance",
    "LabelledSet": "labelled", "load_labelled": "labelled",
    "cv_probe": "probe", "probe_table": "probe",
    "best_unit": "selectivity", "face_neuron_table": "selectivity", "threshold_scan": "choice",
    "Stimulus": "stimulus", "optimal_stimulus": "stimulus", "top_images": "stimulus",
    "randomized_copy": "units", "unit_responses": "units", "layer_responses": "units",
}


def __getattr__(name: str) -> Any:
    """A public name from its module; a submodule by its name (``downpour.analysis.probe`` after a bare
    ``import downpour.analysis``, as when the package imported them all)."""
    try:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name) if name in _LAZY else \
            importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as err:
        if err.name != f"{__name__}.{name}":      # a submodule's own missing import: not this name's
            raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


def analyze_run(run_path, **options):
    """See :func:`downpour.analysis.run.analyze_run` (imported on use: it pulls in the run directory and figures)."""
    from downpour.analysis.run import analyze_run as _analyze

    return _analyze(run_path, **options)


def write_report(run_path, analyze_if_missing=True):
    """See :func:`downpour.analysis.report.write_report`."""
    from downpour.analysis.report import write_report as _write

    return _write(run_path, analyze_if_missing=analyze_if_missing)


__all__ = ["LabelledSet", "Stimulus", "analyze_run", "best_unit", "cv_probe", "edge_like", "edge_scores",
           "edge_summary", "face_neuron_table", "invariance_curves", "layer_responses", "load_labelled",
           "optimal_stimulus", "probe_table", "randomized_copy", "threshold_scan", "top_images", "transform",
           "unit_responses", "write_report"]
