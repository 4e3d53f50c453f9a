"""A fitted :class:`~downpour.learner.FeatureLearner` as a folder of safetensors + JSON, never a pickle:

    learner.save("features/")                  # model.safetensors + model.json, learner.json, preprocess.*
    FeatureLearner.load("features/")           # transform gives the saved learner's output, bit for bit

``model.*`` is a run directory's model pair (:mod:`downpour.train.model_file`: registry name, options, input
shape, every parameter and buffer), read back by the same :meth:`~downpour.train.rundir.RunDir.load_model`;
``preprocess.*`` is a run's fitted input processing (:meth:`~downpour.train.rundir.RunDir.save_preprocess`);
``learner.json`` holds the constructor's parameters and the fitted attributes, and the SHA-256 of its own content
(:mod:`~downpour.train.json_digest`), checked on load. A model instance given as
``model`` that fitting then trained (``steps > 0``) is saved too, in ``start/`` (a model pair), so a clone
of the loaded learner fine-tunes from the same weights. A floor below learner.py, which calls it on use: it
takes the learner (or its class) as an argument.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from downpour._names import listed
from downpour.analysis.units import check_layer
from downpour.data.preprocess import Preprocess
from downpour.errors import CheckpointError, NotARunError
from downpour.models.base import FeatureModel
from downpour.models.registry import create_model, list_models
from downpour.train.checkpoint_checks import check_finite
from downpour.train.json_digest import digest_problem, digested
from downpour.train.model_file import replace_text, write_model
from downpour.train.rundir import RunDir

log = logging.getLogger(__name__)

FORMAT = "downpour.FeatureLearner/1"        # learner.json's "format": what this module writes and reads
FITTED = ("layer_", "input_shape_", "n_features_in_", "loss_curve_", "_n_features_out")   # all but model_
START = "start"                             # the folder of a trained model instance's starting weights


def save_learner(learner: Any, path: str | Path, preprocess: bool = True) -> Path:
    """Write the fitted ``learner`` into the folder ``path`` (made if missing, else replaced whole, never left
    half old and half new). A ValueError,
    before anything is written, for what cannot be saved as tensors + JSON: an arbitrary ``preprocess`` callable
    (``preprocess=False`` leaves it out), a model the registry cannot rebuild, a parameter that is not JSON."""
    params = learner.get_params(deep=False)
    unknown = sorted(k for k in vars(learner) if k.endswith("_") and k not in FITTED and k != "model_")
    if unknown:                  # a fitted attribute added to fit but not here: it would be lost silently
        raise ValueError(f"FeatureLearner.save: fitted attribute(s) {', '.join(unknown)} have no place in learner.json")
    fitted = {key: getattr(learner, key) for key in FITTED}
    fitted["input_shape_"] = list(fitted["input_shape_"])
    fitted["loss_curve_"] = [None if math.isnan(v) else v for v in fitted["loss_curve_"]]   # (a skipped step: NaN)
    name = _registered_name(learner.model_, learner.model)
    start = learner.model if isinstance(learner.model, FeatureModel) else None
    if start is not None and _same_state(start, learner.model_):
        start = None             # used frozen (steps=0, from_run): the loaded model_ is the parameter's copy
    if start is not None:
        _registered_name(start, learner.model)
    kept = params["preprocess"] if preprocess else None
    if kept is not None and not isinstance(kept, Preprocess):
        raise ValueError(f"FeatureLearner.save: preprocess is {kept!r}, a callable that cannot be saved as tensors + "
                         "JSON (only a run's fitted normalisation/whitening can: FeatureLearner.from_run); "
                         "save(path, preprocess=False) saves the learner without it, and the loaded one transforms raw X")
    given = name if isinstance(params["model"], str) else {"saved": START if start is not None else "model"}
    record = {"format": FORMAT, "fitted": fitted,
              "params": {**params, "model": given, "preprocess": None if kept is None else {"saved": "preprocess"}},
              "preprocess_left_out": params["preprocess"] is not None and kept is None}
    try:    # (numpy values as Python's first: the digest is taken of what reading the file back gives)
        record = json.loads(json.dumps(record, allow_nan=False, default=_numpy_as_python))
    except (TypeError, ValueError) as err:   # options={"hidden": np.float64("nan")}, an object in objective=
        raise ValueError(f"FeatureLearner.save: a parameter cannot be written as JSON: {err}") from None
    text = json.dumps(digested(record), indent=1, sort_keys=True)
    folder = Path(path)
    if (folder / "config.toml").is_file():   # a run directory (from_run(RUN).save(RUN)): its model pair would be replaced
        raise ValueError(f"FeatureLearner.save: {str(folder)!r} holds a run (config.toml): the learner's model.json "
                         "would replace the run's, which records its step, seed and data; save into another folder, "
                         f"e.g. {str(folder / 'learner')!r}")
    _check_replaceable(folder)
    # Written whole beside the folder, then swapped in by two renames: written in place, a save cut midway would leave
    # the new model pair beside the old learner.json (and stale start/ or preprocess files), which loads as neither.
    saving, replaced = _sibling(folder, SAVING), _sibling(folder, REPLACED)
    shutil.rmtree(saving, ignore_errors=True)       # (a save cut before its swap: never read)
    saving.mkdir(parents=True)
    write_model(saving, learner.model_, name)
    if start is not None:
        (saving / START).mkdir()
        write_model(saving / START, start, name)
    if kept is not None:
        RunDir(saving).save_preprocess(kept)
    replace_text(saving / "learner.json", text)
    shutil.rmtree(replaced, ignore_errors=True)
    if folder.exists():
        os.replace(folder, replaced)
    os.replace(saving, folder)                      # (a kill just before: load names both folders)
    shutil.rmtree(replaced, ignore_errors=True)
    return folder


SAVING, REPLACED = "saving", "replaced"      # save's sibling folders: the new learner until its swap, the old one during it
OURS = {"learner.json", "model.json", "model.safetensors", "preprocess.json", "preprocess.safetensors", START}


def _sibling(folder: Path, role: str) -> Path:
    folder = folder.absolute()
    return folder.with_name(f".{folder.name}.{role}")


def _stem(name: str) -> str:
    """``name`` without the suffixes a cut write leaves (``model.safetensors.tmp``, ``preprocess.prev.json``)."""
    return name.removesuffix(".tmp").replace(".prev.", ".")


def _check_replaceable(folder: Path) -> None:
    """Saving replaces the whole folder: refused, before anything is written, where that would delete what is not a
    learner's (a save into a folder of results would remove the results)."""
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"FeatureLearner.save: {str(folder)!r} is a file, not a folder")
    if folder.resolve() in (Path.cwd(), *Path.cwd().parents):   # (renamed away and deleted under the process)
        raise ValueError(f"FeatureLearner.save: {str(folder)!r} is the working directory (or holds it); save into a subfolder")
    foreign = sorted(p.name for p in folder.iterdir() if _stem(p.name) not in OURS) if folder.is_dir() else []
    if foreign:
        raise ValueError(f"FeatureLearner.save: {str(folder)!r} holds files that are not a saved learner's ({foreign[0]!r}"
                         f"{f' and {len(foreign) - 1} more' if len(foreign) > 1 else ''}), and saving replaces the "
                         "whole folder; save into a new or empty folder")


def load_learner(cls: type, path: str | Path) -> Any:
    """The learner :func:`save_learner` wrote into ``path``, every file checked (a CheckpointError naming the file
    and key); nothing is unpickled."""
    folder = Path(path)
    where = folder / "learner.json"
    if not where.is_file() and not folder.exists() and _sibling(folder, REPLACED).is_dir():
        raise CheckpointError(f"{str(folder)!r} does not exist: a save into it was cut between its two renames; the "
                              f"previous learner is whole in {str(_sibling(folder, REPLACED))!r} and the new one in "
                              f"{str(_sibling(folder, SAVING))!r}: rename either to {folder.name!r}")
    if not where.is_file():
        raise CheckpointError(f"{str(where)!r} does not exist: {str(folder)!r} is not a saved FeatureLearner")
    try:
        record = json.loads(where.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{str(where)!r} is not valid JSON: {err}") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        got = record.get("format") if isinstance(record, dict) else record
        raise CheckpointError(f"{str(where)!r}: format is {got!r}, not {FORMAT!r}")
    # (a learner saved before 2026-12-05 records none: read without the check, as its model.safetensors, saved with
    # it, does not say that it was written with one)
    problem = digest_problem(record, folder / "model.safetensors")
    if problem:
        raise CheckpointError(f"{str(where)!r} cannot be read back: {problem}; put an intact copy of the folder "
                              "back, or fit and save the learner again (a change made on purpose: "
                              "downpour.train.json_digest.rewrite_json writes it with its digest)")
    params, fitted = record.get("params"), record.get("fitted")
    want = set(cls().get_params(deep=False))
    if not isinstance(params, dict) or set(params) != want:
        have = set(params) if isinstance(params, dict) else set()
        wrong = [f"lacks {sorted(want - have)}"] * bool(want - have) + [f"holds unknown {sorted(have - want)}"] * bool(have - want)
        raise CheckpointError(f"{str(where)!r}: params {listed(wrong) if isinstance(params, dict) else 'is not a table'}")
    if not isinstance(fitted, dict) or set(fitted) != set(FITTED):
        raise CheckpointError(f"{str(where)!r}: fitted holds {sorted(fitted) if isinstance(fitted, dict) else fitted!r}, "
                              f"not {', '.join(FITTED)}")
    model = _model(folder)
    shape = fitted["input_shape_"]
    if shape != list(model.input_shape) or fitted["n_features_in_"] != math.prod(model.input_shape):
        raise CheckpointError(f"{str(where)!r}: input_shape_ {shape!r} and n_features_in_ {fitted['n_features_in_']!r} are "
                              f"not the input {list(model.input_shape)} of the model in model.json")
    try:
        layer = check_layer(model, fitted["layer_"])
    except ValueError as err:
        raise CheckpointError(f"{str(where)!r}: layer_ {fitted['layer_']!r}: {err}") from None
    curve = fitted["loss_curve_"]
    if not isinstance(curve, list) or not all(v is None or isinstance(v, (int, float)) for v in curve):
        raise CheckpointError(f"{str(where)!r}: loss_curve_ is not a list of numbers")
    saved = params["model"]
    if isinstance(saved, dict):               # a model instance: model_'s copy, or the starting weights in start/
        if saved not in ({"saved": "model"}, {"saved": START}):
            raise CheckpointError(f"{str(where)!r}: params.model is {saved!r}, not a model name or a saved model")
        params["model"] = copy.deepcopy(model) if saved["saved"] == "model" else _model(folder / START)
    params["preprocess"] = _preprocess(folder, where, params["preprocess"], record.get("preprocess_left_out"))
    if isinstance(params["input_shape"], list):
        params["input_shape"] = tuple(params["input_shape"])
    learner = cls(**params)
    learner.model_, learner.layer_, learner.input_shape_ = model.eval(), layer, tuple(shape)
    learner.n_features_in_, learner._n_features_out = fitted["n_features_in_"], fitted["_n_features_out"]
    learner.loss_curve_ = [math.nan if v is None else float(v) for v in curve]
    return learner


def _model(folder: Path) -> FeatureModel:
    """The model pair in ``folder``, as a run's is read, and refused with non-finite weights."""
    for name in ("model.json", "model.safetensors"):
        if not (folder / name).is_file():
            raise CheckpointError(f"{str(folder / name)!r} does not exist: the saved FeatureLearner is incomplete")
    try:
        model = RunDir(folder).load_model(rewrites="saving the learner (`learner.save(path)`)")   # (no run to resume here)
    except NotARunError as err:    # a torn model.json: named as the other damaged files are
        raise CheckpointError(str(err)) from None
    except ValueError as err:      # (a ConfigError: an unknown model name, an option the family has not)
        raise CheckpointError(f"{str(folder / 'model.json')!r} does not build a model: {err}") from None
    check_finite(model.state_dict(), folder / "model.safetensors")
    return model


def _preprocess(folder: Path, where: Path, saved: Any, left_out: Any) -> Preprocess | None:
    if saved is None:
        if left_out is True:
            log.warning("%s was saved without its preprocess (save(path, preprocess=False)): the loaded learner "
                        "transforms X as given, not normalised or whitened as when it was fitted", folder)
        return None
    if saved != {"saved": "preprocess"}:
        raise CheckpointError(f"{str(where)!r}: params.preprocess is {saved!r}, not null or a saved preprocess")
    if not (folder / "preprocess.json").is_file():
        raise CheckpointError(f"{str(folder / 'preprocess.json')!r} does not exist: the saved FeatureLearner is incomplete")
    prep = RunDir(folder).load_preprocess()
    check_finite(prep.state()[0], folder / "preprocess.safetensors")
    return prep


def _registered_name(model: FeatureModel, given: Any) -> str:
    """The registry name that rebuilds ``model`` from its options: ``given`` when it is one; else a registered
    variant of the model's family, its own config first. ValueError when none rebuilds the same tensors."""
    if isinstance(given, str):
        return given
    family = [e for e in list_models() if e.family is type(model)]
    family.sort(key=lambda e: e.config != getattr(model, "config", None))
    if not family or not dataclasses.is_dataclass(getattr(model, "config", None)):
        raise ValueError(f"FeatureLearner.save: the model is a {type(model).__name__}, which no registered model "
                         "builds (`downpour models` lists them): it cannot be rebuilt from a name and options")
    try:
        rebuilt = create_model(family[0].name, tuple(model.input_shape), **dataclasses.asdict(model.config))
    except (ValueError, TypeError) as err:
        raise ValueError(f"FeatureLearner.save: the registry cannot rebuild the {type(model).__name__} from its "
                         f"options as {family[0].name!r}: {err}") from None
    mine, theirs = model.state_dict(), rebuilt.state_dict()
    if rebuilt.config != model.config or {k: v.shape for k, v in mine.items()} != {k: v.shape for k, v in theirs.items()}:
        raise ValueError(f"FeatureLearner.save: {family[0].name!r} with the model's options builds other tensors than "
                         f"the {type(model).__name__}'s: it cannot be rebuilt from a name and options")
    return family[0].name


def _numpy_as_python(value: Any) -> Any:
    """A parameter grid's numpy values (``np.int64(16)`` in options) as Python's; anything else is not JSON."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"{value!r} is not JSON")


def _same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].shape == sb[k].shape and torch.equal(sa[k], sb[k]) for k in sa)
