"""A folder of a bench's finished cells (``--cache DIR``): a cell's JSON rows stored under a key of what made them, so a
rerun reads a cell it has already measured instead of training it again (about 4 CPU-minutes a why-cat arm).

    cache = CellCache("why-cat-cache", code_digest(BENCH_FILES))
    rows = cache.rows_of(cache.key("cat", cfg, seed, measures=m, reads=READS), lambda: _cat_cell(study, seed))

The key is the cell's kind and name, its resolved config (``config_to_dict``, as JSON with sorted keys), its seed,
whatever else shapes its rows (the study's ``Measures``, the read-outs), torch's version, and ``code``: the SHA-256
of the ``downpour`` package's source files (every ``*.py`` and ``*.toml`` under it, by path) and of the bench modules
that train and score the cell. The files are hashed, not git's tree id of ``downpour/``: the tree id names committed
code only, so a cell trained in a checkout with changes (the usual state while a study grows) would need the files'
hash anyway, and the two would key the same code twice; hashing ~300 files takes a few hundredths of a second. Any
edit to those files, a comment's too, retrains every cell: a stale row is never read as a fresh one.

Each cell is one file, ``DIR/<sha256 of the key>.json``: ``{"key": ..., "rows": [...]}``, written whole or not at all
(:func:`~downpour.train.model_file.replace_text`). A file that does not parse, holds no rows or holds another key is
named, skipped and its cell trained again (then written over); it never ends the run.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Iterable

import downpour

PACKAGE = Path(downpour.__file__).resolve().parent


def code_digest(extra: Iterable[str | Path] = (), package: Path = PACKAGE) -> str:
    """SHA-256 of every ``*.py`` and ``*.toml`` file under ``package`` (path relative to it, then its bytes, in path
    order) and of the ``extra`` files (by name: the bench modules that train and score a cell)."""
    h = hashlib.sha256()
    files = sorted(p for p in package.rglob("*") if p.suffix in (".py", ".toml") and "__pycache__" not in p.parts)
    for name, path in [*((str(p.relative_to(package)), p) for p in files), *((Path(e).name, Path(e)) for e in extra)]:
        data = path.read_bytes()
        h.update(f"{name}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


class CellCache:
    """The cells of ``folder`` (made when the first is stored), keyed with ``code`` (:func:`code_digest`)."""

    def __init__(self, folder: str | Path, code: str):
        self.folder, self.code = Path(folder), code

    def key(self, cell: str, cfg, seed: int, **more: Any) -> dict[str, Any]:
        """The key of the cell ``cell`` (its kind and name, e.g. ``"run cat"``) of config ``cfg`` on ``seed``;
        ``more``: what else shapes its rows (a dataclass is stored as its fields)."""
        import torch
        from downpour.config import config_to_dict

        said = {k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for k, v in more.items()}
        # (through JSON and back: a tuple is stored as a list, and the key read from a file compares equal)
        return json.loads(_canonical({"cell": cell, "config": config_to_dict(cfg), "seed": seed, **said,
                                      "torch": torch.__version__, "code": self.code}))

    def path(self, key: dict[str, Any]) -> Path:
        return self.folder / f"{hashlib.sha256(_canonical(key).encode()).hexdigest()}.json"

    def read(self, key: dict[str, Any]) -> list[dict[str, Any]] | None:
        """The rows stored under ``key``; None where none are, or where the file is damaged (said, naming it)."""
        path = self.path(key)
        if not path.exists():
            return None
        try:
            stored = json.loads(path.read_text())
            rows = stored["rows"]
            if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
                raise ValueError("its rows are not a list of JSON objects")
            if _canonical(stored["key"]) != _canonical(key):
                raise ValueError("it holds another cell's key")
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as err:
            print(f"cache: {path} is damaged ({type(err).__name__}: {err}): skipped, the cell is trained again",
                  flush=True)
            return None
        return rows

    def store(self, key: dict[str, Any], rows: list[dict[str, Any]]) -> Path:
        from downpour.train.model_file import replace_text

        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(key)
        replace_text(path, json.dumps({"key": key, "rows": rows}, indent=1) + "\n")
        return path

    def held(self, key: dict[str, Any]) -> list[dict[str, Any]] | None:
        """:meth:`read`, said ("cached: CELL seed SEED (FILE)") where the folder holds the cell."""
        rows = self.read(key)
        if rows is not None:
            print(f"cached: {key['cell']} seed {key['seed']} ({self.path(key)})", flush=True)
        return rows

    def rows_of(self, key: dict[str, Any], train: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """The cell's rows read from the folder (:meth:`held`), or ``train()``'s, stored under ``key``."""
        rows = self.held(key)
        if rows is not None:
            return rows
        rows = train()
        self.store(key, rows)
        return rows
