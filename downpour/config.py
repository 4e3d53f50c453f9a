"""Typed run configuration: dataclass sections, TOML presets shipped in the package, ``--set`` overrides.

    cfg = load_config("cat-demo", ["train.steps=200", "data.size=32"])
    save_config(cfg, run_dir / "config.toml")   # fully resolved, so the run reproduces from it

Presets list only what they change (``base = "other-preset"`` inherits another). Unknown sections or
keys, and values of the wrong type, are errors that name the key and the nearest valid one.
"""
from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, get_type_hints

import tomli_w

from downpour._names import nearest
from downpour.errors import DownpourError


class ConfigError(DownpourError, ValueError):
    """A config file, preset or override is wrong; the message names the key or value."""


@dataclass
class DataConfig:
    source: str = "natural"        # natural | faces | natural+faces | digits | folder | video | array
    path: str = ""                 # the folder, video file/folder or .npy/.npz for those sources
    size: int = 8                  # side of the square patches / crops, pixels
    mode: str = "patches"          # patches: random patches; crops: whole images resized to size×size
    samples: int = 10000           # patches drawn (patches mode)
    grey: bool = True              # convert colour images to one channel
    normalize: str = "none"        # none | patch (zero mean, unit std per patch) | ufldl (zero mean, 3σ clip, into [0.1, 0.9])
    whiten: str = "none"           # none | zca | spectral (divide by the set's mean power spectrum: crops and whole images)
    zca_eps: float = 0.01          # ZCA regulariser, relative to the largest eigenvalue
    spectral_strength: float = 1.0 # spectral: multiply by P^(-strength/2); 1 = fully white, < 1 keeps some of the 1/f slope
    shift: int = 0                 # augmentation: random shift, ± pixels
    scale: float = 0.0             # augmentation: random zoom, ± fraction
    flip: bool = False             # augmentation: random horizontal flips
    frames_per_video: int = 3      # video sources: frames sampled per file, like the paper's one per video
    labels: bool = False           # folder sources: class labels from sub-folder names
    tile: int = 0                  # crops mode: cut images into tile×tile squares first; 0 = one centred square per image (built-in photos: 2·size tiles)
    faces_fraction: float = 0.3    # natural+faces: share of the samples taken from the faces source (lfw train part)


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 64
    optimizer: str = "adagrad"     # sgd | adagrad | adam (local runner; the server's rule is cluster.rule)
    lr: float = 0.05
    momentum: float = 0.0          # sgd only
    schedule: str = "joint"        # joint: every stage at once | greedy: stage 1 first, then 2, ... (steps split evenly)
    log_every: int = 10
    checkpoint_every: int = 0      # steps; 0 = only at the end
    tensorboard: bool = True
    device: str = "cpu"            # cpu | cuda | auto (the local runner; cluster workers compute on CPU)
    threads: int = 0               # torch intra-op threads; 0 = torch's default


@dataclass
class ClusterConfig:
    runner: str = "local"          # local | simulated | ray
    address: str = ""              # ray: an existing cluster's address; empty starts a local Ray
    workers: int = 2
    shards: int = 2
    consistency: str = "async"     # async | bounded:K | sync
    rule: str = "adagrad"          # the server's update rule: sgd | adagrad | adam
    compensation: str = "none"     # none | staleness-lr | dc-asgd
    dc_lambda: float = 0.04        # DC-ASGD's λ
    n_fetch: int = 1               # a worker fetches parameters every n_fetch steps
    n_push: int = 1                # and pushes its accumulated gradient every n_push steps
    delay: str = "constant:1"      # simulated: time a push travels, in steps: constant:T | uniform:A:B | exponential:MEAN | straggler:T:FACTOR
    warm_start: int = 0            # steps worker 0 trains alone before the others join
    checkpoint_every: int = 0      # server updates (pushes) between server checkpoints; 0 = only at the end
    restarts: int = 0              # ray: how many lost workers are restarted (fresh actor, same data shard); 0 = go on without them


@dataclass
class AnalysisConfig:
    report: bool = False           # analyse and write report.html when training ends
    layer: str = ""                # layer whose units are scored; empty = the model's top layer
    dataset: str = "lfw"           # labelled set for the best single neuron: lfw | digits | a folder of class sub-folders
    positive: int = 1              # the concept's label in that set (lfw: 1 = face)
    test_fraction: float = 0.5     # share of the labelled set held back to score the chosen unit
    splits: int = 50               # seeded selection/test splits averaged in the summaries (the first table shows split 0)
    bootstrap: int = 2000          # bootstrap replicates for the face test's AUC intervals (face_neuron.controls)
    random_filters: int = 2000     # random linear filters in that baseline
    poses: str = ""                # out-of-plane rotation: a folder with one sub-folder per angle in degrees (0 = frontal), the same objects in each
    top_k: int = 9                 # top activating images shown beside the optimal stimulus
    stimulus_steps: int = 300      # projected gradient ascent steps
    stimulus_restarts: int = 4     # random starts; the best one is kept
    probes: list[str] = field(default_factory=lambda: ["lfw", "digits"])  # labelled sets for linear probes
    probe_layers: list[str] = field(default_factory=list)  # layers probed; empty = each stage's output (and the analysed layer)
    probe_folds: int = 5           # cross-validation folds
    probe_samples: int = 1000      # at most this many images per probe set (seeded subset)


@dataclass
class ModelSpec:
    name: str = "cat-demo"                                  # a registered model (``downpour models``)
    options: dict[str, Any] = field(default_factory=dict)   # overrides of that model's config fields


@dataclass
class RunConfig:
    seed: int = 0
    model: ModelSpec = field(default_factory=ModelSpec)
    objective: dict[str, Any] = field(default_factory=dict)  # cost term -> weight or table; merged over the model's default
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)


SECTIONS = {"data": DataConfig, "train": TrainConfig, "cluster": ClusterConfig, "analysis": AnalysisConfig}
PRESET_PACKAGE = "downpour.presets"


def list_presets() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files(PRESET_PACKAGE).iterdir() if p.name.endswith(".toml"))


def _read_toml(name_or_path: str) -> tuple[dict[str, Any], str]:
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        text, where = path.read_text(), str(path)
    else:
        preset = resources.files(PRESET_PACKAGE) / f"{name_or_path}.toml"
        if not preset.is_file():
            raise ConfigError(f"no preset or file named {name_or_path!r}{nearest(name_or_path, list_presets())}; presets: {', '.join(list_presets())}")
        text, where = preset.read_text(), f"preset {name_or_path!r}"
    try:
        return tomllib.loads(text), where
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{where}: invalid TOML: {err}") from None


def _coerce(value: Any, hint: Any, key: str) -> Any:
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and (type(value) is not hint):
        raise ConfigError(f"{key} must be {hint.__name__}, got {value!r} ({type(value).__name__})")
    return value


def _apply(cfg: RunConfig, table: dict[str, Any], where: str) -> None:
    """Merge a parsed TOML table into ``cfg`` in place, checking every key and type."""
    for key, value in table.items():
        if key == "base":
            continue
        if key == "seed":
            cfg.seed = _coerce(value, int, "seed")
        elif key == "model":
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: [model] must be a table")
            opts = dict(value)
            if "name" in opts:
                cfg.model.name = _coerce(opts.pop("name"), str, "model.name")
            cfg.model.options.update(opts)
        elif key == "objective":
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: [objective] must be a table")
            cfg.objective.update(value)
        elif key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: [{key}] must be a table")
            section = getattr(cfg, key)
            hints = get_type_hints(type(section))
            for k, v in value.items():
                if k not in hints:
                    raise ConfigError(f"{where}: unknown key '{key}.{k}'{nearest(k, hints)}")
                setattr(section, k, _coerce(v, hints[k], f"{key}.{k}"))
        else:
            valid = ["seed", "model", "objective", *SECTIONS]
            raise ConfigError(f"{where}: unknown section or key {key!r}{nearest(key, valid)}; valid: {', '.join(valid)}")


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # a bare word is a string: data.source=faces
    return key.strip().split("."), value


def load_config(name_or_path: str = "main", overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """A preset name or a TOML path, its ``base`` chain, then ``section.key=value`` overrides."""
    chain: list[tuple[dict[str, Any], str]] = []
    seen = set()
    current: str | None = name_or_path
    while current is not None:
        if current in seen:
            raise ConfigError(f"presets inherit in a circle through {current!r}")
        seen.add(current)
        table, where = _read_toml(current)
        chain.append((table, where))
        current = table.get("base")
    cfg = RunConfig()
    for table, where in reversed(chain):
        _apply(cfg, table, where)
    for text in overrides:
        path, value = parse_override(text)
        nested: dict[str, Any] = {path[-1]: value}
        for part in reversed(path[:-1]):
            nested = {part: nested}
        _apply(cfg, nested, f"--set {text}")
    return cfg


def config_to_dict(cfg: RunConfig) -> dict[str, Any]:
    out = dataclasses.asdict(cfg)
    model = out.pop("model")
    out["model"] = {"name": model["name"], **model["options"]}
    return out


def config_from_dict(table: dict[str, Any]) -> RunConfig:
    cfg = RunConfig()
    _apply(cfg, table, "config")
    return cfg


def save_config(cfg: RunConfig, path: str | Path) -> None:
    Path(path).write_text(config_to_toml(cfg))


def config_to_toml(cfg: RunConfig) -> str:
    """The fully resolved config as the TOML a run directory holds."""
    return tomli_w.dumps(_drop_none(config_to_dict(cfg)))


def _drop_none(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _drop_none(v) for k, v in d.items() if v is not None}
    if isinstance(d, (list, tuple)):
        return [_drop_none(v) for v in d]
    return d
