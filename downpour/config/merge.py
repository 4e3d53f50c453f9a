"""Preset chains, config files and overrides merged as plain tables, noting where each key was set last
(for an error to name the file, preset or ``--set`` that set it)."""
from __future__ import annotations

import dataclasses
import json
import logging
import tomllib
from pathlib import Path
from typing import Any

from downpour._names import listed, nearest, pasted
from downpour.config.sections import SECTIONS, ModelSpec
from downpour.config_files import base_of, read_toml
from downpour.errors import ConfigError, ValuesError

log = logging.getLogger(__name__)

Override = str | tuple[str, Any]   # "section.key=value" as typed after --set, or (key, typed value)


class FlagValue(tuple):
    """A typed flag's override, ``(key, value)`` like any other, that also knows how it was typed
    (``flag``, e.g. ``"--steps 0"``): the config loader names a bad value by it, not as "the command line"."""

    flag: str

    def __new__(cls, key: str, value: object, flag: str) -> "FlagValue":
        pair = super().__new__(cls, (key, value))
        pair.flag = flag
        return pair

    def __getnewargs__(self) -> tuple[str, object, str]:   # pickled to a cross-fit's fold processes
        return (*self, self.flag)


def as_typed(overrides: list[Override] | tuple[Override, ...]) -> str:
    """``overrides`` as the flags that typed them, each value shell-quoted (``--steps 6 --set 'model.maps=[4,4]'``):
    what a suggested command repeats of the user's, to paste as it is."""
    return " ".join(_as_typed(item) for item in overrides)


def _as_typed(item: Override) -> str:
    if isinstance(item, FlagValue):
        flag, _, value = item.flag.partition(" ")
        return f"{flag} {pasted(value)}" if value else flag
    if isinstance(item, tuple):       # (a caller's (key, value): its value written as TOML reads a JSON scalar or list)
        return "--set " + pasted(f"{item[0]}={json.dumps(item[1])}")
    return "--set " + pasted(item)


def parse_override(item: Override, example: str | None = None) -> tuple[list[str], Any]:
    """``"train.lr=0.1"`` or ``("train.lr", 0.1)`` -> (["train", "lr"], 0.1). ``example``: what the refusal of a
    string without ``=`` shows, for a command whose ``--set`` takes one section's keys (``analysis.splits=10``)."""
    if isinstance(item, tuple):
        if len(item) != 2:      # (else "not enough values to unpack")
            raise ConfigError(f"override {item!r}: a (key, value) pair has 2 items, not {len(item)}")
        key, value = item
        return key.split("."), value
    if "=" not in item:
        # (named as typed: "override 'model.maps' must look like ..." named neither the flag nor its command)
        hint = f"e.g. {example}" if example else "section.key=value, e.g. train.lr=0.1"
        raise ConfigError(f"--set {item or repr(item)}: expected KEY=VALUE ({hint})")
    key, raw = item.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # a bare word is a string: data.source=faces
    path = key.strip().split(".")
    if len(path) == 1 and path[0] in ("model", "objective", *SECTIONS):   # its keys passed no command-line check
        raise ConfigError(f"--set {item}: set a section's keys one by one (--set {path[0]}.KEY=VALUE), so each is "
                          "checked as the command line checks it")
    return path, value


def merge_term(base: Any, spec: Any) -> Any:
    """A cost term's ``spec`` over its ``base``: a table merges into a table key by key, a plain number into a
    table is the weight (``objective.pooled_l2=0.2`` keeps ``eps``), a table over a plain number keeps it as
    the weight (``kl_sparsity = 0``, then ``.rho=0.1``: not on at its default weight); else ``spec`` replaces it."""
    base = {"weight": base} if isinstance(spec, dict) and type(base) in (int, float) else base   # (not a bool)
    if isinstance(base, dict) and isinstance(spec, (dict, int, float)) and not isinstance(spec, bool):
        return {**base, **(spec if isinstance(spec, dict) else {"weight": spec})}
    return spec


def origin_of(key: str, name_or_path: str = "main", overrides: list[Override] | tuple[Override, ...] = ()) -> str | None:
    """Where ``key`` (``model.hidden``, ``objective.pooled_l2``) was last set among ``name_or_path``'s chain and
    ``overrides`` (a file, a preset, ``--set ...``), or None if nowhere: for an error found after loading
    (the model's and the cost terms' own checks) to name it, as the loader's do."""
    origins = merged_tables(name_or_path, overrides, warn=False)[1]   # (the load before it said what it had to)
    parts = key.split(".")
    for n in range(len(parts), 1, -1):           # objective.pooled_l2.eps: set as a key, or as its term's table
        if ".".join(parts[:n]) in origins:
            return origins[".".join(parts[:n])]
    return None


def with_origin(err: ConfigError, name_or_path: str, overrides: list[Override] | tuple[Override, ...]) -> ConfigError:
    """``err`` (an error of the model's or the cost terms' own checks, found after loading) prefixed with where its
    key was set (:func:`origin_of`), unless that is unknown or already said."""
    if isinstance(err, ValuesError):   # several keys: each named as typed (`--partitions 1000`), where one was
        named = {key: where for key in err.values     # (a flag or a --set; a file's or preset's keeps key=value)
                 if (where := origin_of(key, name_or_path, overrides) or "").startswith("-")}
        return ValuesError(err.values, err.rest, {**err.names, **named})
    where = origin_of(err.key, name_or_path, overrides) if err.key else None
    # (a base-less file: cat-demo on 8x8 data). Only a keyed value set nowhere is a default: a keyless refusal (a
    # resume's too, over its own config.toml) is no default's, and "add base" would not fix it
    if where is None and err.key and (file := defaults_file(name_or_path)):
        return type(err)(f"{err} ({err.key} is a default: {file} has no base = \"PRESET\", so it starts "
                         "from the defaults of downpour/config/sections.py, not from a preset; add e.g. base = "
                         "\"cat-demo\" (`downpour presets` lists them))", key=err.key)
    if where is None or str(err).startswith(where):
        return err
    return type(err)(f"{where}: {err}", key=err.key)


def defaults_file(name_or_path: str) -> str | None:
    """The last file of ``name_or_path``'s chain where no preset is in it (the config then starts from the
    dataclasses' defaults, which pair cat-demo with 8x8 data), else None."""
    current: str | None = name_or_path
    preset_only, seen = False, set()
    while current is not None and current not in seen:
        seen.add(current)
        table, where, file = read_toml(current, preset_only)
        if file is None:
            return None
        current, preset_only = base_of(table, where, file) or (None, False)
        last = str(file)
    return last if current is None else None


def merged_tables(name_or_path: str, overrides: list[Override] | tuple[Override, ...],
                  warn: bool = True) -> tuple[dict[str, Any], dict[str, str]]:
    """The preset chain and overrides merged as plain tables, and where each ``section.key`` was set last
    (``warn``: say when a model's options carry over to another model)."""
    if isinstance(overrides, (str, dict)):   # from Python: a str would be read letter by letter, a dict by its keys
        fix = f"[{overrides!r}]" if isinstance(overrides, str) else "list(overrides.items())"
        raise ConfigError(f"overrides: a list of 'section.key=value' strings or (key, value) pairs, got a "
                          f"{type(overrides).__name__} {overrides!r}: {fix}")
    chain: list[tuple[dict[str, Any], str]] = []
    seen = set()
    current: str | None = name_or_path
    preset_only = False                  # a bare-name base is a preset, never a file in the working directory
    while current is not None:
        here = str(Path(current).resolve()) if Path(current).is_file() and not preset_only else current   # (a/../a.toml)
        if here in seen:
            raise ConfigError(f"presets inherit in a circle through {current!r}")
        seen.add(here)
        named = f"{chain[-1][1]}: base {current!r}" if chain else None
        try:
            table, where, file = read_toml(current, preset_only, named)
        except ConfigError as err:
            if not chain or str(err).startswith(named):
                raise
            raise ConfigError(f"{named}: {err}") from None
        chain.append((table, where))
        current, preset_only = base_of(table, where, file) or (None, False)
    merged: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for table, where in reversed(chain):
        merge_table(merged, table, where, origins)
    chained = dict(merged.get("model", {}))
    typed: set[str] = set()
    for item in overrides:
        path, value = parse_override(item)
        if path[0] == "objective" and len(path) == 3:   # objective.TERM.KEY=v: the term's other keys kept (as by merge_table)
            path, value = path[:2], {path[2]: value}
        nested: dict[str, Any] = {path[-1]: value}
        for part in reversed(path[:-1]):
            nested = {part: nested}
        where = f"--set {item}" if isinstance(item, str) else getattr(item, "flag", "the command line")
        typed.add(where)
        merge_table(merged, nested, where, origins)
    name = merged.get("model", {}).get("name")
    carried = sorted(key for key in chained if key != "name" and origins.get(f"model.{key}") not in typed)
    if warn and name != chained.get("name", ModelSpec.name) and carried:   # (a key the new model lacks is refused by name)
        log.warning("model.name = %r replaces the model of %s, whose model options %s carry over to it (set them "
                    "too, or start from a config of that model)", name, chain[0][1], ", ".join(carried))
    return merged, origins


def merge_table(into: dict[str, Any], table: dict[str, Any], where: str, origins: dict[str, str]) -> None:
    """Merge a parsed TOML table into ``into`` (plain nested dicts), naming an unknown section or key,
    and note in ``origins`` where each ``section.key`` was set last. Values are checked when the
    sections are built from the merged table (``downpour.config._build``), which names the key; ``origins``
    then names the file, preset or override that set it."""
    for key, value in table.items():
        if key == "base":
            if where.startswith("--set") or where == "the command line":
                raise ConfigError(f"{where}: base is read from a config file only (its first line); start from that "
                                  "file or preset with --config instead")
            continue
        if key == "seed":
            into["seed"] = value
            origins["seed"] = where
        elif key in ("model", "objective", *SECTIONS):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: [{key}] must be a table")
            if key in SECTIONS:
                valid = [f.name for f in dataclasses.fields(SECTIONS[key])]
                for k in value:
                    if k not in valid:
                        raise ConfigError(f"{where}: unknown key '{key}.{k}'{nearest(k, valid)}")
            if key == "objective":   # term by term: a child file's `pooled_l2 = {eps = 0.5}` keeps its parent's weight
                terms = into.setdefault(key, {})
                terms.update({term: merge_term(terms.get(term), spec) for term, spec in value.items()})
            else:
                into.setdefault(key, {}).update(value)
            origins.update({f"{key}.{k}": where for k in value})
            if key == "objective":       # and each key of a term's table (a number is the weight), for origin_of
                origins.update({f"objective.{t}.{k}": where for t, spec in value.items()
                                for k in (spec if isinstance(spec, dict) else {"weight": spec})})
        else:
            valid = ["seed", "model", "objective", *SECTIONS]
            # a section's key given bare (`--set steps=3`) is that key, not the nearest section name ('cluster')
            owners = [f"{s}.{key}" for s, cls in SECTIONS.items() if key in {f.name for f in dataclasses.fields(cls)}]
            hint = f" (did you mean {listed(map(repr, owners), 'or')}?)" if owners else nearest(key, valid)
            raise ConfigError(f"{where}: unknown section or key {key!r}{hint}; valid: {', '.join(valid)}")
