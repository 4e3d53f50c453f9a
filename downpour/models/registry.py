"""The model registry: named variants of the model families, listed by ``downpour models``.

A variant is a family (a :class:`FeatureModel` subclass with a config dataclass) plus the config
fields it changes, its default objective and the input it expects:

    register_model("ufldl-sae", Autoencoder, description="...", input_shape=(1, 8, 8),
                   objective={"reconstruction": 1.0, "kl_sparsity": {"weight": 3.0, "rho": 0.01}},
                   hidden=25)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from downpour._names import nearest
from downpour.config import ConfigError, ModelSpec, RunConfig, merge_term
from downpour.errors import UnreadOption
from downpour.models.base import FeatureModel
from downpour.objectives import Objective, TermFieldError, make_term, split_part


@dataclass(frozen=True)
class ModelEntry:
    name: str
    family: type[FeatureModel]
    description: str
    config: Any                                   # the family's config dataclass, with this variant's values
    objective: dict[str, Any]                     # default cost terms
    input_shape: tuple[int, ...]                  # (C, H, W) or (T, F) the variant is designed for
    tags: tuple[str, ...] = field(default=())     # e.g. ("supervised",)


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, family: type[FeatureModel], *, description: str, objective: dict[str, Any],
                   input_shape: tuple[int, ...], tags: tuple[str, ...] = (), **config: Any) -> ModelEntry:
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is registered twice")
    entry = ModelEntry(name, family, description, _make_config(family, config, f"model {name!r}"),
                       dict(objective), tuple(input_shape), tuple(tags))
    _REGISTRY[name] = entry
    return entry


def _make_config(family: type[FeatureModel], values: dict[str, Any], where: str, base: Any = None) -> Any:
    """The family's config with ``values`` over ``base`` (or its defaults); the config checks its own
    declared fields as it is built (:class:`~downpour.settings.Section`)."""
    cls = family.config_class
    valid = [f.name for f in dataclasses.fields(cls)]
    for key in values:
        if key not in valid:
            raise ConfigError(f"{where}: unknown key 'model.{key}'{nearest(key, valid)}; {family.__name__} has {', '.join(valid)}",
                              key=f"model.{key}")
    try:
        config = dataclasses.replace(base, **values) if base is not None else cls(**values)
        return _without_unread_variant_keys(config, values, base)
    except ConfigError as err:      # (an UnreadOption stays one: a saved run's is dropped, train.recorded)
        raise type(err)(f"{where}: {err}", key=err.key) from None


def _without_unread_variant_keys(config: Any, values: dict[str, Any], base: Any) -> Any:
    """``config`` with every key the variant (``base``) set, the run did not (``values``), and the run's
    other options leave unread reset to its default, so that ``--set model.persistent=false`` on rbm-digits is not
    refused as "model.chains = 32 is not read", a key only the variant set. A key the run set itself
    is still refused (:class:`~downpour.errors.UnreadOption`)."""
    while hasattr(config, "check_read"):
        try:
            config.check_read()
            break
        except UnreadOption as err:
            name = (err.key or "").split(".", 1)[-1]
            field = type(config).__dataclass_fields__.get(name)
            if base is None or field is None or name in values or field.default is dataclasses.MISSING:
                raise
            config = dataclasses.replace(config, **{name: field.default})
    return config


def _load_families() -> None:
    import downpour.models.zoo  # noqa: F401  (importing the zoo registers every family's variants)


def list_models() -> list[ModelEntry]:
    _load_families()
    return sorted(_REGISTRY.values(), key=lambda e: e.name)


def model_entry(name: str) -> ModelEntry:
    _load_families()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}{nearest(name, _REGISTRY)}; `downpour models` lists them", key="model.name")
    return _REGISTRY[name]


def create_model(name: str, input_shape: tuple[int, ...] | None = None, **options: Any) -> FeatureModel:
    """A fresh model of a registered variant; ``options`` override its config fields."""
    entry = model_entry(name)
    config = _make_config(entry.family, dict(options), f"model {name!r}", base=entry.config)
    return entry.family(config, tuple(input_shape or entry.input_shape))


def check_options(name: str, options: dict[str, Any]) -> None:
    """ConfigError (an :class:`~downpour.errors.UnreadOption` for a key nothing reads) unless ``options`` fit model
    ``name``."""
    entry = model_entry(name)
    _make_config(entry.family, dict(options), f"model {entry.name!r}", base=entry.config)


def resolve_objective(name: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The variant's default cost terms with the run's overrides merged in (:func:`~downpour.config.merge_term`). A
    part's own term (``stage2/pooled_l2``) merges over the shared term's resolved spec where it has none yet: ``eps``
    kept from ``pooled_l2`` when it sets only its weight (the shared terms first, so a shared override reaches it)."""
    merged = dict(model_entry(name).objective)
    for term, spec in sorted(overrides.items(), key=lambda item: "/" in item[0]):   # (stable: the order otherwise kept)
        part, shared = split_part(term)
        base = merged.get(term, merged.get(shared) if part else None)
        if base is None and isinstance(spec, dict) and "weight" not in spec:   # it read as on at weight 1
            raise ConfigError(f"objective.{term} = {spec!r}: model {name!r} has no {term!r} cost term (its terms: "
                              f"{', '.join(merged) or 'none'}); give a weight to add it (objective.{term}.weight = W)",
                              key=f"objective.{term}")
        merged[term] = merge_term(base, spec)
    return merged


def resolve(cfg: RunConfig) -> RunConfig:
    """``cfg`` with every model field and cost term written out, checked (a bad option or term raises
    :class:`ConfigError`): what the run directory's config.toml holds, so the run reproduces from it.
    Idempotent; ``cfg`` itself is not changed."""
    entry = model_entry(cfg.model.name)
    config = _make_config(entry.family, dict(cfg.model.options), f"model {entry.name!r}", base=entry.config)
    objective = resolve_objective(entry.name, cfg.objective)
    _objective(entry.name, objective)
    return dataclasses.replace(cfg, model=ModelSpec(entry.name, dataclasses.asdict(config)), objective=objective)


def build(cfg: RunConfig, input_shape: tuple[int, ...]) -> tuple[FeatureModel, Objective]:
    """The model and objective a run config asks for, on data of ``input_shape`` (``cfg`` is not changed)."""
    return create_model(cfg.model.name, input_shape, **cfg.model.options), build_objective(cfg)


def build_objective(cfg: RunConfig) -> Objective:
    """The objective of :func:`build` alone (for a model built by another route: ``downpour plan``'s, checked as
    ``--set model.KEY`` is)."""
    return _objective(cfg.model.name, resolve_objective(cfg.model.name, cfg.objective))


def _objective(name: str, spec: dict[str, Any]) -> Objective:
    try:
        return Objective.from_config(spec)
    except (KeyError, TypeError, ValueError) as err:
        reason = err.args[0] if isinstance(err, KeyError) and err.args else err   # KeyError's str() adds quotes
        raise ConfigError(f"[objective] of model {name!r}: {reason}", key=_failing_term(spec)) from None


def _failing_term(spec: dict[str, Any]) -> str | None:
    """``objective.TERM`` of the first term that cannot be built alone (what an error is about), if one."""
    for term, value in spec.items():
        try:
            make_term(term, value)
        except TermFieldError as err:       # the field, where it is known: a file may set one key, --set another
            return f"objective.{term}.{err.field}"
        except (KeyError, TypeError, ValueError):
            return f"objective.{term}"
    return None
