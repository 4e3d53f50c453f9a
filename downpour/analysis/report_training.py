"""The report's training part, which every run gets: the loss and staleness pictures (:func:`training_figures`, drawn
by the analysis or, for a run it has no image to show, by the report itself), the "Training curves" section and the
config; and :func:`write_training_report`, the report of a run whose input is not an image (teacher-student's 8
Gaussian numbers), so a run studied for its staleness (docs/studies.md, Q1) shows its loss curve, its staleness
histogram and whether it diverged. It has no analysis.json: nothing was
measured (docs/analysis.md)."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from downpour._names import pasted
from downpour.analysis.options import MIN_SIDE, is_image_input
from downpour.analysis.report_cluster import cluster_faults, no_staleness
from downpour.analysis.report_notes import data_note, loss_headline
from downpour.analysis.report_parts import esc, image, page, run_json
from downpour.analysis.report_placement import placement_note
from downpour.analysis.report_staleness import staleness_paragraph
from downpour.analysis.report_stop import stop_note
from downpour.analysis.training import frozen_stages, training_summary
from downpour.analysis.training_plots import cost_parts, loss_curves, staleness_histogram
from downpour.data.patches import DATA_JSON
from downpour.train.divergence import recorded
from downpour.train.rundir import NotARunError, RunDir

log = logging.getLogger(__name__)


def staleness_histograms(run: RunDir, metrics: list[dict[str, Any]]) -> dict[str, dict[int, int]]:
    """staleness.json's ``overall`` and ``per_worker`` histograms; else a histogram of metrics' ``staleness``.

    Read defensively: a field that is missing or not shaped as expected is skipped, not fatal.
    """
    out: dict[str, dict[int, int]] = {}
    path = run.path / "staleness.json"
    if path.is_file():
        try:
            report = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            log.warning("skipping %s: not JSON (%s)", path, err)
            report = {}
        report = report if isinstance(report, dict) else {}
        workers = report.get("per_worker") if isinstance(report.get("per_worker"), dict) else {}
        ordered = sorted(workers.items(), key=lambda kv: (len(kv[0]), kv[0]))   # "10" after "9", not after "1"
        blocks = [("overall", report.get("overall")), *((f"worker {w}", v) for w, v in ordered)]
        for label, block in blocks:
            hist = block.get("histogram") if isinstance(block, dict) else None
            try:
                if isinstance(hist, dict) and hist:
                    out[label] = {int(k): int(v) for k, v in hist.items()}
            except (TypeError, ValueError):
                log.warning("skipping %s's %s histogram: its counts are not whole numbers", path, label)
    if not out:
        values = [int(r["staleness"]) for r in metrics if isinstance(r.get("staleness"), (int, float))]
        if values:
            counts = np.bincount(values)
            out["metrics.jsonl"] = {i: int(c) for i, c in enumerate(counts) if c}
    return out


def training_figures(run: RunDir, metrics: list[dict[str, Any]], folder: Path) -> tuple[dict[str, str],
                                                                                       dict[str, dict[int, int]]]:
    """The loss curves and staleness histogram drawn into ``folder`` (``{"loss": "loss.png", ...}``, each where the
    run has it) and the staleness histograms they show."""
    paths = {}
    if cost_parts(metrics):
        paths["loss"] = loss_curves(metrics, folder / "loss.png").name
    staleness = staleness_histograms(run, metrics)
    if staleness:
        paths["staleness"] = staleness_histogram(staleness, folder / "staleness.png").name
    return paths, staleness


def training_section(run: RunDir, figs: dict[str, str]) -> str:
    """The "Training curves" section: ``figs`` as analysis.json's ``figures`` names them (``figures/loss.png``), led
    by where a stopped run ended (:func:`~downpour.analysis.report_stop.stop_note`), above its curves."""
    return f"""
<h2 id="training">Training curves</h2>
{stop_note(run)}
{image(run, figs.get('loss'), 'loss curves per cost part')}
{image(run, figs.get('staleness'), 'staleness histogram') if figs.get('staleness') else f'<p class="note">{no_staleness(run)}</p>'}
{staleness_paragraph(run)}
{cluster_faults(run)}
{placement_note(run)}
{data_note(run_json(run, DATA_JSON))}
"""


def config_section(run: RunDir, said: str = "") -> str:
    """The run's config.toml as it trained, after ``said`` (the report's words on its ``[analysis]`` table)."""
    return f"""
<h2 id="config">Configuration (config.toml)</h2>
<p>How the run trained, seed {esc(run.config.seed)}: from the folder that holds <code>{esc(run.path.name)}/</code>,
<code>downpour train --config {esc(pasted(f'{run.path.name}/config.toml'))} --out NEW_FOLDER</code> trains it again
from its start (a path relative to there, so the command still holds once the run is moved).{said}</p>
<pre>{esc((run.path / 'config.toml').read_text())}</pre>
"""


def input_shape(run: RunDir) -> tuple[int, ...] | None:
    """model.json's ``input_shape``, or None where it has none that reads as one (the analysis says what is wrong)."""
    meta = run_json(run, "model.json")
    shape = meta.get("input_shape") if isinstance(meta, dict) else None
    return tuple(shape) if isinstance(shape, list) and all(isinstance(s, int) for s in shape) else None


def shows_no_image(run: RunDir) -> bool:
    """Whether ``run``'s model takes no image (:func:`~downpour.analysis.options.is_image_input`): its report is
    :func:`write_training_report`'s, and it has no analysis.json."""
    shape = input_shape(run)
    return shape is not None and not is_image_input(shape)


def write_training_report(run: RunDir) -> Path:
    """``report.html`` of a run whose input is not an image, its figures (``figures/loss.png``,
    ``figures/staleness.png``) drawn anew from metrics.jsonl and staleness.json: its headline (diverged, said first),
    its training curves, staleness and faults, why nothing else is shown, and its config."""
    meta = run.read_json("model.json")
    metrics = run.metrics()
    folder = figures_folder(run, "the report draws")
    folder.mkdir(exist_ok=True)
    drawn, _ = training_figures(run, metrics, folder)
    training = training_summary(metrics, frozen_stages(run.load_model()), *recorded(run.path))
    shape, cfg = "x".join(map(str, meta["input_shape"])), run.config
    body = (f"<h1>{esc(title(run))}</h1>"
            f"<p>Model <b>{esc(meta['model'])}</b>, trained {esc(meta.get('step'))} steps on {esc(shape)} inputs "
            f"(data.source = {esc(cfg.data.source)}).\n{loss_headline(training)}</p>"
            + training_section(run, {k: f"figures/{v}" for k, v in drawn.items()})
            + f'<h2 id="not-measured">What this report does not show</h2><p class="note">This run\'s input is not an '
              f"image: each sample is {esc(shape)} (data.source = {esc(cfg.data.source)}), and the analysis shows the "
              f"network images of at least {MIN_SIDE}x{MIN_SIDE} (lfw, digits, a folder). So there is no first-layer "
              "filter picture, no best single neuron or face test, no optimal stimulus, no invariance and no linear "
              "probes for this run, and no analysis.json: the training above is all there is to report.</p>"
            + config_section(run))
    return write_page(run, body)


def figures_folder(run: RunDir, who: str) -> Path:
    """``run``'s figures/ (not made here); NotARunError where a file has its name, saying that ``who`` (``"the analysis
    writes"``) its pictures into a folder of that name."""
    folder = run.path / "figures"
    if folder.exists() and not folder.is_dir():
        raise NotARunError(f"{str(folder)!r} is a file: {who} its pictures into a folder of that name; move the file away")
    return folder


def title(run: RunDir) -> str:
    """The report's title, the page's (a browser's tab) and its heading alike, not a tab reading
    "downpour report: RUN" over a heading "downpour run report: RUN"."""
    return f"downpour run report: {run.path.name}"


def write_page(run: RunDir, body: str) -> Path:
    """``report.html`` of ``run`` around ``body``, and its path."""
    out = run.path / "report.html"
    try:
        out.write_text(page(title(run), body), encoding="utf-8")
    except OSError as err:            # a read-only run folder: named, not a traceback
        raise NotARunError(f"cannot write {str(out)!r} ({err.strerror or err}); report a copy of the run") from None
    return out
