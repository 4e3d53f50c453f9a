"""``RUN/analysis.partial.json``: the parts of an analysis finished before it was stopped, reused by the next.

    kept = Kept.open(run, inputs_key(run, resolved_options(opts, layer, probe_layers), no_faces_path))
    neuron = kept.part("splits", lambda: over_splits(...))     # computed once; a rerun reads it back

An analysis measures one part after another (the splits, the face test, the optimal stimulus, the invariance
sweeps, the probes: ~17 s on the main job, minutes on bigger runs), which a Ctrl-C would otherwise lose. Each part's
result is written here (whole or not at all) as it finishes, keyed by the SHA-256 of what it was measured from:
the weights, the run's config and input processing, the analysis options a part reads (:data:`READ_BY_PARTS`, as
resolved: the layer the model resolves ``layer = ""`` to, the probes in any order; not ``report`` or ``top_k``,
which change no part), every file of a folder they name (as the loader walks it: through linked sub-folders),
the no-faces network's weights and the code that measures (downpour's source and the numeric libraries' versions:
a file kept before an upgrade is not read back as the new code's numbers). A rerun with another key measures
everything anew. The file goes once analysis.json is written; it is never read as an analysis (the report and the
studies read analysis.json only).

Every part's value goes through JSON on the way out, the first time as on reuse, so an analysis stopped and
finished writes the very analysis.json an analysis run through would (tests/test_analysis_partial.py).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from downpour.analysis.labelled import BUILT_IN
from downpour.config import AnalysisConfig
from downpour.data.folder import walk_files
from downpour.train.checkpoint import sha256_of
from downpour.train.machine import versions
from downpour.train.model_file import replace_text, temp_of
from downpour.train.rundir import RunDir

log = logging.getLogger(__name__)

NAME = RunDir.PARTIAL


# a run's files its analysis is measured from (its input processing: the images' whitening and normalisation); its
# config.toml is read as the run's config less its [analysis] section (:func:`run_settings`); the no-faces network's
# config.toml whole
RUN_FILES = ("model.safetensors", "model.json", "preprocess.json", "preprocess.safetensors")
LIBRARIES = ("torch", "numpy", "scipy", "scikit-learn", "scikit-image")   # whose arithmetic the numbers come out of
FOLDER_OPTIONS = ("dataset", "poses", "probes")    # options that may name a folder of images (else lfw, digits)
ALWAYS_FOLDER = ("poses",)                          # ... and the one that names nothing else (a folder called digits)
# options that name the face test's no-faces network: keyed as what they resolve to, its files (inputs_key's no_faces),
# so no_faces_run = "nf" and "./nf" are one analysis, and no_faces_run of a face test that does not run is none
NO_FACES = ("no_faces_run", "no_faces_twin")

# Every AnalysisConfig field is one of these (tests/test_analysis_partial.py fails on one that is neither). The key
# reads those some kept part's numbers are measured with; the others change no kept part and are not keyed, so a
# rerun that changes only one (say --set analysis.report=true) reuses every part.
READ_BY_PARTS = (
    "layer", "dataset", "positive", "test_fraction", "splits", "random_filters",     # the splits (and the face test)
    "bootstrap", "control_draws", "face_select", "face_choice", "concept_controls",  # the face test, concept controls
    "no_faces_run", "no_faces_twin",                                                 # the face test's no-faces network
    "stimulus_steps", "stimulus_restarts",                                           # the optimal stimulus
    "invariance_fill", "poses",                                                      # the invariance sweeps
    "probes", "probe_layers", "probe_folds", "probe_samples",                        # the probes (one part each)
)
NOT_READ_BY_PARTS = (
    "report",       # whether `downpour train` analyses and writes report.html when it ends
    "top_k",        # the top images beside the optimal stimulus: ranked after the parts, from the unit they pictured
)


def inputs_key(run: RunDir, options: dict[str, Any], no_faces: Path | None) -> str:
    """SHA-256 of what an analysis's numbers are measured from: the run's :data:`RUN_FILES` and :func:`run_settings`,
    the analysis ``options`` of :data:`READ_BY_PARTS` (as resolved: :func:`resolved_options`), every file of a folder
    they name (:data:`FOLDER_OPTIONS`), the no-faces network's files when the face test scores one, the code
    (:func:`code_digest`) and torch's thread count (its sums' order: the optimal stimulus comes out otherwise on
    another count, :func:`~downpour.analysis.run.analyze_run`). One JSON document is hashed, each file a [name, digest]
    pair (names and digests run together would leave the boundary between them unhashed)."""
    read = {key: value for key, value in options.items() if key in READ_BY_PARTS and key not in NO_FACES}
    read["probes"] = sorted(set(read.get("probes") or []))   # one part each, named by its set: their order changes none
    files = [(name, run.path / name) for name in RUN_FILES]    # (named as within their folder: a run moved keeps its key)
    if no_faces is not None:       # its options resolved: the twin or the run they name, by its files
        files += [(f"no-faces {name}", no_faces / name) for name in (*RUN_FILES, "config.toml")]
    for folder in _named_folders(read):
        files += [(f"{folder} {p.relative_to(folder).as_posix()}", p) for p in walk_files(folder)]
    whole = {"options": read, "code": code_digest(), "threads": torch.get_num_threads(), "run": run_settings(run),
             # (read in blocks: not a model's weights whole)
             "files": [[name, sha256_of(path) if path.is_file() else None] for name, path in files]}
    return hashlib.sha256(json.dumps(whole, sort_keys=True, default=str).encode()).hexdigest()


def resolved_options(opts: AnalysisConfig, layer: str, probe_layers: list[str]) -> dict[str, Any]:
    """``opts`` as the parts read them, for :func:`inputs_key`: the layer and the probed layers as
    :func:`~downpour.analysis.units.check_layer` resolved them on the model (``analysis.layer = ""`` and the model's
    :meth:`analysis_layer` spelled out are one analysis; keyed as written, one would miss
    the other's parts). ``dataset``, ``poses`` and ``probes`` stay as written: the parts name their sets so
    (``"dataset": "./images"``), and a folder's images are keyed by their files."""
    return {**dataclasses.asdict(opts), "layer": layer, "probe_layers": list(probe_layers)}


def run_settings(run: RunDir) -> dict[str, Any]:
    """The run's config (its config.toml as read) but its ``[analysis]`` section: the analysis reads that through
    its options, of which the key takes :data:`READ_BY_PARTS` (an edited ``report = true`` there measured anew)."""
    return {name: value for name, value in dataclasses.asdict(run.config).items() if name != "analysis"}


def _named_folders(options: dict[str, Any]) -> Iterator[Path]:
    """The folders of images the options name, as the loader reads them (a built-in set's name is never a folder)."""
    for key in FOLDER_OPTIONS:
        values = options.get(key)
        for value in values if isinstance(values, list) else [values]:
            built_in = value in BUILT_IN and key not in ALWAYS_FOLDER
            if isinstance(value, str) and not built_in and value and Path(value).is_dir():   # (not ./lfw)
                yield Path(value)


@functools.cache
def code_digest() -> str:
    """The code an analysis measures with: :func:`source_digest` of the downpour package and the versions of the
    :data:`LIBRARIES` as a run's environment.json records them (:func:`~downpour.train.machine.versions`), so a
    part kept by older code is not read back after an upgrade."""
    libraries = ", ".join(f"{name} {v}" for name, v in versions(LIBRARIES).items())
    return source_digest(Path(__file__).resolve().parents[1]) + " " + libraries


def source_digest(root: Path) -> str:
    """SHA-256 of every ``*.py`` file under ``root``, with its path there."""
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


class Kept:
    """The finished parts of an analysis of ``run`` with inputs ``key``: :meth:`part` computes a part or reads it back."""

    def __init__(self, run: RunDir, key: str, parts: dict[str, Any], said: dict[str, str] | None = None) -> None:
        self.path, self.key, self.parts, self.said = run.path / NAME, key, parts, dict(said or {})

    @classmethod
    def open(cls, run: RunDir, key: str) -> "Kept":
        """The parts kept in ``RUN/analysis.partial.json`` when they were measured from inputs ``key``; none otherwise:
        the file, of other inputs (another model, config, options or code) or unreadable, is removed then, so a stop
        before this analysis's first part does not name its parts as kept. A ``analysis.partial.json.tmp`` a kill
        mid-write left goes too."""
        temp_of(run.path / NAME).unlink(missing_ok=True)   # left by a kill mid-write (the file is whole or the old one)
        saved = read(run.path)
        if saved.get("key") == key:
            return cls(run, key, saved["parts"], saved["said"])
        kept = cls(run, key, {})
        if kept.path.is_file():
            log.info("%s: %s; measuring anew", kept.path,
                     "measured from other weights, config, analysis options or code" if saved else
                     "unreadable (not the JSON this analysis writes)")
            kept.discard()
        return kept

    def part(self, name: str, compute: Callable[[], Any], encode: Callable[[Any], Any] = lambda v: v,
             decode: Callable[[Any], Any] = lambda v: v, said: str = "") -> Any:
        """``decode`` of part ``name``'s kept value, or of ``encode(compute())`` (which is kept before it is returned);
        ``said``: what the log calls it, where not ``name`` (a folder concept's controls are the "face test" part),
        kept with it for the Ctrl-C line's :func:`kept_words`."""
        if said:
            self.said[name] = said
        if name in self.parts:
            log.info("%s: reusing the %s of the analysis stopped before", self.path, said or name)
        else:      # (said as it starts: the main job's analysis is a minute or more of work)
            log.info("%s: measuring the %s", self.path.parent, said or name)
            self.parts[name] = json.loads(json.dumps(encode(compute())))
            replace_text(self.path, json.dumps({"key": self.key, "parts": self.parts, "said": self.said}))
        return decode(self.parts[name])

    def discard(self) -> None:
        """Remove the file, and a temp file a kill mid-write left beside it: once analysis.json holds every part
        (``run._publish``), or when :meth:`open` finds it of other inputs or unreadable."""
        self.path.unlink(missing_ok=True)
        temp_of(self.path).unlink(missing_ok=True)


def read(run_path: Path) -> dict[str, Any]:
    """``RUN/analysis.partial.json`` as ``{"key": ..., "parts": {...}, "said": {...}}`` ("said": each part's name in
    the log, where not its own; ``{}`` in a file written before 2026-12-05); ``{}`` when it is missing or unreadable
    (a file this module did not write whole: measured anew)."""
    path = Path(run_path) / NAME
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not (isinstance(saved, dict) and isinstance(saved.get("parts"), dict)):
        return {}
    return saved | {"said": saved["said"] if isinstance(saved.get("said"), dict) else {}}


def kept_words(run_path: str | Path) -> str:
    """What a stopped analysis of ``run_path`` kept, for the CLI's Ctrl-C line: "the splits, the face test" or "", each
    part named as the log named it ("the controls for cat", not the stored name, "the face test")."""
    saved = read(Path(run_path))
    said = saved.get("said", {})
    return ", ".join(f"the {said.get(name, name)}" for name in saved.get("parts", {}))
