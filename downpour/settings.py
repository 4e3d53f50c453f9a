"""Validation as data: a dataclass field declares its valid values beside it, one function checks them.

    steps: int = setting(1000, within="[1, inf)")
    optimizer: str = setting("adagrad", choices=("sgd", "adagrad", "adam"))
    delay: str = setting("constant:1", forms={"constant": (("T", float, "[0, inf)"),), ...})

:func:`check_fields` (called by each config section's ``__post_init__``, so it runs however the
section is built) coerces int to float and a comma list to ``list[str]``, then checks each field's
type, choices, interval and spec form, raising :class:`ConfigError` that names ``section.key``, the
value and the nearest valid choice. A float must always be finite (NaN and inf would reach the JSON files).

A *spec* is a string ``kind:ARG:ARG`` (``bounded:2``, ``uniform:0:4``); ``forms`` maps each kind to
its arguments' (name, type, interval); :func:`parse_spec` turns a checked spec into ``Spec(kind, args)``.
"""
from __future__ import annotations

import dataclasses
import math
from functools import cache
from typing import Any, ClassVar, NamedTuple, get_args, get_origin, get_type_hints

from downpour._names import nearest, plural, whole_number
from downpour.errors import ConfigError, UnreadOption

Form = tuple[tuple[str, type, str], ...]   # a spec kind's arguments: (name, int | float, interval)


class Interval(NamedTuple):
    low: float
    high: float
    low_open: bool
    high_open: bool

    @classmethod
    def parse(cls, text: str) -> Interval:
        """``"[1, inf)"``, ``"(0, 1]"``: a closed or open end on each side."""
        low, high = (float(x) for x in text[1:-1].split(","))
        return cls(low, high, text[0] == "(", text[-1] == ")")

    def __contains__(self, v: float) -> bool:
        above = v > self.low if self.low_open else v >= self.low
        below = v < self.high if self.high_open else v <= self.high
        return above and below

    def describe(self) -> str:
        low, high = _number(self.low), _number(self.high)
        if math.isinf(self.high):
            return f"{'>' if self.low_open else '>='} {low}"
        return f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"


def _number(x: float) -> str:
    """A bound as written: whole numbers in full (4294967295, not 4.29497e+09)."""
    return str(int(x)) if x.is_integer() else f"{x:g}"


class Section:
    """Base of a config dataclass that checks its declared fields whenever it is built (its
    ``__post_init__``): run config sections and model families' configs alike."""

    section: ClassVar[str] = ""    # the TOML table it is read from: [data], [train], [model], ...
    # key -> what a run's files meant by lacking it (written before the key existed), where that is not
    # the key's default: read in their place (downpour.train.recorded), so an old run stays the run it was
    absent_meant: ClassVar[dict[str, Any]] = {}

    def __post_init__(self) -> None:
        check_fields(self, self.section)

    def refuse_unread(self, keys: tuple[str, ...], why: str) -> None:
        """ConfigError naming the first of ``keys`` set away from its default: ``why`` nothing reads it
        (an option accepted and ignored reads as a result that is not one)."""
        for key in keys:
            value = getattr(self, key)
            if value != type(self).__dataclass_fields__[key].default:
                raise UnreadOption(f"{self.section}.{key} = {value!r} is not read: {why}", key=f"{self.section}.{key}")


class Spec(NamedTuple):
    kind: str
    args: tuple


def setting(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING, choices: tuple = (),
            within: str = "", forms: dict[str, Form] | None = None) -> Any:
    """A dataclass field with its valid values: ``choices``, an interval ``within``, or spec ``forms``."""
    meta = {"choices": tuple(choices), "within": Interval.parse(within) if within else None, "forms": forms}
    return dataclasses.field(default=default, default_factory=factory, metadata=meta)


def choices_of(cls: type, name: str) -> tuple:
    """The declared choices of field ``name`` of dataclass ``cls`` (for the CLI, docs and tests)."""
    meta = {f.name: f.metadata for f in dataclasses.fields(cls)}[name]
    return meta["choices"] or tuple(meta["forms"] or ())


@cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def is_count(value: Any, low: int = 0) -> bool:
    """Whether ``value`` is a whole number >= ``low`` (a bool is not one, though Python counts it an int)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def check_fields(obj: Any, section: str) -> None:
    """Coerce and check every field of dataclass ``obj`` (frozen or not) against its declaration."""
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        key = f"{section}.{f.name}" if section else f.name
        value = _coerce(getattr(obj, f.name), hints[f.name], key)
        object.__setattr__(obj, f.name, value)   # frozen sections: only here, while they are built
        _check(value, f.metadata, key)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if get_origin(hint) is tuple:           # TOML arrays: model.maps = [8, 8]
        kind = get_args(hint)[0]
        if not isinstance(value, (list, tuple)) or not all(type(v) is kind or (kind is float and type(v) is int)
                                                           for v in value):
            whole = (kind is int and isinstance(value, (list, tuple)) and value
                     and all(type(v) in (int, float) and float(v).is_integer() for v in value))   # [8.0, 8]
            write = f"; write [{', '.join(str(int(v)) for v in value)}]" if whole else ""
            raise ConfigError(f"{key} must be a list of {kind.__name__}, got {value!r}{write}", key=key)
        return tuple(kind(v) for v in value)
    if hint == list[str]:
        if isinstance(value, str):        # `--set analysis.probes=lfw,digits`
            return [p.strip() for p in value.split(",") if p.strip()]
        if isinstance(value, (list, tuple)) and all(isinstance(p, str) for p in value):
            return list(value)
        raise ConfigError(f"{key} must be a list of strings, got {value!r}", key=key)
    if hint in (int, float, str, bool) and type(value) is not hint:
        quote = (f"; a name that reads as a number or date is quoted: --set '{key}=\"{value}\"'"
                 if hint is str and not isinstance(value, (list, dict)) else "")   # (a folder called 2024)
        quote += "; write true or false (TOML's, in lower case)" if hint is bool else ""   # (True, yes, 1: said bare)
        # (1e3 and 1000.0 are TOML's floats: the whole number is what was meant)
        meant = whole_number(value) if hint is int and isinstance(value, float) else None
        quote += f"; write {meant}" if meant is not None else ""
        raise ConfigError(f"{key} must be {hint.__name__}, got {value!r} ({type(value).__name__}){quote}", key=key)
    return value


def _check(value: Any, meta: Any, key: str) -> None:
    choices, within, forms = meta.get("choices", ()), meta.get("within"), meta.get("forms")
    if choices and value not in choices:
        raise ConfigError(f"{key} must be one of {', '.join(map(str, choices))}, got {value!r}{nearest(str(value), choices)}", key=key)
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, got {value}", key=key)
    if within is not None and isinstance(value, tuple):   # a per-stage list: every element
        if not all(v in within for v in value):
            raise ConfigError(f"every value of {key} must be {within.describe()}, got {list(value)}", key=key)
    elif within is not None and value not in within:
        raise ConfigError(f"{key} must be {within.describe()}, got {value!r}", key=key)
    if forms is not None:
        parse_spec(value, forms, key)


def _usage(forms: dict[str, Form]) -> str:
    return " | ".join(":".join([kind, *(name for name, _, _ in args)]) for kind, args in forms.items())


def parse_spec(text: str, forms: dict[str, Form], key: str) -> Spec:
    """``"uniform:0:4"`` -> ``Spec("uniform", (0.0, 4.0))``, each argument typed and in its interval."""
    kind, *raw = text.split(":")
    if kind not in forms:
        raise ConfigError(f"{key} {text!r}: unknown {kind!r}{nearest(kind, forms)}; use {_usage(forms)}", key=key)
    form = forms[kind]
    if len(raw) != len(form):
        raise ConfigError(f"{key} {text!r}: {kind!r} takes {plural(len(form), 'argument')}: {_usage({kind: form})}", key=key)
    args = []
    for part, (name, kind_type, within) in zip(raw, form):
        try:
            value = kind_type(part)
        except ValueError:
            write = _whole_spec(kind, raw, form) if kind_type is int else ""
            raise ConfigError(f"{key} {text!r}: {name} must be {'a whole number' if kind_type is int else 'a number'}, "
                              f"got {part!r}{write}", key=key) from None
        bounds = Interval.parse(within)
        if (isinstance(value, float) and not math.isfinite(value)) or value not in bounds:
            raise ConfigError(f"{key} {text!r}: {name} must be {'finite and ' if kind_type is float else ''}"
                              f"{bounds.describe()}, got {part}", key=key)
        args.append(value)
    return Spec(kind, tuple(args))


def _whole_spec(kind: str, raw: list[str], form: Form) -> str:
    """'; write bounded:2' for 'bounded:2.0', as ``--set cluster.workers=1e3`` is told 1000 (the refusal then
    says the spec to write): each whole-number argument written as one; "" where one is no whole number in its
    interval ('bounded:2.5', 'bounded:-2.0': what they meant is not known)."""
    meant = [whole_number(part) if kind_type is int else part for part, (_, kind_type, _) in zip(raw, form)]
    if any(m is None or (kind_type is int and m not in Interval.parse(within))
           for m, (_, kind_type, within) in zip(meant, form)):
        return ""
    return f"; write {':'.join([kind, *map(str, meant)])}"
