"""Typed run configuration: frozen dataclass sections, TOML presets shipped in the package, overrides.

    cfg = load_config("cat-demo", ["train.steps=200", ("data.size", 32)])
    save_config(cfg, run_dir / "config.toml")   # fully resolved, so the run reproduces from it

Presets list only what they change (``base = "other-preset"`` inherits another). Every field declares
its valid values beside it (``setting(..., choices=...)``, ``within="[1, inf)"``, spec ``forms``), and
a section checks them all when it is built, whichever way it is built (preset, file, override,
``dataclasses.replace``): this is the one place a single config value is checked. Unknown sections
or keys, values of the wrong type or out of range are errors that name the key and the nearest
valid one. The sections are frozen: a config is resolved once and passed down unchanged.
"""
from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path
from typing import Any

import tomli_w

from downpour.config.merge import (FlagValue, Override, as_typed, merge_table, merge_term, merged_tables, origin_of,
                                   parse_override, with_origin)
from downpour.config.sections import (CLUSTER_RUNNERS, CONSISTENCY_FORMS, CROSSFIT_CONTROLS, DELAY_FORMS, FACE_SOURCES,
                                      FILE_SOURCES, LFW_HELDOUT_FORMS, SECTIONS, AnalysisConfig, ClusterConfig, DataConfig,
                                      ModelSpec, RunConfig, SandblasterConfig, TrainConfig, is_cluster_runner)
from downpour.config_files import list_presets, preset_summary
from downpour.errors import ConfigError

__all__ = ["ConfigError", "FlagValue", "Override", "as_typed", "RunConfig", "DataConfig", "TrainConfig", "ClusterConfig", "SandblasterConfig", "AnalysisConfig",
           "ModelSpec", "load_config", "merge_term", "origin_of", "with_origin", "save_config", "config_to_dict", "config_from_dict", "config_to_toml",
           "list_presets", "preset_table", "parse_override", "SECTIONS", "CONSISTENCY_FORMS", "CROSSFIT_CONTROLS", "DELAY_FORMS", "FACE_SOURCES",
           "FILE_SOURCES", "LFW_HELDOUT_FORMS", "CLUSTER_RUNNERS", "is_cluster_runner"]


def _build(table: dict[str, Any], origins: dict[str, str]) -> RunConfig:
    """The frozen, checked config of a merged table; an error names where its key was set."""
    model = dict(table.get("model", {}))
    name = model.pop("name", ModelSpec.name)
    try:
        return RunConfig(seed=table.get("seed", 0), model=ModelSpec(name, model), objective=dict(table.get("objective", {})),
                         **{key: cls(**table.get(key, {})) for key, cls in SECTIONS.items()})
    except ConfigError as err:
        if err.key in origins:
            raise ConfigError(f"{origins[err.key]}: {err}", key=err.key) from None
        raise


def load_config(name_or_path: str = "main", overrides: list[Override] | tuple[Override, ...] = ()) -> RunConfig:
    """A preset name or a TOML path, its ``base`` chain, then overrides (``"section.key=value"`` strings
    from ``--set``, or ``(key, value)`` pairs already typed, as the CLI's own flags are)."""
    return _build(*merged_tables(name_or_path, overrides))


def preset_table(width: int = 100) -> str:
    """`downpour presets`: each preset's model, data and runner, and what it is for (its comment's first sentence)."""
    rows = [(name, f"model={cfg.model.name}", f"data={cfg.data.source}", f"runner={cfg.cluster.runner}")
            for name, cfg in ((name, load_config(name)) for name in list_presets())]
    widths = [max(map(len, column)) for column in zip(*rows)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() + "\n"
                     + textwrap.fill(preset_summary(row[0]), width, initial_indent="    ", subsequent_indent="    ")
                     for row in rows)


def config_to_dict(cfg: RunConfig) -> dict[str, Any]:
    out = dataclasses.asdict(cfg)
    model = out.pop("model")
    out["model"] = {"name": model["name"], **model["options"]}
    return out


def config_from_dict(table: dict[str, Any]) -> RunConfig:
    merged, origins = {}, {}    # type: dict[str, Any], dict[str, str]
    merge_table(merged, table, "config", origins)
    return _build(merged, origins)


def save_config(cfg: RunConfig, path: str | Path) -> None:
    Path(path).write_text(config_to_toml(cfg))


def config_to_toml(cfg: RunConfig) -> str:
    """The fully resolved config as the TOML a run directory holds."""
    return tomli_w.dumps(_drop_none(config_to_dict(cfg)))


def _drop_none(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _drop_none(v) for k, v in d.items() if v is not None}
    return [_drop_none(v) for v in d] if isinstance(d, (list, tuple)) else d
