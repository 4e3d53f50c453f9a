"""The run config's sections: frozen dataclasses whose fields declare their valid values beside them
(``setting(..., choices=...)``, ``within="[1, inf)"``, spec ``forms``); each section checks every field once
when it is built, whichever way it is built."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from downpour.errors import ConfigError
from downpour.settings import Section, Spec, parse_spec, setting

_TIME = ("T", float, "[0, inf)")
DELAY_FORMS = {"constant": (_TIME,), "uniform": (("A", float, "[0, inf)"), ("B", float, "[0, inf)")),
               "exponential": (("MEAN", float, "[0, inf)"),), "straggler": (_TIME, ("FACTOR", float, "[0, inf)"))}
CONSISTENCY_FORMS = {"async": (), "bounded": (("K", int, "[0, inf)"),), "sync": ()}
AT_LEAST_1, AT_LEAST_0 = "[1, inf)", "[0, inf)"
# Which rule decides a folder's JPEG decode reductions under data.jpeg_draft (downpour.data.patches.decode_reduction):
# 1, the centred square alone decoded reduced, a tile grid in full (2026-12-04 15:25, commit 6bf7f1f, to 17:05); 2, tile
# grids reduced too (from 17:05, commit 7318aac). A run keeps the rule it began with (config.toml's data.jpeg_decode;
# a config.toml written before 2026-12-05 lacks it); raise it with any change to the rule, and keep the old ones
# decodable.
JPEG_DECODE = 2
# Rule 2 reduces a tile only where its reduced side stays this many times the crop's: the resize after it then still
# averages 4+ reduced pixels per output pixel. Measured against a full decode's tiles (bench/jpeg_draft.py --tile 256 /
# 512 [--margin M, which sets it here], 3000x2000 and 4032x3024 photos at 32 px): 4x max 0.0036-0.0040 grey,
# 0.0094-0.0124 RGB, inside the 0.014 the whole-image path documents at 200 px RGB; 2x 0.0132-0.0145 RGB; 1x (no resize
# left) 0.023-0.025 RGB, as much as changing the resize filter. docs/benchmarks.md.
TILE_MARGIN = 4
LFW_HELDOUT_FORMS = {"fixed": (), "fold": (("I", int, "[0, inf)"), ("K", int, "[2, 100]"))}
CROSSFIT_CONTROLS = ("none", "no-faces")   # downpour crossfit --control: beside each fold, none or the recipe without lfw's faces
FACE_SOURCES = ("faces", "natural+faces")     # the data sources that hold lfw's training faces
FILE_SOURCES = ("folder", "video", "array")   # the data sources that read data.path (and can stream)
# The cluster.runner choices that run cluster.algorithm's entry of downpour.runners.ALGORITHMS on workers and shards;
# every other choice trains in this process, its own entry of downpour.runners.RUNNERS, and reads no [cluster] key
# but the runner. The one place a runner's kind is decided (is_cluster_runner), so that a new in-process runner is
# no cluster: a check reading "not 'local'" as a cluster would have it take `--workers 3` and the cluster checks.
CLUSTER_RUNNERS = ("simulated", "ray")


def is_cluster_runner(runner: str) -> bool:
    """Whether ``cluster.runner`` = ``runner`` runs a cluster (workers and shards, :data:`CLUSTER_RUNNERS`) rather than
    one process (local, or a new runner of :data:`downpour.runners.RUNNERS`)."""
    return runner in CLUSTER_RUNNERS


@dataclass(frozen=True)
class DataConfig(Section):
    section: ClassVar[str] = "data"
    # what a config.toml written before 2026-12-04 meant by leaving them out: a stream before blocks (each item's
    # samples in a row), and every JPEG decoded in full
    absent_meant: ClassVar[dict[str, Any]] = {"mix_items": 1, "jpeg_draft": False}
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
    # folder, crops mode: JPEGs decode at 1/2, 1/4 or 1/8 scale where the crop still only shrinks (and data.tile lays
    # no grid on native pixels): 0.22x the decode + crop time of a camera photo at 32 px, crops within 0.0022 of a full
    # decode's (bench/jpeg_draft.py); false: every JPEG decoded in full
    jpeg_draft: bool = True
    # folder crops under jpeg_draft: the rule that decides each JPEG's reduction, kept from the run's start (JPEG_DECODE;
    # docs/data.md); 0: unknown (a tiled run whose records predate it), refused where the rules differ and for a new run (preflight)
    jpeg_decode: int = setting(JPEG_DECODE, within="[0, 2]")
    faces_fraction: float = setting(0.3, within="[0, 1]")     # natural+faces: share of the samples taken from the faces source (lfw train part)
    # faces / natural+faces: how many of the lfw training part's faces are trained on (the first N; its non-faces all
    # stay); -1 = every one, 0 = none, so the network never sees a face (the control a face unit needs; docs/analysis.md)
    train_faces: int = setting(-1, within="[-1, inf)")
    # memory: decode everything once into one tensor | stream: each worker decodes its own files as it trains
    # (folder, video, .npy) | auto: stream when the decoded images would pass 1 GiB (docs/data.md)
    pipeline: str = setting("auto", choices=("auto", "memory", "stream"))
    prefetch: int = setting(256, within=AT_LEAST_1)           # stream: items a worker decodes ahead, at most (beside one mix_items block)
    loader_workers: int = setting(1, within=AT_LEAST_0)       # stream: DataLoader processes decoding for each worker; 0 = in the worker itself
    fit_sample: int = setting(1000, within=AT_LEAST_1)        # stream: items (seeded) the normalisation / whitening is fitted on
    # stream: consecutive items (of the epoch's order) whose samples are shuffled together before they are cut
    # into batches, so a batch mixes images as the in-memory path's does; 1 = each item's samples in a row
    mix_items: int = setting(64, within=AT_LEAST_1)
    split: str = setting("iid", choices=("iid", "by-label"))   # rows to workers: iid (shuffled) | by-label (sorted: each shard holds few labels, as in federated training)
    # which lfw_subset images are held out from training and score the face unit: fixed (faces 70-99 and
    # non-faces 170-199) | fold:I:K (every K-th image of each class from I; `downpour crossfit` runs all K)
    lfw_heldout: str = setting("fixed", forms=LFW_HELDOUT_FORMS)
    # digits: the share of the 1,797 digits held out from training (drawn with the run's seed), on which the analysis
    # scores a supervised network's own classifier (analysis.json's classifier); 0 = every digit trains. Read by the
    # digits source alone: the cnn-digits preset sets it, and its --set data.source=... variants train on their own set
    digits_heldout: float = setting(0.0, within="[0, 1)")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.lfw_fold()      # I < K

    def trains_on_lfw(self) -> bool:
        """Whether these data show the network any of lfw's training part (what a cross-fit's folds hold out)."""
        return self.source in FACE_SOURCES and (self.source == "faces" or self.faces_fraction > 0)

    def trains_on_faces(self) -> bool:
        """Whether these data show the network any of lfw's training faces (what a no-faces twin takes away)."""
        return self.trains_on_lfw() and self.train_faces != 0

    def no_faces_setting(self) -> str:
        """The setting that shows the network no lfw face, where :meth:`trains_on_faces` is false: data.train_faces = 0
        (a no-faces twin), data.faces_fraction = 0, or a source without lfw (``data.source = 'natural'``)."""
        if self.trains_on_lfw():
            return "data.train_faces = 0"
        if self.source in FACE_SOURCES:
            return "data.faces_fraction = 0"
        return f"data.source = {self.source!r}"

    def reads_jpeg_draft(self) -> bool:
        """Whether data.jpeg_draft applies: a folder's crops (patches cut native pixels, so decode in full)."""
        return self.source == "folder" and self.mode == "crops"

    def jpeg_shrink(self) -> int:
        """The crop side a folder's JPEGs may be decoded down to (data.jpeg_draft), else 0: decode in full."""
        return self.size if self.reads_jpeg_draft() and self.jpeg_draft else 0

    def decode_rules_differ(self) -> bool:
        """Whether the rules of data.jpeg_decode decode these crops differently: reduced JPEGs in tiles rule 2 can
        reduce (half a tile >= TILE_MARGIN crops; smaller tiles decode in full under both, whole images alike)."""
        return bool(self.jpeg_shrink()) and self.tile // 2 >= TILE_MARGIN * self.size

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
    threads: int = setting(0, within="[0, 4096]")             # torch intra-op threads; 0 = torch's default


@dataclass(frozen=True)
class ClusterConfig(Section):
    section: ClassVar[str] = "cluster"
    runner: str = setting("local", choices=("local", *CLUSTER_RUNNERS))
    # downpour: asynchronous SGD through the parameter server | sandblaster: batch L-BFGS ([sandblaster])
    algorithm: str = setting("downpour", choices=("downpour", "sandblaster"))
    partitions: int = setting(1, within=AT_LEAST_1)           # model parallelism: each replica's locally connected stages split into this many spatial blocks
    address: str = ""              # ray: an existing cluster's address; empty starts a local Ray
    workers: int = setting(2, within=AT_LEAST_1)
    shards: int = setting(2, within=AT_LEAST_1)
    consistency: str = setting("async", forms=CONSISTENCY_FORMS)   # async | bounded:K | sync
    rule: str = setting("adagrad", choices=("sgd", "momentum", "adagrad", "adam"))   # the server's update rule
    # the server's learning rate; 0 = train.lr. A preset tuned for the local optimiser sets it for its cluster runs
    # (the local runner never reads it): stale pushes want another rule or rate than train.optimizer's (docs/parameter-server.md)
    lr: float = setting(0.0, within=AT_LEAST_0)
    momentum: float = setting(0.9, within="[0, 1)")          # the momentum rule's μ (heavy ball on the server)
    # std of Gaussian noise each shard adds to every gradient it applies (seeded per shard and version); 0 = none
    grad_noise: float = setting(0.0, within=AT_LEAST_0)
    # grad_noise is a fraction of each applied gradient's RMS (it fades as gradients do); a greedy push's RMS is over
    # the tensors of the stages it trained (not the whole shard slice's, whose held stages' zeros would shrink it)
    grad_noise_relative: bool = False
    compensation: str = setting("none", choices=("none", "staleness-lr", "dc-asgd"))
    dc_lambda: float = setting(0.04, within=AT_LEAST_0)       # DC-ASGD's λ
    n_fetch: int = setting(1, within=AT_LEAST_1)              # a worker fetches parameters every n_fetch steps
    n_push: int = setting(1, within=AT_LEAST_1)               # and pushes its accumulated gradient every n_push steps
    # simulated: time a push travels, in steps: constant:T | uniform:A:B | exponential:MEAN | straggler:T:FACTOR
    delay: str = setting("constant:1", forms=DELAY_FORMS)
    warm_start: int = setting(0, within=AT_LEAST_0)           # steps worker 0 trains alone before the others join
    checkpoint_every: int = setting(0, within=AT_LEAST_0)     # server updates (pushes) between server checkpoints; 0 = by time only
    checkpoint_seconds: float = setting(30.0, within=AT_LEAST_0)   # wall-clock seconds between server checkpoints (a lost shard or driver loses at most this); 0 = off
    shard_restarts: int = setting(3, within=AT_LEAST_0)       # times the shards are restarted from the last checkpoint after a shard is lost (ray; simulated: faults' ones)
    restarts: int = setting(0, within=AT_LEAST_0)             # lost workers restarted (ray: fresh actor, same data shard; simulated: faults' ones); 0 = go on without them
    # simulated: losses to reproduce, "worker W at N" / "shard S at N" (at the push that brings the run to step N); [] = none
    faults: list[str] = setting(factory=list)
    # ray: a worker holding a cycle that reports nothing this long is lost (its actor killed, restarted as cluster.restarts
    # says); 0 = follow the run: 20x the longest silence seen, 2x the longest first cycle, at least 300 s (600 s for an
    # actor's first cycle; ps/silence.py); the run's start waits the larger of it and 600 s for its actors, then fails
    silent_seconds: float = setting(0.0, within=AT_LEAST_0)
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
    layer: str = ""                # layer whose units are scored; empty = the model's analysis_layer() (its top; the CNN's fc)
    dataset: str = "lfw"           # labelled set for the best single neuron: lfw | digits | a folder of class sub-folders
    positive: int | str = 1        # the concept in that set: its label (lfw: 1 = face) or its class name ("face", a sub-folder's)
    test_fraction: float = setting(0.5, within="(0, 1)")      # share of the labelled set held back to score the chosen unit
    splits: int = setting(50, within=AT_LEAST_1)              # seeded selection/test splits averaged in the summaries (the first table shows split 0)
    bootstrap: int = setting(2000, within=AT_LEAST_1)         # bootstrap replicates for the face test's (or a folder concept's controls') AUC intervals (face_neuron.controls)
    face_select: str = setting("train", choices=("train", "heldout"))   # face test: choose each method on lfw's 140 training images (test on all 60 held out) | per held-out split
    face_choice: str = setting("nonfaces", choices=("nonfaces", "localizer"))   # face test: choose each method on faces vs non-faces | by its worst AUC against the non-faces and the choosing faces' controls (a localizer)
    control_draws: int = setting(5, within=AT_LEAST_1)        # face test, folder concept: images drawn per held-out face (concept image) for each random control (phase, blocks, crops)
    # a folder's concept: the controls built from its held-out images (phase_scrambled, block_shuffled, spectrum_matched_crops;
    # upside_down only when asked: it tests an upright orientation, which a texture or a symmetric shape has not); [] = none
    concept_controls: list[str] = setting(factory=lambda: ["phase_scrambled", "block_shuffled", "spectrum_matched_crops"])
    random_filters: int = setting(2000, within=AT_LEAST_1)    # random linear filters in that baseline
    # what the invariance warps put where they uncover area outside the image: each image's mean | its edges repeated
    # (under border a shifted face stays a face-like smear: 47 of the mechanisms study's 48 translation ranges ran to
    # the sweep's end with it, hence mean by default)
    invariance_fill: str = setting("mean", choices=("mean", "border"))
    poses: str = ""                # out-of-plane rotation: a folder with one sub-folder per angle in degrees (0 = frontal), the same objects in each
    no_faces_run: str = ""         # face test: a run of the same recipe, seed and split with data.train_faces = 0, scored as "the no-faces network"
    no_faces_twin: bool = False    # face test: that run is this run's twin, which downpour train trains after it into RUN/no-faces
    # top activating images shown beside the optimal stimulus: at most 36, the 6 x 6 that fit the report's width at
    # 1.2 in each (figures.stimulus_and_top_images; more would shrink the figure to fit: 100 make a 14.4 in one)
    top_k: int = setting(9, within="[1, 36]")
    stimulus_steps: int = setting(300, within=AT_LEAST_1)     # projected gradient ascent steps
    stimulus_restarts: int = setting(4, within=AT_LEAST_1)    # random starts; the best one is kept
    probes: list[str] = setting(factory=lambda: ["lfw", "digits"])   # labelled sets for linear probes
    probe_layers: list[str] = setting(factory=list)           # layers probed; empty = each stage's output (and the analysed layer)
    probe_folds: int = setting(5, within="[2, inf)")          # cross-validation folds
    probe_samples: int = setting(1000, within=AT_LEAST_1)     # at most this many images per probe set (seeded subset)

    FACE_TEST: ClassVar[tuple[str, ...]] = ("face_select", "face_choice", "no_faces_run", "no_faces_twin")
    CONTROLS: ClassVar[tuple[str, ...]] = ("bootstrap", "control_draws")    # read by the face test and a folder concept's controls
    PROBE: ClassVar[tuple[str, ...]] = ("probe_layers", "probe_folds", "probe_samples")   # read only where probes is not []

    def runs_face_test(self) -> bool:   # (and reads FACE_TEST) it is about lfw's faces: another set or concept gets none
        return self.dataset == "lfw" and self.positive in (1, "face")

    def runs_concept_controls(self) -> bool:   # a labelled folder's concept (not lfw, not digits), with controls asked for
        return self.dataset not in ("lfw", "digits") and bool(self.concept_controls)

    def runs_controls(self) -> bool:   # (and reads CONTROLS)
        return self.runs_face_test() or self.runs_concept_controls()

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.no_faces_run and self.no_faces_twin:     # each names the face test's no-faces network
            raise ConfigError(f"analysis.no_faces_run = {self.no_faces_run!r} and analysis.no_faces_twin = true both "
                              "name a no-faces network: set one", key="analysis.no_faces_run")
        if isinstance(self.positive, bool) or not isinstance(self.positive, (int, str)):   # (a bool is an int to Python)
            raise ConfigError(f"analysis.positive must be a class's number or name, got {self.positive!r} "
                              f"({type(self.positive).__name__})", key="analysis.positive")
        kinds = ("phase_scrambled", "upside_down", "block_shuffled", "spectrum_matched_crops")   # (negatives.CONTROLS)
        wrong = [k for k in self.concept_controls if k not in kinds]
        if wrong or len(set(self.concept_controls)) < len(self.concept_controls):
            raise ConfigError(f"analysis.concept_controls = {list(self.concept_controls)}: "
                              + (f"{wrong[0]!r} is not a control; " if wrong else "a control is named twice; ")
                              + f"choose among {', '.join(kinds)}", key="analysis.concept_controls")


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

    def server_lr(self) -> float:
        """The learning rate of the server's update rule: ``cluster.lr`` where set, else ``train.lr``."""
        return self.cluster.lr or self.train.lr

    def trains_twin(self) -> bool:
        """Whether ``downpour train`` trains this run's no-faces twin: ``analysis.no_faces_twin``, lfw faces to leave
        out and a face test to score it (``twins.twin_config`` turns a preset's twin off otherwise)."""
        return self.analysis.no_faces_twin and self.data.trains_on_faces() and self.analysis.runs_face_test()


SECTIONS = {"data": DataConfig, "train": TrainConfig, "cluster": ClusterConfig, "sandblaster": SandblasterConfig,
            "analysis": AnalysisConfig}
