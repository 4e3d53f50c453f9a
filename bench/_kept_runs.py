"""The trained networks of a bench's cells, kept in its cell cache's folder (``--keep-networks``): a new read-out of a
cell's networks (a part's new ``VARIANT_READS`` entry on whole-pool, say) scores the kept run and its no-faces twin
instead of training them again.

    runs = KeptRuns(cache)       # a CellCache (bench/_cell_cache.py): its folder and its key
    with runs.trained_run(cfg) as (run, model, summary), runs.no_faces_twin(cfg) as twin:
        ...                      # as downpour.studies.trained's: trained (and kept) the first time, opened after

A network is the run directory its training wrote, copied whole: ``config.toml``, the model and its checkpoints as
safetensors + JSON (the project's own writers: :mod:`downpour.train.model_file`, :mod:`downpour.train.checkpoint`),
its fitted input processing and ``metrics.jsonl``; beside it ``summary.json`` (the runner's summary) and ``key.json``.
It lies in ``DIR/networks/<sha256 of its key>/``, its key the cell cache's for its config (seed included) under the
kind ``network``: the same code, torch and config, so a kept network is the one training would give again. It is
opened as ``downpour analyze`` opens a run (:func:`~downpour.analysis.options.open_run`: safetensors, never a pickle).
A kept network that cannot be opened, or whose ``key.json`` is another's, is named, removed and trained again.
"""
from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


class KeptRuns:
    """``trained_run`` and ``no_faces_twin`` of :mod:`downpour.studies.trained`, each network kept in ``cache``'s
    folder when trained and opened from it after."""

    def __init__(self, cache):
        self.cache = cache

    def path(self, key: dict[str, Any]) -> Path:
        return self.cache.folder / "networks" / self.cache.path(key).stem

    def _opened(self, key: dict[str, Any]):
        """(run, model, summary) of the network kept under ``key``; None where none is or it cannot be opened
        (said, naming its folder, and removed)."""
        from downpour.analysis.options import open_run

        path = self.path(key)
        if not path.exists():
            return None
        try:
            if json.loads((path / "key.json").read_text()) != key:
                raise ValueError("its key.json is another network's")
            summary = json.loads((path / "summary.json").read_text())
            run, model = open_run(path / "run")
        except Exception as err:     # (whatever a damaged folder raises: safetensors', TOML's, JSON's, a missing file)
            print(f"cache: the network in {path} cannot be opened ({type(err).__name__}: {err}): removed, trained "
                  "again", flush=True)
            shutil.rmtree(path)
            return None
        print(f"kept network: seed {key['seed']} ({path})", flush=True)
        return run, model, summary

    @contextmanager
    def trained_run(self, cfg) -> Iterator[tuple[Any, Any, dict[str, Any]]]:
        """:func:`~downpour.studies.trained.trained_run` of ``cfg``, or the network kept for it (opened, one BLAS
        thread as there); a network trained here is copied into the folder before it is measured."""
        from downpour.analysis.blas import one_blas_thread
        from downpour.studies import trained

        key = self.cache.key("network", cfg, cfg.seed)
        kept = self._opened(key)
        if kept is not None:
            with one_blas_thread():
                yield kept
            return
        with trained.trained_run(cfg) as (run, model, summary):
            self._keep(key, run.path, summary)
            yield run, model, summary

    def no_faces_twin(self, cfg):
        """:func:`~downpour.studies.trained.no_faces_twin` of ``cfg``, its twin through :meth:`trained_run`."""
        from downpour.studies import trained

        return trained.no_faces_twin(cfg, self.trained_run)

    def _keep(self, key: dict[str, Any], run: Path, summary: dict[str, Any]) -> None:
        """The run directory ``run`` and its ``summary`` into the folder, whole or not at all (written beside it, then
        one rename)."""
        path = self.path(key)
        part = path.with_name(path.name + ".part")
        shutil.rmtree(part, ignore_errors=True)       # a kill mid-copy left it
        shutil.copytree(run, part / "run")
        (part / "summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
        (part / "key.json").write_text(json.dumps(key, indent=1) + "\n")
        shutil.rmtree(path, ignore_errors=True)
        part.rename(path)
