"""What a stopped run's warning tells the user to run to go on: ``--resume RUN``, or, for a fold (or a fold's
no-faces twin) that ``downpour crossfit`` trains, that cross-fit's own command, which resumes every fold.

    with crossfit_fold(out):          # downpour.crossfit, around each fold it trains
        train_kept(cfg, out / "fold-0")
    log.warning("stopped after step %d; checkpoint saved, continue with %s", step, go_on(run.path))

Every runner's stop warning says it through :func:`go_on` (the local loop, the parameter server's recorder and
its lost-shards error, Sandblaster), so that a cross-fit stopped with ``--jobs 1`` names its own command, which
resumes every fold, not the fold's "continue with --resume OUT/fold-I", which finishes that fold alone.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from downpour._names import pasted

_crossfit: ContextVar[Path | None] = ContextVar("downpour_crossfit", default=None)   # the cross-fit's --out


@contextmanager
def crossfit_fold(out: Path) -> Iterator[None]:
    """Within the block, the runs trained are folds of the cross-fit written to ``out``."""
    token = _crossfit.set(Path(out))
    try:
        yield
    finally:
        _crossfit.reset(token)


def go_on(path: str | Path) -> str:
    """The command that goes on with the stopped run in ``path``: ``--resume PATH`` (as the shell reads it), or,
    inside :func:`crossfit_fold`, ``the same `downpour crossfit --out OUT` command``."""
    out = _crossfit.get()
    if out is None:
        return f"--resume {pasted(path)}"
    return f"the same `downpour crossfit --out {pasted(out)}` command (it resumes every fold)"
