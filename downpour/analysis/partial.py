"""``RUN/analysis.partial.json``: the parts of an analysis finished before it was stopped, reused by the next.

    kept = Kept.open(run, inputs_key(run, opts, no_faces_path))
    neuron = kept.part("splits", lambda: over_splits(...))     # computed once; a rerun reads it back

An analysis measures one part after another (the splits, the face test, the optimal stimulus, the invariance
sweeps, the probes: ~17 s on the main job, minutes on bigger runs); a Ctrl-C used to lose them all. Each part's
result is written here (whole or not at all) as it finishes, keyed by the SHA-256 of what it was measured from:
the weights, the run's config.toml, the analysis options and the no-faces network's weights. A rerun with another
key measures everything anew. The file goes once analysis.json is written; it is never read as an analysis
(the report and the studies read analysis.json only).

Every part's value goes through JSON on the way out, the first time as on reuse, so an analysis stopped and
finished writes the very analysis.json an analysis run through would (tests/test_analysis_partial.py).
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from downpour.train.model_file import replace_text
from downpour.train.rundir import RunDir

log = logging.getLogger(__name__)

NAME = "analysis.partial.json"


def inputs_key(run: RunDir, options: dict[str, Any], no_faces: Path | None) -> str:
    """SHA-256 of the weights (model.safetensors and model.json), config.toml, the analysis ``options`` and, when the
    face test scores one, the no-faces network's weights: what an analysis's numbers are measured from."""
    h = hashlib.sha256(json.dumps(options, sort_keys=True, default=str).encode())
    files = [run.path / "model.safetensors", run.path / "model.json", run.path / "config.toml"]
    if no_faces is not None:
        files += [no_faces / "model.safetensors", no_faces / "model.json"]
    for path in files:
        h.update(path.name.encode())
        h.update(path.read_bytes() if path.is_file() else b"")
    return h.hexdigest()


class Kept:
    """The finished parts of an analysis of ``run`` with inputs ``key``: :meth:`part` computes a part or reads it back."""

    def __init__(self, run: RunDir, key: str, parts: dict[str, Any]) -> None:
        self.path, self.key, self.parts = run.path / NAME, key, parts
        self.reused: list[str] = []

    @classmethod
    def open(cls, run: RunDir, key: str) -> "Kept":
        """The parts kept in ``RUN/analysis.partial.json`` when they were measured from inputs ``key``; none otherwise
        (another model, config or options: the file is then overwritten by this analysis's first part)."""
        saved = read(run.path)
        if saved.get("key") != key:
            if saved:
                log.info("%s: measured from other weights, config or analysis options; measuring anew",
                         run.path / NAME)
            return cls(run, key, {})
        return cls(run, key, saved["parts"])

    def part(self, name: str, compute: Callable[[], Any], encode: Callable[[Any], Any] = lambda v: v,
             decode: Callable[[Any], Any] = lambda v: v) -> Any:
        """``decode`` of part ``name``'s kept value, or of ``encode(compute())`` (which is kept before it is returned)."""
        if name in self.parts:
            self.reused.append(name)
            log.info("%s: reusing the %s of the analysis stopped before", self.path, name)
        else:
            self.parts[name] = json.loads(json.dumps(encode(compute())))
            replace_text(self.path, json.dumps({"key": self.key, "parts": self.parts}))
        return decode(self.parts[name])

    def discard(self) -> None:
        """Remove the file: analysis.json now holds every part."""
        self.path.unlink(missing_ok=True)


def read(run_path: Path) -> dict[str, Any]:
    """``RUN/analysis.partial.json`` as ``{"key": ..., "parts": {...}}``; ``{}`` when it is missing or unreadable
    (a file this module did not write whole: measured anew)."""
    path = Path(run_path) / NAME
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return saved if isinstance(saved, dict) and isinstance(saved.get("parts"), dict) else {}


def kept_words(run_path: str | Path) -> str:
    """What a stopped analysis of ``run_path`` kept, for the CLI's Ctrl-C line: "the splits, the face test" or ""."""
    return ", ".join(f"the {name}" for name in read(Path(run_path)).get("parts", {}))
