"""What an analysis is asked to do, checked before it starts: the run's ``[analysis]`` section with
its overrides, the finished run and its input processing, and the no-faces network the face test
scores beside it.

    opts = analysis_options(run.config, {"splits": 3})     # ConfigError naming the key
    run, model = open_run("runs/main")                     # NotARunError saying what is missing
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch

from downpour._names import nearest, pasted, plural
from downpour.analysis.labelled import BUILT_IN, class_names, folder_classes
from downpour.analysis.units import check_layer
from downpour.config import AnalysisConfig, ConfigError, RunConfig
from downpour.config_diff import RESUMABLE, config_differences
from downpour.data.build import sample_shape
from downpour.data.preprocess import Preprocess
from downpour.errors import CheckpointError, DataError
from downpour.models.base import FeatureModel
from downpour.train.rundir import NotARunError, RunDir, twin_advice

log = logging.getLogger(__name__)

MIN_SIDE = 4      # the smallest input side the image analyses mean anything at (digits are 8x8)


def is_image_input(shape: tuple[int, ...]) -> bool:
    """Whether a model's input ``shape`` is an image of at least MIN_SIDE square, what every analysis shows
    the network (lfw at 1x1 is one grey value per face: a test of nothing)."""
    return len(shape) == 3 and min(shape[1:]) >= MIN_SIDE


def has_analysis(cfg: RunConfig) -> bool:
    """Whether a run of ``cfg`` can be analysed, known before its model.json records its ``input_shape``: its samples
    (:func:`~downpour.data.build.sample_shape`) are images (:func:`is_image_input`). teacher-student's N(0, I) vectors
    are not: ``downpour report RUN`` reports its training alone."""
    return is_image_input(sample_shape(cfg.data))


def next_step(run: RunDir) -> str:
    """What a user runs on ``run`` once it is trained, and what it does: `downpour analyze RUN` analyses it, or, for
    a run with no analysis (:func:`has_analysis`), `downpour report RUN` reports its training (such a run stopped midway
    is not told to be analysed, which it cannot be)."""
    if has_analysis(run.config):
        return f"`downpour analyze {pasted(run.path)}` analyses it"
    return f"`downpour report {pasted(run.path)}` reports its training (it has no image input to analyse)"


def absolute_paths(a: AnalysisConfig) -> AnalysisConfig:
    """``a`` with the folders it names (``dataset``, ``poses``, a probe's, ``no_faces_run``) made absolute, for a run's
    config.toml as its ``data.path`` is: an analysis from another folder (``downpour analyze RUN``, a resume's) reads
    the same images. Kept relative, ``downpour train --set analysis.dataset=concept`` would leave a run analysed
    from elsewhere refused ("neither a built-in labelled set ... nor a folder"), or reading another 'concept'."""
    def fixed(name: str, always_folder: bool = False) -> str:    # (poses, no_faces_run: a folder called digits too)
        built_in = name in BUILT_IN and not always_folder
        return str(Path(name).absolute()) if name and not built_in and Path(name).exists() else name

    return dataclasses.replace(a, dataset=fixed(a.dataset), poses=fixed(a.poses, True),
                               no_faces_run=fixed(a.no_faces_run, True), probes=[fixed(p) for p in a.probes])


def analysis_options(cfg: RunConfig, overrides: dict[str, Any]) -> AnalysisConfig:
    """The run's ``[analysis]`` section with keyword overrides applied (checked as the section is
    rebuilt); an unknown key, a labelled set that is neither built in nor a folder, a concept label
    the set does not have, or a no-faces run that is not this recipe's is an error."""
    valid = [f.name for f in dataclasses.fields(AnalysisConfig)]
    for key in overrides:
        if key not in valid:
            raise ConfigError(f"unknown analysis option {key!r}{nearest(key, valid)}; valid: {', '.join(valid)}")
    opts = dataclasses.replace(cfg.analysis, **{k: v for k, v in overrides.items() if v is not None})
    unread = [key for key in overrides if key in AnalysisConfig.FACE_TEST and overrides[key] is not None]
    if unread and not opts.runs_face_test():
        raise ConfigError(f"analysis.{unread[0]}: only the face test reads it, and it runs on analysis.dataset = 'lfw' "
                          f"with positive = 1 (this analysis: {opts.dataset!r}, {opts.positive})", key=f"analysis.{unread[0]}")
    unread = [key for key in overrides if key in AnalysisConfig.CONTROLS and overrides[key] is not None]
    if unread and not opts.runs_controls():
        raise ConfigError(f"analysis.{unread[0]}: only the face test (analysis.dataset = 'lfw' with positive = 1) and a "
                          "folder concept's controls (analysis.concept_controls) read it (this analysis: "
                          f"{opts.dataset!r}, {opts.positive}"
                          + (")" if opts.dataset in BUILT_IN else ", analysis.concept_controls = [])"), key=f"analysis.{unread[0]}")
    if overrides.get("concept_controls") is not None and opts.dataset in BUILT_IN:
        raise ConfigError(f"analysis.concept_controls: only a labelled folder's concept reads it, not {opts.dataset!r} "
                          "(lfw's faces get the face test)", key="analysis.concept_controls")
    unprobed = [key for key in overrides if key in AnalysisConfig.PROBE and overrides[key] is not None]
    if unprobed and not opts.probes:     # (analysis.probes = [] skips the probes: their keys were taken, unread)
        raise ConfigError(f"analysis.{unprobed[0]}: only the linear probes read it, and this analysis runs none "
                          "(analysis.probes = [])", key=f"analysis.{unprobed[0]}")
    for key, names in (("dataset", [opts.dataset]), ("probes", opts.probes)):
        for name in names:
            if name not in BUILT_IN and name.strip() and not Path(name).exists():   # (said "neither ... nor a folder")
                raise ConfigError(f"analysis.{key}: the folder {name!r} does not exist"
                                  + ("" if Path(name).is_absolute() else f" (read as {str(Path(name).absolute())!r})")
                                  + f"; give a folder of class sub-folders or a built-in set ({', '.join(BUILT_IN)})",
                                  key=f"analysis.{key}")
            if name not in BUILT_IN and (not name.strip() or not Path(name).is_dir()):   # ("": the working directory)
                raise ConfigError(f"analysis.{key}: {name!r} is neither a built-in labelled set "
                                  f"({', '.join(BUILT_IN)}) nor a folder of class sub-folders", key=f"analysis.{key}")
    # (a probe's folder too: one of one class, or none, would fail after every other part was measured, in
    # scikit-learn's words, "This solver needs samples of at least 2 classes", or unnamed by its key)
    for name in opts.probes:
        if name not in BUILT_IN:
            _classes("probes", name)
    classes, counts = _classes("dataset", opts.dataset)
    opts = dataclasses.replace(opts, positive=concept_label(opts.positive, opts.dataset, classes))
    if counts:
        _splittable(opts.dataset, classes, counts, opts.positive)
    if opts.poses and not Path(opts.poses).is_dir():
        raise ConfigError(f"analysis.poses {opts.poses!r} is not a folder (one sub-folder per angle in degrees)",
                          key="analysis.poses")
    if opts.no_faces_run:
        no_faces_run(opts.no_faces_run, cfg)
    return opts


def _classes(key: str, name: str) -> tuple[list[str], list[int]]:
    """(the classes of ``analysis.{key}``'s labelled set ``name``, numbered as the loader numbers them; a folder's
    image files in each, [] for a built-in set); fewer than two classes is refused by the key (counting every
    sub-folder, an empty or hidden one too, would let a number past the loader's classes pass and fail after loading:
    "no examples of both classes")."""
    try:
        classes, counts = (class_names(name), []) if name in BUILT_IN else folder_classes(name)
    except DataError as err:
        raise ConfigError(f"analysis.{key}: {err}", key=f"analysis.{key}") from None
    if len(classes) < 2:
        # (an empty sub-folder is named: the user made it a class, and the listing says only where the images are)
        empty = sorted(p.name for p in Path(name).iterdir() if p.is_dir() and not p.name.startswith(".")
                       and p.name not in classes)
        said = "" if not empty else (f"; the sub-folder {empty[0]!r} holds no images" if len(empty) == 1 else
                                     f"; the sub-folders {', '.join(map(repr, empty))} hold no images")
        raise ConfigError(f"analysis.{key}: {name!r} needs a sub-folder of images for each class, at least 2; "
                          f"its images are in {classes}{said}", key=f"analysis.{key}")
    return classes, counts


def _splittable(dataset: str, classes: list[str], counts: list[int], positive: int) -> None:
    """ConfigError by ``analysis.dataset`` unless the concept and the other classes together each hold 2 image files,
    as the split needs: counted from the listing, so ``downpour train`` refuses before training a run whose analysis
    would stop at its first part (the split says so again of the readable ones, an unreadable file counted here)."""
    name = classes[positive]
    for n, which in ((counts[positive], f"class {positive} ({name!r}, analysis.positive)"),
                     (sum(counts) - counts[positive], f"every class but {name!r} together")):
        if n < 2:
            raise ConfigError(f"analysis.dataset: labelled set {dataset!r}: {which} holds {plural(n, 'image file')}; "
                              "choosing a unit on some images and scoring it on others needs at least 2 of each",
                              key="analysis.dataset")


def concept_label(positive: int | str, dataset: str, classes: list[str]) -> int:
    """``analysis.positive`` as a label: a number among ``classes``' (0, 1, ...) or one of their names (a folder's
    sub-folder, lfw's "face"); a ConfigError naming the key, the value and the classes otherwise. A name is taken,
    as a folder's user knows its classes by their sub-folders' names."""
    if isinstance(positive, str):
        sub_folders = {p.name for p in Path(dataset).iterdir() if p.is_dir()} if dataset not in BUILT_IN else set()
        # (a sub-folder the user sees is named as holding no images, not "no class of that name")
        if positive not in classes and positive in sub_folders and not positive.startswith("."):
            raise ConfigError(f"analysis.positive = {positive!r}: the sub-folder {str(Path(dataset) / positive)!r} "
                              f"holds no images, so it is no class of {dataset!r}; its classes: "
                              f"{', '.join(map(repr, classes))}", key="analysis.positive")
        if positive not in classes:
            raise ConfigError(f"analysis.positive = {positive!r}: the labelled set {dataset!r} has no class of that "
                              f"name{nearest(positive, classes)}; its classes: {', '.join(map(repr, classes))} "
                              f"(or their numbers 0-{len(classes) - 1})", key="analysis.positive")
        return classes.index(positive)
    named = str(positive) in classes and classes.index(str(positive)) != positive    # a folder called "7"
    if named and 0 <= positive < len(classes):
        # sub-folders 1/ and 2/ are classes 0 and 1: positive = 1 would take the sub-folder called 2, and the report
        # name that concept, with nothing to say the number and the name disagree
        raise ConfigError(f"analysis.positive = {positive}: the labelled set {dataset!r} numbers its classes "
                          f"{_named(classes)[2:-1]}, so class number {positive} is {classes[positive]!r}, not the one "
                          f"named {str(positive)!r}; name the one meant, quoted: --set 'analysis.positive=\"{positive}\"' "
                          f"or --set 'analysis.positive=\"{classes[positive]}\"'", key="analysis.positive")
    if not 0 <= positive < len(classes):
        raise ConfigError(f"analysis.positive = {positive}: the labelled set {dataset!r} has classes "
                          f"0-{len(classes) - 1}{_named(classes)}"
                          + (f"; the class named {str(positive)!r} is quoted: --set 'analysis.positive=\"{positive}\"'"
                             if named else ""), key="analysis.positive")
    return positive


def _named(classes: list[str]) -> str:
    """" (0 = blobs, 1 = noise)": what each class number names, where the names are not the numbers themselves."""
    if classes == [str(k) for k in range(len(classes))]:
        return ""
    return f" ({', '.join(f'{k} = {c}' for k, c in enumerate(classes))})"


def open_run(run_path: str | Path) -> tuple[RunDir, FeatureModel]:
    """The run directory and its trained model, or :class:`NotARunError` saying what is missing."""
    run = RunDir.open(run_path)
    if not (run.path / "model.json").is_file():
        raise NotARunError(f"{str(run.path)!r} has no model.json: {unfinished(run)}")
    model = run.load_model()
    saved = run.model_step()
    try:
        reached = run.reached()
    except CheckpointError as err:   # (read for the warning below alone: the model is what is analysed, not refused)
        log.warning("%s; the model saved at step %s is analysed", err, saved)
        reached = None
    if reached is not None and saved is not None and reached > saved:   # a resume stopped before its end
        log.warning("%s: its checkpoint is at step %d of %d, past the model saved at step %d, which is what is "
                    "analysed; `downpour train --resume %s` trains it to its end", run.path, reached,
                    run.config.train.steps, saved, pasted(run.path))
    broken = [name for name, t in model.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if broken:                 # (training rejects a non-finite update: an edited or damaged file)
        raise NotARunError(f"{str(run.path / 'model.safetensors')!r} holds non-finite values in {', '.join(broken[:3])}"
                           f"{', ...' if len(broken) > 3 else ''}: every measurement of that model would mean nothing")
    return run, model


def unfinished(run: RunDir) -> str:
    """Where a run without a model stands and the command that goes on from there: the step it stopped at and
    `--resume`, not "has its training finished?" (a run killed at step 848 of 8,000 leaves the user to guess that
    the analysis waits on a resume)."""
    try:
        reached, steps = run.reached(), run.config.train.steps
    except CheckpointError as err:   # (said alone, it named no way on: the model is missing, and a resume refuses it)
        return (f"{err}, and that checkpoint is what a resume goes on from: copy a whole one back, or train the run "
                f"again from step 0, `downpour train --config {pasted(run.path / 'config.toml')} --out NEW`")
    if reached is not None and reached >= steps:
        return (f"its checkpoint is its last step ({reached}) but the model was not written; "
                f"`downpour train --resume {pasted(run.path)}` writes it")
    if reached is not None:
        return (f"its checkpoint is at step {reached} of {steps}: it is still training, or it was stopped, and "
                f"`downpour train --resume {pasted(run.path)}` trains it to its end, after which {next_step(run)}")
    if run.never_started():
        return (f"it was stopped before its first metrics row and checkpoint (nothing of it was kept); "
                f"`downpour train --config {pasted(run.path / 'config.toml')} --out {pasted(run.path)}` starts it again")
    return (f"it holds no checkpoint (train.checkpoint_every = {run.config.train.checkpoint_every}; Ctrl-C and "
            f"SIGTERM save one, a kill -9 does not): it is still training, or `downpour train --resume {pasted(run.path)}` "
            "trains it again from step 0")


def run_preprocess(run: RunDir) -> Preprocess:
    """The run's fitted input processing (saved with it; rebuilt from its seeded data for older runs)."""
    saved = run.load_preprocess()
    if saved is not None:
        return saved
    from downpour.data import build_dataset

    cfg = run.config
    return build_dataset(cfg.data, seed=cfg.seed).preprocess


def no_faces_path(run: RunDir, opts: AnalysisConfig) -> Path | None:
    """The folder of the no-faces network the face test scores: with ``analysis.no_faces_twin`` the twin
    ``downpour train`` trained into ``RUN/no-faces``, else ``analysis.no_faces_run``; None without either."""
    return run.no_faces_twin if opts.no_faces_twin else Path(opts.no_faces_run) if opts.no_faces_run else None


def no_faces_of(run: RunDir, opts: AnalysisConfig, layer: str) -> tuple[FeatureModel, Preprocess] | None:
    """The no-faces network the face test scores, the one in :func:`no_faces_path`; None without one."""
    path = no_faces_path(run, opts)
    if path is None:
        return None
    if opts.no_faces_twin:
        if not (path / "model.json").is_file():
            raise ConfigError(f"analysis.no_faces_twin: {str(path)!r} holds no trained twin yet; "
                              f"{twin_advice(run)} (or set analysis.no_faces_twin = false)", key="analysis.no_faces_twin")
        return no_faces_network(str(path), run.config, layer, key="analysis.no_faces_twin")
    return no_faces_network(opts.no_faces_run, run.config, layer)


def no_faces_run(path: str, cfg: RunConfig, key: str = "analysis.no_faces_run") -> RunDir:
    """The finished run at ``path``, once checked to be ``cfg``'s recipe trained without a face (a
    ConfigError about ``key`` names what differs); cheap (no model is loaded), so it is checked before
    a run trains too."""
    try:
        run = RunDir.open(path)
        if not (run.path / "model.json").is_file():
            # where it stands and what goes on from there, as the analysis of a run says
            raise NotARunError(f"{str(run.path)!r} has no model.json: {unfinished(run)}")
        other = run.config
    except NotARunError as err:
        raise ConfigError(f"{key}: {err} (give the --out of the same recipe trained with data.train_faces = 0)",
                          key=key) from None
    if other.data.train_faces != 0 and other.data.trains_on_faces():
        raise ConfigError(f"{key}: {path!r} trained with data.train_faces = {other.data.train_faces}, not 0: "
                          "it saw faces", key=key)
    runtime = RESUMABLE - {"train.steps"}          # where and how it ran, not what it learned
    for name, mine, theirs in config_differences(cfg, other):
        if name != "data.train_faces" and name not in runtime:
            raise ConfigError(f"{key}: {path!r} has {name} = {theirs!r}, this run {mine!r}: not the same recipe, "
                              "seed and split", key=key)
    return run


def no_faces_network(path: str, cfg: RunConfig, layer: str,
                     key: str = "analysis.no_faces_run") -> tuple[FeatureModel, Preprocess]:
    """A no-faces network's model and input processing (:func:`no_faces_run` checks the run first)."""
    run = no_faces_run(path, cfg, key)
    model = run.load_model()
    check_layer(model, layer)
    return model, run_preprocess(run)
