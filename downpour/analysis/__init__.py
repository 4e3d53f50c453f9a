"""What did it learn: the best single neuron, optimal stimuli, invariance, linear probes, pictures, report.

    from downpour.analysis import analyze_run, write_report
    analyze_run("runs/main")          # analysis.json + figures/*.png
    write_report("runs/main")         # report.html (self-contained)

See docs/analysis.md. The report module is imported lazily by ``write_report`` users; everything
here works on a run directory alone.
"""
from downpour.analysis.edges import edge_like, edge_scores, edge_summary
from downpour.analysis.invariance import invariance_curves, transform
from downpour.analysis.labelled import LabelledSet, load_labelled
from downpour.analysis.probe import cv_probe, probe_table
from downpour.analysis.selectivity import best_unit, face_neuron_table, threshold_scan
from downpour.analysis.stimulus import Stimulus, optimal_stimulus, top_images
from downpour.analysis.units import randomized_copy, unit_responses


def analyze_run(run_path, **options):
    """See :func:`downpour.analysis.run.analyze_run` (imported on use: it pulls in the run directory and figures)."""
    from downpour.analysis.run import analyze_run as _analyze

    return _analyze(run_path, **options)


def write_report(run_path, analyze_if_missing=True):
    """See :func:`downpour.analysis.report.write_report`."""
    from downpour.analysis.report import write_report as _write

    return _write(run_path, analyze_if_missing=analyze_if_missing)


__all__ = ["LabelledSet", "Stimulus", "analyze_run", "best_unit", "cv_probe", "edge_like", "edge_scores",
           "edge_summary", "face_neuron_table", "invariance_curves", "load_labelled", "optimal_stimulus",
           "probe_table", "randomized_copy", "threshold_scan", "top_images", "transform", "unit_responses",
           "write_report"]
