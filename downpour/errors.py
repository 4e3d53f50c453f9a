"""Errors downpour reports to its user. The CLI prints a :class:`DownpourError` as one line and
lets anything else (a bug) show its traceback.

Ground floor: imports nothing from downpour, so every layer can raise these (and word a stop by SIGTERM,
:class:`Terminated`, alike).
"""
from __future__ import annotations

from typing import Any


def first_line(message: object) -> str:
    """The first line of a message, an error's or one a record keeps (a stop's ``by``, a skipped file's reason), past
    any blank lines before it ("" for none): where a log line or a report's sentence names it (Ray's run to 5-7
    lines, a traceback's more)."""
    return (str(message).strip().splitlines() or [""])[0]


class Terminated(KeyboardInterrupt):
    """SIGTERM (``timeout``, SLURM, ``docker stop``, ``kill``) raised as an interrupt (by
    :func:`downpour.train.signals.sigterm_as_interrupt`), so a run stopped that way checkpoints what it has done
    exactly as on Ctrl-C, instead of dying with nothing saved since its start."""


def stopped_by(err: BaseException) -> str:
    """What stopped a run, as its stop records say (data.json's, cluster.json's on a lost shard, sandblaster.json's
    ``stopped.by``, a cluster's ``shards-lost`` event's ``restart_interrupted``, so that two records of one stop word
    it alike): "terminated (SIGTERM)" for a :class:`Terminated`, else the error's type
    and its whole message ("RunError: sandblaster shard 1 was lost on ...", a worker's error through Ray with its
    traceback's lines: the run directory keeps no log), the type alone without one."""
    if isinstance(err, Terminated):
        return "terminated (SIGTERM)"
    said = str(err).strip()
    return f"{type(err).__name__}: {said}" if said else type(err).__name__


def stopped_entry(step: int | None, steps: int, err: BaseException) -> dict[str, Any]:
    """A stop record's ``stopped`` (data.json's, cluster.json's on a lost shard, sandblaster.json's: what the report's
    stop line reads): at which ``step`` of ``steps``, and by what (:func:`stopped_by`)."""
    return {"step": step, "steps": steps, "by": stopped_by(err)}


class DownpourError(Exception):
    """Base of every error that is the user's to fix (a config, a file, a run directory)."""


class ConfigError(DownpourError, ValueError):
    """A config file, preset or override is wrong; the message names the key or value. ``key``:
    the ``section.key`` it is about, when one is (so the loader can name the file that set it)."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


class UnreadOption(ConfigError):
    """An option set away from its default that nothing reads with the other options as they are
    (``Section.refuse_unread``); a model variant's own value of it is reset instead (``models.registry``)."""


class RunError(DownpourError, RuntimeError):
    """A run stopped for a reason outside its config (every worker lost, ...); what it had done is saved."""


class Diverged(RunError):
    """Every step (every push) of a run had a non-finite cost or gradient: nothing was applied. A study
    counts such a cell as diverged instead of ending (``studies.diverged``); a study's cell raises it too for a run
    whose loss ran away with finite numbers (``studies.trained.trained_run``)."""


class DataError(DownpourError):
    """The data a run reads cannot be used (a file that is not what it should be, a folder without
    images, images too few or too small for the settings); the message names the path or setting."""


class DeadLayer(DataError):
    """An analysed layer none of whose units can be chosen (every response non-finite or the same to every image): most
    often a run that diverged (:func:`downpour.analysis.training.with_its_training` says so)."""


class CheckpointError(DownpourError):
    """A checkpoint or model file is unreadable, incomplete or does not fit; the message names the file."""


class NotARunError(DownpourError):
    """The directory is not a downpour run, or not a finished one: no config.toml, no model yet, or one of
    its files missing or unreadable; the message names the file."""


class ValuesError(ConfigError):
    """A refusal of several keys' values together: ``values`` ({``section.key``: value}) named first, then ``rest``
    ("start 2004 Ray processes ..."). ``names``: how to name some of them instead of ``key=value``; the CLI gives the
    flag or ``--set`` that typed each (``config.merge.with_origin``), as a one-key refusal is prefixed with its."""

    def __init__(self, values: dict[str, object], rest: str, names: dict[str, str] | None = None):
        shown = [(names or {}).get(key) or f"{key}={value}" for key, value in values.items()]
        # (_names.listed's "a, b and c" by hand: errors.py and _names.py are both the ground floor, which imports
        # nothing from downpour (tests/test_imports.py), so neither may import the other; a module beneath them for
        # one line would move the floor every layer counts on)
        both = f"{', '.join(shown[:-1])} and {shown[-1]}" if len(shown) > 1 else shown[0]
        super().__init__(f"{both} {rest}")
        self.values, self.rest, self.names = dict(values), rest, dict(names or {})
