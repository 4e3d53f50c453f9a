"""What ``downpour train``'s command line may set for the run it starts: a flag or ``--set`` the run
never reads would be ignored without a word, so it is refused, naming it. Only what the command
line sets is checked (and Sandblaster's refusal of Downpour's keys checks what a ``--config`` file sets too);
a preset may carry settings for another runner or algorithm.
"""
from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence

from downpour._names import listed
from downpour.config import (CLUSTER_RUNNERS, AnalysisConfig, ClusterConfig, ConfigError, Override, RunConfig, TrainConfig,
                             is_cluster_runner, parse_override)
from downpour.config.merge import merged_tables
from downpour.config_diff import STREAM_KEYS
from downpour.config_files import read_toml

CLUSTER_ONLY = ("workers", "partitions", "shards", "consistency", "n_fetch", "n_push", "compensation", "delay")
ONLY_ON = {"delay": "simulated", "address": "ray"}   # flags that mean something to one runner only
# --set keys only the Ray runner reads (the simulator's workers and shards live in one process, its time is virtual)
RAY_ONLY = ("cluster.restarts", "cluster.checkpoint_seconds", "cluster.worker_gpus", "cluster.queue_depth",
            "cluster.shard_restarts", "cluster.silent_seconds")
# ... but for the simulator's run whose cluster.faults loses such a thing (a shard or a worker)
LOSES = {"cluster.shard_restarts": "shard", "cluster.restarts": "worker"}
# What the cluster runners never read (their workers' update is the server's cluster.rule): set by hand on one, refused
# (train.checkpoint_every on a cluster run: preflight refuses it, set anywhere)
LOCAL_ONLY = {"train.optimizer": "cluster.rule", "train.momentum": "cluster.momentum"}
# --set keys read only when another setting has some value: (that setting, whether this run reads the key, the value,
# and any other setting the condition reads, which the refusal names too: it named only the first, often not the one
# that failed, "and this run's cluster.runner is 'simulated'" for data.split with one worker)
READ_ONLY_WITH = {
    "train.momentum": ("train.optimizer", lambda c: c.train.optimizer == "sgd", "= 'sgd'"),
    # a Downpour cluster run whose cluster.lr is set learns at it on the server; train.lr then moves only a replica
    # between fetches (cluster.n_fetch > 1): else `--set train.lr` on cnn-digits' simulated run would change nothing
    "train.lr": ("cluster.lr", lambda c: not is_cluster_runner(c.cluster.runner) or c.cluster.algorithm != "downpour"
                 or c.cluster.lr == 0 or c.cluster.n_fetch > 1,
                 "= 0 (the server's rate, else train.lr) or cluster.n_fetch > 1 (a replica's steps between fetches)",
                 ("cluster.n_fetch",)),
    "cluster.momentum": ("cluster.rule", lambda c: c.cluster.rule == "momentum", "= 'momentum'"),
    "cluster.dc_lambda": ("cluster.compensation", lambda c: c.cluster.compensation == "dc-asgd", "= 'dc-asgd'"),
    "cluster.grad_noise_relative": ("cluster.grad_noise", lambda c: c.cluster.grad_noise > 0, "> 0"),
    "cluster.queue_depth": ("cluster.consistency", lambda c: c.cluster.consistency == "async", "= 'async'"),   # (else 1)
    # a gated worker (bounded:K, sync) fetches at every push's start: with one step per push that is every step
    "cluster.n_fetch": ("cluster.consistency", lambda c: c.cluster.consistency == "async" or c.cluster.n_push > 1,
                        "= 'async' (or cluster.n_push > 1)", ("cluster.n_push",)),
    "cluster.warm_start": ("cluster.workers", lambda c: c.cluster.workers > 1, "> 1"),
    # Sandblaster never gives a worker a backup of its own unit: one worker has no one to back it up
    "sandblaster.backup_after": ("cluster.workers", lambda c: c.cluster.workers > 1, "> 1"),
    # a folder's class labels feed a supervised model's cost or the by-label split, nothing else
    "data.labels": ("data.split", lambda c: c.data.split == "by-label" or _supervised(c.model.name),
                    "= 'by-label' (or a supervised model.name)", ("model.name",)),
    # which rows go to which worker: one worker (the local runner's, or Sandblaster's whole-set evaluation) has all
    "data.split": ("cluster.runner", lambda c: is_cluster_runner(c.cluster.runner) and c.cluster.workers > 1
                   and c.cluster.algorithm == "downpour", "= 'simulated' or 'ray', with cluster.workers > 1 (Downpour)",
                   ("cluster.workers", "cluster.algorithm")),
    "cluster.worker_gpus": ("train.device", lambda c: c.train.device != "cpu", "= 'cuda' or 'auto'"),
    "data.tile": ("data.mode", lambda c: c.data.mode == "crops", "= 'crops'"),
    "data.jpeg_draft": ("data.mode", lambda c: c.data.reads_jpeg_draft(),
                        "= 'crops' (with data.source = 'folder')", ("data.source",)),
    "data.samples": ("data.mode", lambda c: c.data.mode == "patches" or c.data.source == "gaussian",
                     "= 'patches' (or data.source = 'gaussian')", ("data.source",)),
    "data.faces_fraction": ("data.source", lambda c: c.data.source == "natural+faces", "= 'natural+faces'"),
    # which of lfw's training faces the faces source gives, where natural+faces takes none of its samples: a run with
    # data.train_faces = 10 beside data.faces_fraction = 0 is bit for bit the run without it (cat-demo, 4 steps)
    "data.train_faces": ("data.faces_fraction", lambda c: c.data.source != "natural+faces" or c.data.faces_fraction > 0,
                         "> 0 (where data.source = 'natural+faces')", ("data.source",)),
    "data.frames_per_video": ("data.source", lambda c: c.data.source == "video", "= 'video'"),
    "data.zca_eps": ("data.whiten", lambda c: c.data.whiten == "zca", "= 'zca'"),
    "data.spectral_strength": ("data.whiten", lambda c: c.data.whiten == "spectral", "= 'spectral'"),
    "data.fit_sample": ("data.normalize", lambda c: c.data.normalize != "none" or c.data.whiten != "none",
                        "!= 'none' (or data.whiten != 'none'): it says what they are fitted on", ("data.whiten",)),
    # N(0, I) vectors of dimension data.size: no image to turn grey or cut (to shift, zoom or flip: data.build refuses)
    **{key: ("data.source", lambda c: c.data.source != "gaussian", "!= 'gaussian'") for key in ("data.grey", "data.mode")},
    **{f"analysis.{key}": ("analysis.dataset", lambda c: c.analysis.runs_face_test(), "= 'lfw' (with analysis.positive = 1)",
                           ("analysis.positive",)) for key in AnalysisConfig.FACE_TEST},
    **{f"analysis.{key}": ("analysis.dataset", lambda c: c.analysis.runs_controls(),
                           "= 'lfw' (with analysis.positive = 1) or a folder (with analysis.concept_controls != [])",
                           ("analysis.positive", "analysis.concept_controls")) for key in AnalysisConfig.CONTROLS},
    "analysis.concept_controls": ("analysis.dataset", lambda c: c.analysis.dataset not in ("lfw", "digits"), "= a folder"),
    **{f"analysis.{key}": ("analysis.probes", lambda c: bool(c.analysis.probes), "!= []") for key in AnalysisConfig.PROBE},
}


def _values(cfg: RunConfig, settings: tuple[str, ...]) -> str:
    """"data.whiten is 'none'", or "cluster.runner is 'simulated', cluster.workers is 1 and ...": every setting a
    key's reading depends on, so the refusal names the one that turned it off."""
    said = [f"{key} is {getattr(getattr(cfg, key.split('.')[0]), key.split('.')[1])!r}" for key in settings]
    return listed(said)


def _supervised(model_name: str) -> bool:
    # the model registry (and torch with it) imported only when a run's check needs it: `downpour presets`,
    # `--help` and `study list` import this module and print in a fraction of a second
    from downpour.models.registry import model_entry

    return model_entry(model_name).family.supervised


# What Sandblaster L-BFGS reads of [cluster] (docs/sandblaster.md); the rest is Downpour's, and so is train.lr
SANDBLASTER_READS = ("cluster.runner", "cluster.algorithm", "cluster.workers", "cluster.shards", "cluster.address",
                     "cluster.checkpoint_every", "cluster.delay", "cluster.partitions")
# as a refusal lists them: cluster.partitions is read only to refuse any but 1 (sandblaster/checks.py), so it is
# listed as "partitions (= 1)", not bare, as if Sandblaster split replicas
READS_SAID = ", ".join(k.split(".")[1] + (" (= 1)" if k == "cluster.partitions" else "") for k in SANDBLASTER_READS)
DOWNPOUR_TRAIN = ("train.lr", "train.optimizer", "train.log_every")   # and of [train]: it finds its own step, logs each
# each of them refused, said with its value and what Sandblaster reads in its place, not one generic
# "(and finds its own step by line search, not train.lr or train.optimizer, ...)", naming neither
SANDBLASTER_INSTEAD = {
    "train.lr": lambda cfg: (f"train.lr = {cfg.train.lr:g} is a fixed step size, and Sandblaster finds each iteration's "
                             f"step by a line search: its key is sandblaster.line_search = {cfg.sandblaster.line_search}, "
                             "the most evaluations one search may take"),
    "train.optimizer": lambda cfg: (f"train.optimizer = {cfg.train.optimizer!r} is a replica's update rule, and "
                                    "Sandblaster's is L-BFGS itself: its key is sandblaster.history = "
                                    f"{cfg.sandblaster.history}, the (s, y) pairs it remembers"),
    "train.log_every": lambda cfg: (f"train.log_every = {cfg.train.log_every} spaces Downpour's metrics rows, and "
                                    "Sandblaster writes one every L-BFGS iteration (train.steps counts them)"),
}


# what sets how often each cluster runner saves a checkpoint (a run stopped before its first is trained again); a
# one-process runner's is train.checkpoint_every (:func:`checkpoint_keys` asks is_cluster_runner first, so a runner
# outside this table gets it)
CHECKPOINT_KEYS = {"simulated": "cluster.checkpoint_every sets",
                   "ray": "cluster.checkpoint_every and cluster.checkpoint_seconds set"}
SET_EXAMPLE = {"analyze": "analysis.splits=10", "models": "model.maps=[16,16]"}   # commands that take one section
PATHS = {"config": "--config", "out": "--out", "resume": "--resume", "check_run": "--check-run", "run": "RUN"}


def checkpoint_keys(runner: str) -> str:
    """What sets how often ``runner`` saves a checkpoint, as the words before "how often one is saved"."""
    return CHECKPOINT_KEYS[runner] if is_cluster_runner(runner) else "train.checkpoint_every sets"


def check_as_typed(args: argparse.Namespace) -> None:
    """ConfigError for a path given empty (``--resume "$RUN"`` with RUN unset): read as not given, ``--resume ""``
    would start a new main job, and ``--out ""`` write into runs/; for a ``--config`` that names no
    preset or readable file, and a ``--set`` not KEY=VALUE, naming the flag and its value."""
    for dest, flag in PATHS.items():
        if getattr(args, dest, None) == "":
            raise ConfigError(f"{flag} is empty: give a path (or leave the flag out)")
    # each named as typed, before any work: the loader says "no preset or file named 'nope'" and the --set parser
    # "override 'model.maps' must look like section.key=value", naming neither flag
    if getattr(args, "config", None):
        read_toml(args.config, named=f"--config {args.config}")
    # a command whose --set takes one section's keys: its own example (the parser's, train.lr=0.1, is refused
    # there next: `downpour analyze RUN --set analysis.splits` is not told "e.g. train.lr=0.1")
    example = SET_EXAMPLE.get(getattr(args, "command", ""))
    for item in getattr(args, "set", None) or ():
        parse_override(item, example)


def set_keys(args: argparse.Namespace) -> list[str]:
    """The dotted keys the command line's ``--set`` strings name."""
    return [".".join(parse_override(item)[0]) for item in args.set]


def check_sets(sets: list[Override], cfg: RunConfig, runner_fixed: str | None = None) -> None:
    """:func:`check_flags` for a command whose only settings are ``--set`` overrides (``downpour plan
    --check-simulated``, a study's cells); ``runner_fixed``: why the runner cannot change (a study's), said in
    place of the advice to change it."""
    check_flags(argparse.Namespace(set=list(sets), runner_fixed=runner_fixed,
                                   **{flag: None for flag in (*CLUSTER_ONLY, *ONLY_ON)}), cfg)


def _runner_advice(args: argparse.Namespace) -> str:
    """A refusal's advice: another runner, unless the run's is fixed (a resumed run's: another would be another run)."""
    if getattr(args, "runner_fixed", None):
        return f"; {args.runner_fixed}"
    return ("; a resumed run keeps its runner" if getattr(args, "resume", None) else
            "; add " + listed((f"--runner {name}" for name in CLUSTER_RUNNERS), "or"))


def check_cluster_flags(args: argparse.Namespace, runner: str) -> None:
    """ConfigError naming the flags of :data:`CLUSTER_ONLY` that a one-process ``runner`` never reads (before the
    config's checks too, which would say "cluster.partitions = 2" for `--partitions 2`)."""
    given = [flag for flag in CLUSTER_ONLY if getattr(args, flag) is not None]
    if is_cluster_runner(runner) or not given:
        return
    flags = ", ".join("--" + flag.replace("_", "-") for flag in given)
    # (--delay is the simulator's alone: "--runner ray" is not suggested, which would then refuse it)
    runners = [ONLY_ON[f] for f in given if f in ONLY_ON] or list(CLUSTER_RUNNERS)
    one = len(runners) == 1 and not getattr(args, "resume", None)
    other = f"; add --runner {runners[0]}" if one else _runner_advice(args)
    raise ConfigError(f"{flags} only {'applies' if len(given) == 1 else 'apply'} to the {listed(runners)} "
                      f"{'runners' if len(runners) > 1 else 'runner'}, and this run's runner is {runner!r}{other}")


def check_flags(args: argparse.Namespace, cfg: RunConfig, pipeline: str | None = None) -> None:
    """ConfigError naming the first flag or ``--set`` key of ``args`` that ``cfg``'s runner and algorithm never read
    (``pipeline``: data.pipeline as given, where ``cfg`` is resolved and 'auto' made its choice: the refusals say both;
    None: ``cfg``'s)."""
    check_cluster_flags(args, cfg.cluster.runner)
    runner = cfg.cluster.runner
    given = [flag for flag in CLUSTER_ONLY if getattr(args, flag) is not None]
    typed = set_keys(args)
    blaster_on_ray = runner == "ray" and cfg.cluster.algorithm == "sandblaster"
    if blaster_on_ray and (args.delay or "cluster.delay" in typed):
        from downpour.sandblaster.checks import ray_straggler_problem   # (torch: a Sandblaster run's)
        if problem := ray_straggler_problem(cfg):     # (refused: taken, it would have no effect)
            raise ConfigError(problem)
    for flag, only in ONLY_ON.items():
        if runner == only or (flag == "delay" and blaster_on_ray and cfg.cluster.spec("delay")[0] == "straggler"):
            continue    # Sandblaster's last worker on Ray sleeps as a straggler (docs/sandblaster.md)
        also = " (and Sandblaster on Ray, its straggler:T:FACTOR form)" if flag == "delay" and blaster_on_ray else ""
        if getattr(args, flag):
            raise ConfigError(f"--{flag} only applies to the {only} runner{also}, and this run's runner is "
                              f"{runner!r}; drop --{flag} or use --runner {only}")
        if f"cluster.{flag}" in typed:
            raise ConfigError(f"--set cluster.{flag}: only the {only} runner{also} reads it, and this run's runner is "
                              f"{runner!r}")
    if not is_cluster_runner(runner):
        cluster = [key for key in typed if key.startswith("cluster.") and key != "cluster.runner"]
        if cluster:
            raise ConfigError(f"--set {', '.join(cluster)}: the {runner} runner reads no [cluster] setting but the "
                              f"runner{_runner_advice(args)}")
    else:
        local = [key for key in typed if key in LOCAL_ONLY]
        if local:
            raise ConfigError(f"--set {', '.join(local)}: only the local runner reads "
                              f"{'it' if len(local) == 1 else 'them'}, and this run's runner is {runner!r} "
                              f"(its counterpart: {', '.join(LOCAL_ONLY[k] for k in local)})")
    if runner == "simulated":   # (the simulator restarts the shards and workers cluster.faults loses, as its
        # shard_restarts and restarts say: read there)
        ray = [key for key in typed if key in RAY_ONLY and not (key in LOSES and _loses(cfg, LOSES[key]))]
        if ray:
            raise ConfigError(f"--set {', '.join(ray)}: only the ray runner reads {'it' if len(ray) == 1 else 'them'}, "
                              "and this run's runner is 'simulated'")
    flagged = {f"cluster.{flag}": "--" + flag.replace("_", "-") for flag in given}
    for key, (setting, reads, wanted, *others) in READ_ONLY_WITH.items():
        if (key in typed or key in flagged) and not reads(cfg):
            raise ConfigError(f"{flagged.get(key, '--set ' + key)}: only {setting} {wanted} reads it, and this run's "
                              f"{_values(cfg, (setting, *(others[0] if others else ())))}")
    named = [f"--compensation {args.compensation}"] if getattr(args, "compensation", None) else []
    named += ["--set cluster.compensation"] if "cluster.compensation" in typed else []
    if named and cfg.cluster.consistency == "sync" and cfg.cluster.compensation != "none":
        raise ConfigError(f"{', '.join(named)}: a sync round applies the workers' mean gradient, every push at staleness 0, "
                          "so no compensation reads it; drop it, or use --consistency async or bounded:K")
    _check_one_worker_bound(args, typed, cfg)
    _check_streamed(typed, cfg, pipeline or cfg.data.pipeline)
    _check_algorithm(args, typed, cfg)
    _check_schedule(typed, cfg)


def _loses(cfg: RunConfig, kind: str) -> bool:
    """Whether ``cfg``'s cluster.faults loses a ``kind`` (shard, worker; a form it does not parse is refused by
    preflight)."""
    return any(item.split()[:1] == [kind] for item in cfg.cluster.faults)


def _check_one_worker_bound(args: argparse.Namespace, typed: list[str], cfg: RunConfig) -> None:
    """bounded:K with one worker: a gated worker waits for its own push to land, and K bounds how far it runs ahead
    of the slowest, itself (teacher-student, constant:2: bounded:0, bounded:3 and sync gave one model, bit for bit)."""
    c = cfg.cluster
    if c.algorithm != "downpour" or c.workers != 1 or c.spec("consistency")[0] != "bounded":
        return
    named = [f"--{flag} {getattr(args, flag)}" for flag in ("consistency", "workers") if getattr(args, flag, None) is not None]
    sets = [key for key in ("cluster.consistency", "cluster.workers") if key in typed]
    named += [f"--set {', '.join(sets)}"] if sets else []
    if named:
        raise ConfigError(f"{', '.join(named)}: cluster.consistency = {c.consistency!r} bounds how far a worker runs ahead "
                          "of the slowest, and with one worker (cluster.workers = 1) that is itself: it waits for its "
                          "own push whatever K is, the same run as cluster.consistency = 'sync'; use sync, async or "
                          "more workers")


def _check_schedule(typed: list[str], cfg: RunConfig) -> None:
    """A greedy schedule asked for a one-stage model would be joint, bit for bit. (Only asked for: a study or a
    file may put a one-stage model on a preset whose schedule is greedy.)"""
    if "train.schedule" in typed and cfg.train.schedule == "greedy":
        from downpour.data.build import sample_shape
        from downpour.models.registry import build

        try:
            model, _ = build(cfg, sample_shape(cfg.data))
        except (ValueError, TypeError, KeyError, RuntimeError, IndexError):   # (ConfigError too: named by the checks
            return                                                            # that follow, as without the schedule)
        if model.n_stages == 1:
            raise ConfigError(f"--set train.schedule: 'greedy' trains a stacked model's stages one after another, and "
                              f"model {cfg.model.name!r} has one stage (greedy would be joint); drop it")


def _check_streamed(typed: list[str], cfg: RunConfig, given: str) -> None:
    """The stream's own keys where the data are held in memory. Checked on the resolved config, where
    ``data.pipeline = 'auto'`` has made its choice (``data.pipeline.resolve_data``); ``given``: the value before it,
    said beside the choice (an 'auto' given is not said as "data.pipeline = 'memory'")."""
    keys = [key for key in typed if key in STREAM_KEYS]
    d = cfg.data
    if not keys or (d.can_stream() and d.pipeline != "memory"):
        return
    it = "it" if len(keys) == 1 else "them"
    if d.can_stream():
        held = ("data.pipeline = 'auto' chose 'memory': the data it holds fit in 1 GiB" if given == "auto"
                else "data.pipeline = 'memory'; 'auto' chooses it where the data held fit in 1 GiB")
        why = f"this run holds its data in memory ({held}): set data.pipeline = 'stream' to stream them, or drop {it}"
    else:
        why = f"this run's data.source is {d.source!r}{f' ({d.path})' if d.path else ''}, held in memory"
    raise ConfigError(f"--set {', '.join(keys)}: only streamed data read {it} (data.source = folder, video or a .npy "
                      f"array), and {why}")


def _check_algorithm(args: argparse.Namespace, typed: list[str], cfg: RunConfig) -> None:
    blaster = [key for key in typed if key.startswith("sandblaster.")]
    if blaster and cfg.cluster.algorithm != "sandblaster":
        raise ConfigError(f"--set {', '.join(blaster)}: only Sandblaster L-BFGS reads [sandblaster], and this run "
                          f"trains with cluster.algorithm = {cfg.cluster.algorithm!r}")
    if cfg.cluster.algorithm != "sandblaster":
        return
    flags = ["--" + flag.replace("_", "-") for flag in ("consistency", "n_fetch", "n_push", "compensation")
             if getattr(args, flag) is not None]
    keys = [key for key in typed if _downpour(key)]
    if "train.batch_size" in typed and cfg.cluster.runner == "ray":   # the simulator's clock reads it, nothing on Ray
        raise ConfigError("--set train.batch_size: Sandblaster on Ray never reads it (the simulator's clock prices a unit "
                          "by it); a batch of Sandblaster is sandblaster.batch")
    named, said = ", ".join(flags + ([f"--set {', '.join(keys)}"] if keys else [])), set(keys)
    drop = ""            # (a typed one is dropped from the command line; a file's is said where)
    if not named and (in_files := _downpour_in_file(args)):
        named = "; ".join(f"{where} sets {', '.join(sorted(sets))}" for where, sets in in_files.items())
        said = {item.split(" = ")[0] for sets in in_files.values() for item in sets}
        n = sum(len(sets) for sets in in_files.values())
        drop = f"; drop {'it' if n == 1 else 'them'} from {listed(in_files)}"
    if named:
        instead = "".join(f"; {words(cfg)}" for key, words in SANDBLASTER_INSTEAD.items() if key in said)
        raise ConfigError(f"{named}: Downpour's, and this run trains with Sandblaster L-BFGS, which reads of [cluster] "
                          f"only {READS_SAID}{instead}{drop}")


def _downpour(key: str) -> bool:
    """Whether ``key`` is one Sandblaster never reads (and a Downpour run does)."""
    return (key.startswith("cluster.") and key not in SANDBLASTER_READS) or key in DOWNPOUR_TRAIN


def _downpour_in_file(args: argparse.Namespace) -> dict[str, list[str]]:
    """{FILE: ["cluster.lr = 0.5", ...]}: the Downpour keys that ``--config FILE`` (or a file it inherits) sets away
    from their default, where the files themselves train with Sandblaster. Not the user's slip: a preset's keys; a
    file written for Downpour whose algorithm the command line switched (``--set cluster.algorithm=sandblaster``:
    its keys are Downpour's on purpose, as a Downpour run's config.toml reused so); a resolved config's (a Sandblaster
    run's config.toml: it lists every key Sandblaster reads of [cluster], the Downpour ones as its preset left them;
    one written before a newer [cluster] key lacks that key, so "every key" is not asked for)."""
    if not getattr(args, "config", None):
        return {}
    table, origins = merged_tables(args.config, (), warn=False)
    defaults = {f"{cls.section}.{f.name}": f.default for cls in (ClusterConfig, TrainConfig)
                for f in dataclasses.fields(cls)}
    if table.get("cluster", {}).get("algorithm", defaults["cluster.algorithm"]) != "sandblaster":
        return {}
    # (what the file itself sets: a file inheriting a run's config.toml and setting cluster.workers left it resolved)
    resolved = {where for where in set(origins.values()) if not where.startswith("preset ")
                and set(read_toml(where)[0].get("cluster", {})) >= {key.split(".")[1] for key in SANDBLASTER_READS}}
    sets: dict[str, list[str]] = {}
    for key, where in origins.items():
        if not _downpour(key) or where.startswith("preset ") or where in resolved:
            continue
        section, name = key.split(".")
        if table[section][name] != defaults[key]:
            sets.setdefault(where, []).append(f"{key} = {table[section][name]!r}")
    return sets


def update_rule_words(cfg: RunConfig) -> str:
    """What the start line says of a Downpour cluster run whose config names another local optimiser: its workers'
    update is the server's ``cluster.rule`` (a preset's ``train.optimizer`` is the local runner's), at ``cluster.lr``
    where set. cnn-digits on the simulator trained with Adagrad where the preset says Adam, unsaid (final loss 0.154
    against the local 0.021)."""
    c = cfg.cluster
    if not is_cluster_runner(c.runner) or c.algorithm != "downpour" or (c.rule == cfg.train.optimizer and not c.lr):
        return ""
    rate = f"cluster.lr = {c.lr:g}" if c.lr else f"train.lr = {cfg.train.lr:g}"
    return (f" (the server's update rule cluster.rule = {c.rule!r} at {rate}; train.optimizer = "
            f"{cfg.train.optimizer!r}{f' at train.lr = {cfg.train.lr:g}' if c.lr else ''} is the local runner's)")


def named_by_set(err: ConfigError, sets: Sequence[str]) -> ConfigError:
    """``err`` prefixed with the ``--set`` that gave its key, as ``downpour train`` names it (so that
    `analyze --set analysis.probes=["digitz"]` and `models --footprint cat-demo --set model.tile=abc` are refused
    naming the flag, not the key alone), else ``err``. The last ``--set`` of the key, the one that took effect (it named
    the first of `--set model.tile=8 --set model.tile=abc`, refused for abc)."""
    item = next((item for item in reversed(sets) if err.key and ".".join(parse_override(item)[0]) == err.key), None)
    return err if item is None or str(err).startswith("--set") else type(err)(f"--set {item}: {err}", key=err.key)
