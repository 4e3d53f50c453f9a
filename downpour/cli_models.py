"""``downpour models`` and ``downpour presets``: the model registry listed, or one model's per-layer footprint
(parameters, memory, FLOPs: :mod:`downpour.models.footprint`), and the shipped presets (their flags are defined with
the other commands' in ``cli.build_parser``)."""
from __future__ import annotations

import argparse

from downpour._names import pasted
from downpour.cli_flags import named_by_set
from downpour.config import ConfigError, parse_override, preset_table


# what --footprint takes, as its refusals say it
_FOOTPRINT_TAKES = ("a model NAME (downpour models --footprint cat-demo: its registry defaults) or --config PRESET "
                    "(downpour models --footprint --config main: the model as it trains)")


def cmd_models(args: argparse.Namespace) -> int:
    from downpour.models.registry import list_models

    if args.footprint is not None:
        return _footprint(args)
    if args.set or args.config:
        said = f"--config {pasted(args.config)}" if args.config else f"--set {pasted(args.set[0])}"
        model = "" if args.config else "NAME "
        raise ConfigError(f"{said} needs --footprint: downpour models --footprint {model}{said}")
    entries = list_models()
    width = max(len(e.name) for e in entries)
    family = max(len(e.family.__name__) for e in entries)
    for e in entries:
        shape = "x".join(map(str, e.input_shape))
        print(f"{e.name:<{width}}  {e.family.__name__:<{family}}  {shape:<9} {e.description}")
    return 0


def _footprint(args: argparse.Namespace) -> int:
    """``downpour models --footprint [NAME] [--config PRESET] [--set model.KEY=VALUE ...]``: one model's footprint."""
    from downpour.config import load_config
    from downpour.data.build import sample_shape
    from downpour.models.footprint import footprint_report

    if args.footprint and args.config:
        raise ConfigError(f"--footprint {args.footprint} and --config {args.config}: give one of {_FOOTPRINT_TAKES}")
    if not args.footprint and not args.config:
        raise ConfigError(f"--footprint needs {_FOOTPRINT_TAKES}")
    name, options, shape = args.footprint, {}, None
    if args.config:          # what the preset trains: its model, options and sample shape (`--config main`: tile 2)
        cfg = load_config(args.config)
        name, options, shape = cfg.model.name, dict(cfg.model.options), sample_shape(cfg.data)
    for item in args.set:
        path, value = parse_override(item)
        if len(path) != 2 or path[0] != "model":
            raise ConfigError(f"--set {item}: downpour models --footprint only takes model.KEY=VALUE overrides")
        if path[1] == "name":
            preset = f" or the preset's (--config {args.config}: {name})" if args.config else ""
            raise ConfigError(f"--set {item}: the model is --footprint's NAME{preset} (downpour models --footprint "
                              f"{value})")
        options[path[1]] = value
    try:
        print(footprint_report(name, shape, args.config, **options))
    except ConfigError as err:
        raise named_by_set(err, args.set) from None
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    print(preset_table())
    return 0
