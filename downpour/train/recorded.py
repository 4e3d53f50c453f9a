"""What a run's files mean when they lack a key: a run written before the key existed.

A run folder's config.toml and model.json write every key out, so a key missing from them was added
after the run. Where that key's default is not what the code did before it existed (the cat network's
``filter_norm`` and ``recon``, 2026-11-29: filters were free and the whole image was reconstructed),
reading the default would build a different network from the same weights, silently. A config class
says what absence meant in ``absent_meant`` (:class:`~downpour.settings.Section`); everything that reads
a run fills those keys first, so an old run analyses and resumes as the network it trained, and a resume
writes them out.

The other way round, a model option a run saved that a check added after the run refuses as read by nothing (with
the run's other options nothing reads it: the run trained bit for bit as without it) is dropped, and said:
the run still resumes and analyses (:func:`without_unread`).
"""
from __future__ import annotations

import logging
import tomllib
from pathlib import Path
from typing import Any

from downpour.config import SECTIONS, ConfigError, ModelSpec
from downpour.errors import UnreadOption

log = logging.getLogger(__name__)

_told: set[tuple[Path, str]] = set()     # one line per run and file, not one per read


def config_fills(path: Path) -> list[tuple[str, Any]]:
    """``(section.key, value)`` for every key the run's config.toml at ``path`` lacks whose absence meant
    something other than today's default; [] for a file that cannot be read (its reader names it)."""
    try:
        table = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return []
    model = table.get("model", {}) if isinstance(table.get("model"), dict) else {}
    tables = [("model", _family_config(model.get("name", ModelSpec.name)), model),
              *((key, cls, table.get(key)) for key, cls in SECTIONS.items())]
    fills = [(f"{section}.{key}", value) for section, cls, recorded in tables if cls is not None
             for key, value in cls.absent_meant.items() if key not in (recorded if isinstance(recorded, dict) else {})]
    _tell(path, [key for key, _ in fills], fills)
    return fills


def has_key(path: Path, section: str, key: str) -> bool:
    """Whether the config.toml at ``path`` holds ``section.key`` (False for a file that cannot be read: its reader
    names it)."""
    try:
        table = tomllib.loads(path.read_text()).get(section)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    return isinstance(table, dict) and key in table


def model_fills(path: Path, name: str, options: dict[str, Any]) -> dict[str, Any]:
    """The model options model.json at ``path`` (model ``name``) lacks whose absence meant something other
    than today's default."""
    cls = _family_config(name)
    fills = {key: value for key, value in (cls.absent_meant if cls else {}).items() if key not in options}
    _tell(path, [f"model.{key}" for key in fills], list(fills.items()))
    return fills


def _family_config(name: Any) -> Any:
    """The config class of model ``name``'s family; None for a name not in the registry (its reader names it)."""
    from downpour.models.registry import model_entry   # the registry imports every family: only when needed

    try:
        return model_entry(name).family.config_class if isinstance(name, str) else None
    except ConfigError:   # an unknown name: raised again, with its key, by whoever builds the model
        return None


def _tell(path: Path, keys: list[str], fills: list[tuple[str, Any]]) -> None:
    if fills and (path, ",".join(keys)) not in _told:
        _told.add((path, ",".join(keys)))
        log.info("%s was written before %s existed: read as %s, as that run trained", path, ", ".join(keys),
                 ", ".join(f"{key.split('.')[-1]} = {value!r}" for key, value in fills))


def without_unread(path: Path, name: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` of model ``name`` that the run file at ``path`` saved, less the ones the model refuses as
    read by nothing (``Section.refuse_unread``, added after the run: ``model.init_scale`` under a Gabor first layer
    and a tied decoder, 2026-12-03), each said once. Any other error is left to whoever builds the model."""
    from downpour.models.registry import check_options   # the registry imports every family: only when needed

    options = dict(options)
    while True:
        try:
            check_options(name, options)
            return options
        except UnreadOption as err:
            key = (err.key or "").split(".", 1)[-1]
            if key not in options:
                raise
            options.pop(key)
            if (path, key) not in _told:
                _told.add((path, key))
                log.warning("%s: %s; read as its default (the run trained as without it)", path, err)
        except ConfigError:
            return options


def unread_resets(path: Path, name: str, options: dict[str, Any]) -> list[tuple[str, Any]]:
    """``(model.KEY, default)`` for each option the run file at ``path`` saved that :func:`without_unread` drops:
    overrides put before the user's, so an option typed with ``--set`` is still checked (and refused) as typed."""
    from downpour.models.registry import model_entry

    kept = without_unread(path, name, options)
    try:
        fields = type(model_entry(name).config).__dataclass_fields__
    except ConfigError:
        return []
    return [(f"model.{key}", fields[key].default) for key in options if key not in kept and key in fields]
