"""Where a config's TOML comes from: the presets shipped in the package, files, and the ``base`` a file or
preset inherits (a preset name, or a path read from the inheriting file's own folder)."""
from __future__ import annotations

import itertools
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from downpour._names import nearest, pasted
from downpour.errors import ConfigError

PRESET_PACKAGE = "downpour.presets"


def list_presets() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files(PRESET_PACKAGE).iterdir() if p.name.endswith(".toml"))


def preset_summary(name: str) -> str:
    """The first sentence of a preset's leading comment (what it is for), as `downpour presets` shows it."""
    lines = (resources.files(PRESET_PACKAGE) / f"{name}.toml").read_text(encoding="utf-8").splitlines()
    words = " ".join(line.lstrip("#").strip() for line in itertools.takewhile(lambda line: line.startswith("#"), lines))
    end = re.search(r"\.(\s+[A-Z`(]|$)", words)       # (not "et al. 2012")
    return words[:end.start() + 1] if end else words


def read_toml(name_or_path: str, preset_only: bool = False, named: str | None = None) -> tuple[dict[str, Any], str, Path | None]:
    """(table, where it came from in words, the file's path or None for a preset). A bare name (no ``.toml``,
    no ``/``) that a preset has is the preset, whatever the working directory holds (a file ``main`` there
    replaced the main job; ``./main`` reads it); any other name a file, and never a folder (named as one);
    ``preset_only``: a preset or nothing (a file's bare-name ``base``). ``named``: how an error names what was
    asked for (``"--config nope"``, as typed; default the name quoted)."""
    path = Path(name_or_path)
    # a file's text and syntax errors name the flag too where one was typed ("--config x.toml: invalid TOML: ...")
    said = named or str(path)
    named = named or repr(name_or_path)
    near = nearest(name_or_path, list_presets())
    preset = resources.files(PRESET_PACKAGE) / f"{name_or_path}.toml"
    is_preset = path.suffix != ".toml" and "/" not in name_or_path and preset.is_file()
    if preset_only and not is_preset:
        raise ConfigError(f"{named}: no such preset or file{near} (a bare-name base is a file in the config's own "
                          f"folder or a preset, never a file in the working directory); presets: {', '.join(list_presets())}")
    if is_preset:
        text, where, file = _text(preset, f"preset {name_or_path!r}"), f"preset {name_or_path!r}", None
    elif path.is_file():
        text, where, file = _text(path, said), str(path), path
    elif path.is_dir():
        # the same for every command that reads --config: `downpour plan` has no --resume, and it said "--resume it"
        hint = (f" (a run folder: its config is --config {pasted(path / 'config.toml')}; `downpour train --resume "
                f"{pasted(path)}` goes on training it)" if (path / "config.toml").is_file() else "")
        raise ConfigError(f"{named}: a folder, not a TOML file or a preset{hint}")
    elif path.suffix == ".toml" or "/" in name_or_path:
        # as given: Path("./main") prints as "main", the preset's name, which does exist
        raise ConfigError(f"{named}: no such file")
    else:
        raise ConfigError(f"{named}: no such preset or file{near}; presets: {', '.join(list_presets())}")
    try:
        return tomllib.loads(text), where, file
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{said if file else where}: invalid TOML: {err}") from None


def _text(path: Path | Any, where: str) -> str:
    """A config file's text; one that is not UTF-8 (as TOML must be) is a ConfigError naming it."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{where}: not UTF-8 text, as TOML must be (byte {err.start}: {err.object[err.start:err.start + 1]!r}); "
                          "save it as UTF-8") from None
    except OSError as err:                       # unreadable: permissions, a device, a disk error
        raise ConfigError(f"{where}: cannot be read ({err.strerror or err})") from None


def base_of(table: dict[str, Any], where: str, file: Path | None) -> tuple[str, bool] | None:
    """The ``base`` a table inherits, and whether it is a preset only: a TOML path is read from the file's
    own folder (a path, ``*.toml`` or with a ``/``, is never looked for in the working directory: the
    same command run from another folder would read another base), and a bare name not there is a
    preset (a file of that name in the working directory is not read)."""
    base = table.get("base")
    if base is None:
        return None
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{where}: base must be a preset name or a TOML path, got {base!r}")
    if file is not None and not Path(base).is_absolute():
        local = file.parent / base
        if local.is_file() or Path(base).suffix == ".toml" or "/" in base:
            # (missing: read_toml names the path it looked for; "./main", not "main", which is the preset)
            return str(local) if "/" in str(local) else f"./{local}", False
    return base, not Path(base).is_absolute() and Path(base).suffix != ".toml" and "/" not in base
