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
import logging
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import tomli_w

from downpour._names import nearest
from downpour.config_files import base_of, list_presets, read_toml
from downpour.errors import ConfigError
from downpour.settings import Section, Spec, parse_spec, setting

log = logging.getLogger(__name__)

__all__ = ["ConfigError", "Override", "RunConfig", "DataConfig", "TrainConfig", "ClusterConfig", "SandblasterConfig", "AnalysisConfig",
           "ModelSpec", "load_config", "merge_term", "origin_of", "save_config", "config_to_dict", "config_from_dict", "config_to_toml", "list_presets", "parse_override"]

_TIME = ("T", float, "[0, inf)")
DELAY_FORMS = {"constant": (_TIME,), "uniform": (("A", float, "[0, inf)"), ("B", float, "[0, inf)")),
               "exponential": (("MEAN", float, "[0, inf)"),), "straggler": (_TIME, ("FACTOR", float, "[0, inf)"))}
CONSISTENCY_FORMS = {"async": (), "bounded": (("K", int, "[0, inf)"),), "sync": ()}
AT_LEAST_1, AT_LEAST_0 = "[1, inf)", "[0, inf)"
LFW_HELDOUT_FORMS = {"fixed": (), "fold": (("I", int, "[0, inf)"), ("K", int, "[2, 100]"))}
CROSSFIT_CONTROLS = ("none", "no-faces")   # downpour crossfit --control: beside each fold, none or the recipe without lfw's faces
FACE_SOURCES = ("faces", "natural+faces")     # the data sources that hold lfw's training faces
FILE_SOURCES = ("folder", "video", "array")   # the data sources that read data.path (and can stream)


@dataclass(frozen=True)
class DataConfig(Section):
    section: ClassVar[str] = "data"
    # gaussian: N(0, I) vectors of dimension `size` as (1, 1, size) samples, labelled by their largest coordinate
    source: str = setting("natural", choices=("natural", "faces", "natural+faces", "digits", "folder", "video", "array", "gaussian"))
    path: str = ""                 # the folder, video file/folder or .npy/.npz for those sources
    size: int = setting(8, within=AT_LEAST_1)                 # side of the square patches / crops, pixels (gaussian: the dimension)
    mode: str = setting("patches", choices=("patches", "crops"))   # patches: random patches; crops: whole images resized to size×size
    samples: int = setting(10000, within=AT_LEAST_1)          # patches drawn (patches mode)
    grey: bool = True              # convert colour images to one channel
    normalize: str = setting("none", choices=("none", "patch", "ufldl"))   # patch: zero mean, unit std per patch; ufldl: zero mean, 3σ clip, into [0.1, 0.9]
    whiten: str = setting("none", choices=("none", "zca", "spectral"))   # zca; spectral: divide by the set's mean power spectrum (crops and whole images)
    zca_eps: float = setting(0.01, within="(0, inf)")         # ZCA regulariser, relative to the largest eigenvalue
    spectral_strength: float = setting(1.0, within="(0, 1]")  # spectral: multiply by P^(-strength/2); 1 = fully white, < 1 keeps some of the 1/f slope
    shift: int = setting(0, within=AT_LEAST_0)                # augmentation: random shift, ± pixels
    scale: float = setting(0.0, within="[0, 1)")              # augmentation: random zoom, ± fraction
    flip: bool = False             # augmentation: random horizontal flips
    frames_per_video: int = setting(3, within=AT_LEAST_1)     # video sources: frames sampled per file, like the paper's one per video
    labels: bool = False           # folder sources: class labels from sub-folder names
    tile: int = setting(0, within=AT_LEAST_0)  # crops mode: cut images into tile×tile squares first; 0 = one centred square per image (built-in photos: 2·size tiles)
    faces_fraction: float = setting(0.3, within="[0, 1]")     # natural+faces: share of the samples taken from the faces source (lfw train part)
    # faces / natural+faces: how many of the lfw training part's faces are trained on (the first N; its non-faces all
    # stay); -1 = every one, 0 = none, so the network never sees a face (the control a face unit needs; docs/analysis.md)
    train_faces: int = setting(-1, within="[-1, inf)")
    # memory: decode everything once into one tensor | stream: each worker decodes its own files as it trains
    # (folder, video, .npy) | auto: stream when the decoded images would pass 1 GiB (docs/data.md)
    pipeline: str = setting("auto", choices=("auto", "memory", "stream"))
    prefetch: int = setting(256, within=AT_LEAST_1)           # stream: items a worker decodes ahead, at most (what it holds)
    loader_workers: int = setting(1, within=AT_LEAST_0)       # stream: DataLoader processes decoding for each worker; 0 = in the worker itself
    fit_sample: int = setting(1000, within=AT_LEAST_1)        # stream: items (seeded) the normalisation / whitening is fitted on
    split: str = setting("iid", choices=("iid", "by-label"))   # rows to workers: iid (shuffled) | by-label (sorted: each shard holds few labels, as in federated training)
    # which lfw_subset images are held out from training and score the face unit: fixed (faces 70-99 and
    # non-faces 170-199) | fold:I:K (every K-th image of each class from I; `downpour crossfit` runs all K)
    lfw_heldout: str = setting("fixed", forms=LFW_HELDOUT_FORMS)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.lfw_fold()      # I < K

    def trains_on_faces(self) -> bool:
        """Whether these data show the network any of lfw's training faces (what a no-faces twin takes away)."""
        return (self.source in FACE_SOURCES and self.train_faces != 0
                and (self.source == "faces" or self.faces_fraction > 0))

    def can_stream(self) -> bool:
        """Whether data.pipeline may stream these data (files each worker decodes: folder, video, a .npy it memory-maps)."""
        return self.source in FILE_SOURCES and not (self.source == "array" and Path(self.path).suffix != ".npy")

    def lfw_fold(self) -> tuple[int, int] | None:
        """``lfw_heldout`` as (I, K), or None for the fixed split."""
        kind, args = parse_spec(self.lfw_heldout, LFW_HELDOUT_FORMS, "data.lfw_heldout")
        if kind == "fixed":
            return None
        if args[0] >= args[1]:
            raise ConfigError(f"data.lfw_heldout {self.lfw_heldout!r}: fold I must be below K (0..{args[1] - 1})",
                              key="data.lfw_heldout")
        return args[0], args[1]


@dataclass(frozen=True)
class TrainConfig(Section):
    section: ClassVar[str] = "train"
    steps: int = setting(1000, within=AT_LEAST_1)
    batch_size: int = setting(64, within=AT_LEAST_1)
    optimizer: str = setting("adagrad", choices=("sgd", "adagrad", "adam"))   # the local runner's; the server's rule is cluster.rule
    lr: float = setting(0.05, within="(0, inf)")
    momentum: float = setting(0.0, within="[0, 1)")           # sgd only
    schedule: str = setting("joint", choices=("joint", "greedy"))  # joint: every stage at once | greedy: stage 1 first, then 2, ... (steps split evenly)
    log_every: int = setting(10, within=AT_LEAST_1)
    checkpoint_every: int = setting(0, within=AT_LEAST_0)     # steps; 0 = only at the end
    tensorboard: bool = True
    device: str = setting("cpu", choices=("cpu", "cuda", "auto"))   # the local and simulated runners' workers (shards stay on CPU)
    threads: int = setting(0, within=AT_LEAST_0)              # torch intra-op threads; 0 = torch's default


@dataclass(frozen=True)
class ClusterConfig(Section):
    section: ClassVar[str] = "cluster"
    runner: str = setting("local", choices=("local", "simulated", "ray"))
    # downpour: asynchronous SGD through the parameter server | sandblaster: batch L-BFGS ([sandblaster])
    algorithm: str = setting("downpour", choices=("downpour", "sandblaster"))
    partitions: int = setting(1, within=AT_LEAST_1)           # model parallelism: each replica's locally connected stages split into this many spatial blocks
    address: str = ""              # ray: an existing cluster's address; empty starts a local Ray
    workers: int = setting(2, within=AT_LEAST_1)
    shards: int = setting(2, within=AT_LEAST_1)
    consistency: str = setting("async", forms=CONSISTENCY_FORMS)   # async | bounded:K | sync
    rule: str = setting("adagrad", choices=("sgd", "momentum", "adagrad", "adam"))   # the server's update rule
    momentum: float = setting(0.9, within="[0, 1)")          # the momentum rule's μ (heavy ball on the server)
    # std of Gaussian noise each shard adds to every gradient it applies (seeded per shard and version); 0 = none
    grad_noise: float = setting(0.0, within=AT_LEAST_0)
    grad_noise_relative: bool = False   # grad_noise is a fraction of each applied gradient's RMS (it fades as gradients do)
    compensation: str = setting("none", choices=("none", "staleness-lr", "dc-asgd"))
    dc_lambda: float = setting(0.04, within=AT_LEAST_0)       # DC-ASGD's λ
    n_fetch: int = setting(1, within=AT_LEAST_1)              # a worker fetches parameters every n_fetch steps
    n_push: int = setting(1, within=AT_LEAST_1)               # and pushes its accumulated gradient every n_push steps
    # simulated: time a push travels, in steps: constant:T | uniform:A:B | exponential:MEAN | straggler:T:FACTOR
    delay: str = setting("constant:1", forms=DELAY_FORMS)
    warm_start: int = setting(0, within=AT_LEAST_0)           # steps worker 0 trains alone before the others join
    checkpoint_every: int = setting(0, within=AT_LEAST_0)     # server updates (pushes) between server checkpoints; 0 = by time only
    checkpoint_seconds: float = setting(30.0, within=AT_LEAST_0)   # wall-clock seconds between server checkpoints (a lost shard or driver loses at most this); 0 = off
    shard_restarts: int = setting(3, within=AT_LEAST_0)       # ray: times the shards are restarted from the last checkpoint after a shard is lost
    restarts: int = setting(0, within=AT_LEAST_0)             # ray: lost workers restarted (fresh actor, same data shard); 0 = go on without them
    # ray, async: push cycles a worker may have queued at once; 0 = 2 (the next gradient is computed while the last
    # push travels: never idle, staleness ~1.5 with 2 workers); 1 = each cycle waits for its parameters (~1.2)
    queue_depth: int = setting(0, within="[0, 2]")
    worker_gpus: float = setting(1.0, within="(0, inf)")      # ray with train.device = cuda (or auto on a GPU cluster): GPUs each worker actor asks Ray for; 0.5 = two share one

    def spec(self, key: str) -> Spec:
        """``consistency`` or ``delay`` as ``Spec(kind, args)`` (already checked when the section was built)."""
        return parse_spec(getattr(self, key), {"consistency": CONSISTENCY_FORMS, "delay": DELAY_FORMS}[key], f"cluster.{key}")


@dataclass(frozen=True)
class SandblasterConfig(Section):
    """Sandblaster L-BFGS (Dean et al. 2012), ``cluster.algorithm = "sandblaster"``."""
    section: ClassVar[str] = "sandblaster"
    units: int = setting(32, within=AT_LEAST_1)              # work units per batch (many more than workers: load balancing)
    batch: int = setting(0, within=AT_LEAST_0)               # examples per L-BFGS batch; 0 = the whole dataset
    history: int = setting(10, within=AT_LEAST_1)            # L-BFGS memory m (pairs kept by each shard for its slice)
    # once this fraction of a batch's units is done (and none is left to hand out), a late unit gets a backup copy; 1: never
    # (4 workers, 12 units, one 10x slower: 0 to 0.75 give batches 1.36x the even cluster's, 0.8 1.50x, 1 3.33x)
    backup_after: float = setting(0.5, within="[0, 1]")
    precision: str = setting("float32", choices=("float32", "float64"))   # the workers' replicas and the shards' vectors
    line_search: int = setting(10, within=AT_LEAST_1)        # at most this many evaluations per L-BFGS iteration's line search


@dataclass(frozen=True)
class AnalysisConfig(Section):
    section: ClassVar[str] = "analysis"
    report: bool = False           # analyse and write report.html when training ends
    layer: str = ""                # layer whose units are scored; empty = the model's top layer
    dataset: str = "lfw"           # labelled set for the best single neuron: lfw | digits | a folder of class sub-folders
    positive: int = 1              # the concept's label in that set (lfw: 1 = face)
    test_fraction: float = setting(0.5, within="(0, 1)")      # share of the labelled set held back to score the chosen unit
    splits: int = setting(50, within=AT_LEAST_1)              # seeded selection/test splits averaged in the summaries (the first table shows split 0)
    bootstrap: int = setting(2000, within=AT_LEAST_1)         # bootstrap replicates for the face test's AUC intervals (face_neuron.controls)
    face_select: str = setting("train", choices=("train", "heldout"))   # face test: choose each method on lfw's 140 training images (test on all 60 held out) | per held-out split
    face_choice: str = setting("nonfaces", choices=("nonfaces", "localizer"))   # face test: choose each method on faces vs non-faces | by its worst AUC against the non-faces and the choosing faces' controls (a localizer)
    control_draws: int = setting(5, within=AT_LEAST_1)        # face test: images drawn per held-out face for each random control (phase, blocks, crops)
    random_filters: int = setting(2000, within=AT_LEAST_1)    # random linear filters in that baseline
    poses: str = ""                # out-of-plane rotation: a folder with one sub-folder per angle in degrees (0 = frontal), the same objects in each
    no_faces_run: str = ""         # face test: a run of the same recipe, seed and split with data.train_faces = 0, scored as "the no-faces network"
    no_faces_twin: bool = False    # face test: that run is this run's twin, which downpour train trains after it into RUN/no-faces
    top_k: int = setting(9, within=AT_LEAST_1)                # top activating images shown beside the optimal stimulus
    stimulus_steps: int = setting(300, within=AT_LEAST_1)     # projected gradient ascent steps
    stimulus_restarts: int = setting(4, within=AT_LEAST_1)    # random starts; the best one is kept
    probes: list[str] = setting(factory=lambda: ["lfw", "digits"])   # labelled sets for linear probes
    probe_layers: list[str] = setting(factory=list)           # layers probed; empty = each stage's output (and the analysed layer)
    probe_folds: int = setting(5, within="[2, inf)")          # cross-validation folds
    probe_samples: int = setting(1000, within=AT_LEAST_1)     # at most this many images per probe set (seeded subset)

    FACE_TEST: ClassVar[tuple[str, ...]] = ("bootstrap", "face_select", "face_choice", "control_draws", "no_faces_run", "no_faces_twin")

    def runs_face_test(self) -> bool:   # (and reads FACE_TEST) it is about lfw's faces: another set or concept gets none
        return self.dataset == "lfw" and self.positive == 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.no_faces_run and self.no_faces_twin:     # each names the face test's no-faces network
            raise ConfigError(f"analysis.no_faces_run = {self.no_faces_run!r} and analysis.no_faces_twin = true both "
                              "name a no-faces network: set one", key="analysis.no_faces_run")


@dataclass(frozen=True)
class ModelSpec(Section):
    section: ClassVar[str] = "model"
    name: str = "cat-demo"                                  # a registered model (``downpour models``)
    options: dict[str, Any] = field(default_factory=dict)   # overrides of that model's config fields (checked by the registry)


@dataclass(frozen=True)
class RunConfig(Section):
    seed: int = setting(0, within="[0, 4294967295]")   # 32 bits: workers' batch seeds are seed * 1,000,003 + ... (int64)
    model: ModelSpec = field(default_factory=ModelSpec)
    objective: dict[str, Any] = field(default_factory=dict)  # cost term -> weight or table; merged over the model's default
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    sandblaster: SandblasterConfig = field(default_factory=SandblasterConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)


SECTIONS = {"data": DataConfig, "train": TrainConfig, "cluster": ClusterConfig, "sandblaster": SandblasterConfig,
            "analysis": AnalysisConfig}
def _merge(into: dict[str, Any], table: dict[str, Any], where: str, origins: dict[str, str]) -> None:
    """Merge a parsed TOML table into ``into`` (plain nested dicts), naming an unknown section or key,
    and note in ``origins`` where each ``section.key`` was set last. Values are checked when the
    sections are built from the merged table (:func:`_build`), which names the key; ``origins``
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
            raise ConfigError(f"{where}: unknown section or key {key!r}{nearest(key, valid)}; valid: {', '.join(valid)}")


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


Override = str | tuple[str, Any]   # "section.key=value" as typed after --set, or (key, typed value)


def parse_override(item: Override) -> tuple[list[str], Any]:
    """``"train.lr=0.1"`` or ``("train.lr", 0.1)`` -> (["train", "lr"], 0.1)."""
    if isinstance(item, tuple):
        key, value = item
        return key.split("."), value
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like section.key=value")
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


def load_config(name_or_path: str = "main", overrides: list[Override] | tuple[Override, ...] = ()) -> RunConfig:
    """A preset name or a TOML path, its ``base`` chain, then overrides (``"section.key=value"`` strings
    from ``--set``, or ``(key, value)`` pairs already typed, as the CLI's own flags are)."""
    return _build(*_merged(name_or_path, overrides))


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
    origins = _merged(name_or_path, overrides)[1]
    parts = key.split(".")
    for n in range(len(parts), 1, -1):           # objective.pooled_l2.eps: set as a key, or as its term's table
        if ".".join(parts[:n]) in origins:
            return origins[".".join(parts[:n])]
    return None


def _merged(name_or_path: str, overrides: list[Override] | tuple[Override, ...]) -> tuple[dict[str, Any], dict[str, str]]:
    """The preset chain and overrides merged as plain tables, and where each ``section.key`` was set last."""
    chain: list[tuple[dict[str, Any], str]] = []
    seen = set()
    current: str | None = name_or_path
    preset_only = False                  # a bare-name base is a preset, never a file in the working directory
    while current is not None:
        here = str(Path(current).resolve()) if Path(current).is_file() and not preset_only else current   # (a/../a.toml)
        if here in seen:
            raise ConfigError(f"presets inherit in a circle through {current!r}")
        seen.add(here)
        try:
            table, where, file = read_toml(current, preset_only)
        except ConfigError as err:
            if not chain:
                raise
            raise ConfigError(f"{chain[-1][1]}: base {current!r}: {err}") from None
        chain.append((table, where))
        current, preset_only = base_of(table, where, file) or (None, False)
    merged: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for table, where in reversed(chain):
        _merge(merged, table, where, origins)
    chained = dict(merged.get("model", {}))
    typed: set[str] = set()
    for item in overrides:
        path, value = parse_override(item)
        if path[0] == "objective" and len(path) == 3:   # objective.TERM.KEY=v: the term's other keys kept (as by _merge)
            path, value = path[:2], {path[2]: value}
        nested: dict[str, Any] = {path[-1]: value}
        for part in reversed(path[:-1]):
            nested = {part: nested}
        where = f"--set {item}" if isinstance(item, str) else getattr(item, "flag", "the command line")
        typed.add(where)
        _merge(merged, nested, where, origins)
    name = merged.get("model", {}).get("name")
    carried = sorted(key for key in chained if key != "name" and origins.get(f"model.{key}") not in typed)
    if name != chained.get("name", ModelSpec.name) and carried:   # (a key the new model lacks is refused by name)
        log.warning("model.name = %r replaces the model of %s, whose model options %s carry over to it (set them "
                    "too, or start from a config of that model)", name, chain[0][1], ", ".join(carried))
    return merged, origins


def config_to_dict(cfg: RunConfig) -> dict[str, Any]:
    out = dataclasses.asdict(cfg)
    model = out.pop("model")
    out["model"] = {"name": model["name"], **model["options"]}
    return out


def config_from_dict(table: dict[str, Any]) -> RunConfig:
    merged, origins = {}, {}    # type: dict[str, Any], dict[str, str]
    _merge(merged, table, "config", origins)
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
