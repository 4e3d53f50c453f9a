"""Model/data mismatches a run is not refused for but should hear of: what the model expects of its data,
told at build time from the data config and sample shape the preflight already has (no pass over the data).
Without them `--set model.name=grbm-patches` on rbm-digits trains sigma = 1 Gaussian visibles on the
unstandardised [0, 1] digits, and `--set model.name=rnn-rows-faces` on the 8x8 digits, without a word.

Not told: what an array source holds (``data.source = 'array'``: known only once it is read)."""
from __future__ import annotations

import logging
import math

from downpour.config import RunConfig
from downpour.data.build import off_unit_interval
from downpour.models.base import FeatureModel
from downpour.models.registry import model_entry

log = logging.getLogger(__name__)


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def data_fit_warnings(cfg: RunConfig, model: FeatureModel, shape: tuple[int, ...]) -> list[str]:
    """What ``model`` (``cfg.model.name``, built for samples of ``shape``) expects of its data and ``cfg.data`` does
    not give, one sentence each."""
    name, d = cfg.model.name, cfg.data
    out = []
    if getattr(model, "expects_standardised", False) and d.source != "array" and off_unit_interval(d) is None:
        out.append(f"model {name!r} has Gaussian visibles of fixed sigma = {model.config.sigma:g}, which expect "
                   f"standardised data (zero mean, unit std: data.normalize = 'patch', or data.whiten = 'zca'); "
                   f"data.source = {d.source!r} with data.normalize = {d.normalize!r} and data.whiten = {d.whiten!r} "
                   f"is not standardised (its values are in [0, 1])")
    entry, code, size = model_entry(name), getattr(model, "code_size", None), math.prod(shape)
    if code is not None and code >= size and tuple(shape) != tuple(entry.input_shape):
        # (only then: a GRU reads rows of any length, and a variant run on larger samples, as the architectures
        # study runs rnn-rows-faces on its crops, is a design choice; a code as large as the sample can copy it)
        out.append(f"model {name!r} is sized for samples of {_shape(entry.input_shape)} ({entry.description}); "
                   f"data.source = {d.source!r} at data.size = {d.size} gives samples of {_shape(shape)}, no "
                   f"larger than its code of {code}: it can pass the sample through unchanged")
    return out


def warn_data_fit(cfg: RunConfig, model: FeatureModel, shape: tuple[int, ...]) -> None:
    """Log :func:`data_fit_warnings` as WARNINGs."""
    for line in data_fit_warnings(cfg, model, shape):
        log.warning("%s", line)
