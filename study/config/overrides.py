"""Overrides: a dotted key (``model.decoder.norm``) and a value, checked against the field's type
and coerced so that equal values compare and hash equal (1 == 1.0 for a float, lists as tuples)."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import operator
import types
import typing
from typing import Any, Literal, get_args, get_origin, get_type_hints

from study.config.sections import MODEL_PRESETS, ConfigError, ExperimentConfig


# --------------------------------------------------------------------------------------------
# overrides: dotted key -> typed value
# --------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)  # resolving string annotations is slow; classes are fixed
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def config_keys(cls: type = ExperimentConfig, prefix: str = "") -> dict[str, Any]:
    """Every settable dotted key below ``cls`` with its type."""
    return dict(_config_keys(cls, prefix))


def _is_section(tp: Any) -> bool:
    """Whether ``tp`` is a config section (a dataclass); a plain bool, so types stay as declared."""
    return dataclasses.is_dataclass(tp)


@functools.lru_cache(maxsize=None)
def _config_keys(cls: type, prefix: str) -> dict[str, Any]:
    keys: dict[str, Any] = {}
    for name, tp in _hints(cls).items():
        if _is_section(tp):
            keys.update(_config_keys(tp, f"{prefix}{name}."))
        else:
            keys[f"{prefix}{name}"] = tp
    return keys


def suggest(word: str, choices: typing.Iterable[str]) -> str:
    """' (did you mean X?)' when a choice is close to ``word``, else ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def describe_type(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe_type(a) for a in get_args(tp))
    if origin is tuple:
        return f"a list of {describe_type(get_args(tp)[0])}"
    if tp is type(None):
        return "null"
    if _is_section(tp):
        return "a mapping with keys " + ", ".join(_hints(tp))
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(tp, str(tp))


def coerce(key: str, value: Any, tp: Any) -> Any:
    """``value`` as type ``tp``, or ConfigError. Integral numbers given for a float become
    floats, lists become tuples, so equal values always compare (and hash) equal."""
    if type(value) is tp and (tp is int or tp is str or tp is bool):  # what the checks below let through as is
        return value
    origin = get_origin(tp)

    def bad() -> ConfigError:  # built only when raised: describing the type is not free
        return ConfigError(key, value, describe_type(tp))

    if origin is Literal:
        if value in get_args(tp) and type(value) in {type(a) for a in get_args(tp)}:
            return value
        raise bad()
    if origin in (typing.Union, types.UnionType):
        for option in get_args(tp):
            try:
                return coerce(key, value, option)
            except ConfigError:
                pass
        raise bad()
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise bad()
        (item,) = [a for a in get_args(tp) if a is not Ellipsis]
        return tuple(coerce(f"{key}[{i}]", v, item) for i, v in enumerate(value))
    if _is_section(tp):
        if isinstance(value, tp):  # already coerced (a study file's values are checked twice)
            return value
        if not isinstance(value, dict):
            raise bad()
        hints = _hints(tp)
        for k in value:
            if k not in hints:
                raise ConfigError(f"{key}.{k}", value[k], "keys " + ", ".join(hints) + suggest(str(k), hints))
        missing = [
            k
            for k, f in ((f.name, f) for f in dataclasses.fields(tp))
            if k not in value and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise ConfigError(f"{key}.{missing[0]}", None, describe_type(hints[missing[0]]))
        return tp(**{k: coerce(f"{key}.{k}", v, hints[k]) for k, v in value.items()})
    if tp is type(None):
        if value is None:
            return None
        raise bad()
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad()
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad()
        if isinstance(value, float) and not value.is_integer():
            raise bad()
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad()
        return float(value)
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad()
    raise TypeError(f"unsupported config type {tp!r} at {key}")


def apply_overrides(cfg: ExperimentConfig, overrides: dict[str, Any]) -> ExperimentConfig:
    """A copy of ``cfg`` with each dotted key set to its (type-checked) value.

    A grid applies the same few values to the same sections many times: each top-level section's
    result is kept per (that section object, its overrides), so a variant whose every section
    was seen before is one ``replace``; anything not seen runs the checks in the overrides' order."""
    layout = _layout(tuple(overrides))
    if layout is None:  # an unknown key, or a top-level field's key with a dot
        return _apply(cfg, overrides)
    values = tuple(overrides.values())
    scalars = _SCALARS.issuperset(map(type, values))
    sections: dict[str, Any] = {}
    for name, keys, at in layout:
        if not keys:  # a top-level field (seed, task)
            try:
                sections[name] = coerce(name, values[at[0]], _config_keys(ExperimentConfig, "")[name])
                continue
            except ConfigError:
                return _apply(cfg, overrides)
        old = getattr(cfg, name)
        try:
            found = _SECTIONS.get(_memo_key(name, old, keys, [values[i] for i in at], scalars))
        except TypeError:  # a value that does not hash even frozen: no memo
            found = None
        if found is None or found[0] is not old:
            return _apply(cfg, overrides)
        sections[name] = found[1]
    return dataclasses.replace(cfg, **sections) if sections else cfg


@functools.lru_cache(maxsize=256)
def _layout(keys: tuple[str, ...]) -> tuple[tuple[str, tuple[str, ...], tuple[int, ...]], ...] | None:
    """Overrides' dotted keys grouped by top-level field, in order of first use: (name, the
    group's keys, their positions), the keys () for a top-level field; None for an unknown key or
    a top-level field's key with a dot (``_apply`` says which)."""
    top = _top_level()
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        name = key.partition(".")[0]
        if name not in top or (not top[name] and key != name):
            return None
        groups.setdefault(name, []).append(i)
    return tuple((name, tuple(keys[i] for i in at) if top[name] else (), tuple(at)) for name, at in groups.items())


def _memo_key(name: str, old: Any, keys: tuple[str, ...], values: list[Any], scalars: bool) -> tuple[Any, ...]:
    """The memo's key of a section's overrides: its values with their types (1, 1.0 and True
    apart), containers frozen (``scalars``: none is a container)."""
    if scalars:
        return (name, id(old), keys, tuple(values), tuple(map(type, values)))
    return (name, id(old), keys, tuple(map(_frozen, values)))


_SCALARS = frozenset({str, int, float, bool, type(None)})


@functools.cache
def _top_level() -> dict[str, bool]:
    """Each field of the experiment config: whether it is a section."""
    return {name: _is_section(tp) for name, tp in _hints(ExperimentConfig).items()}


# ``_memo_key`` (section, id(section object), its overrides) -> (that section object, the section
# with them applied)
_SECTIONS: dict[tuple[Any, ...], tuple[Any, Any]] = {}
_SECTIONS_MAX = 200_000  # cleared when full: a memo, not a store


def _frozen(value: Any) -> Any:
    """A hashable stand-in of an override's value that tells 1, 1.0 and True apart."""
    if isinstance(value, (list, tuple)):
        return (type(value), tuple(_frozen(v) for v in value))
    if isinstance(value, dict):
        return (dict, tuple((k, _frozen(v)) for k, v in value.items()))
    return (type(value), value)


def _apply(cfg: ExperimentConfig, overrides: dict[str, Any]) -> ExperimentConfig:
    """``apply_overrides`` without the memo (each value checked in order), filling the memo."""
    keys = _config_keys(ExperimentConfig, "")
    changes: dict[str, Any] = {}  # nested {section: {field: value}}: one replace per section
    for key, value in overrides.items():
        if key not in keys:
            raise ConfigError(key, value, "a key of the experiment config" + suggest(key, keys))
        *sections, name = key.split(".")
        node = changes
        for section in sections:
            node = node.setdefault(section, {})
        node[name] = coerce(key, value, keys[key])
    out = _set(cfg, changes)
    if len(_SECTIONS) > _SECTIONS_MAX:
        _SECTIONS.clear()
    scalars = _SCALARS.issuperset(map(type, overrides.values()))  # as apply_overrides spells its keys
    grouped: dict[str, list[tuple[str, Any]]] = {}
    for key, value in overrides.items():
        grouped.setdefault(key.partition(".")[0], []).append((key, value))
    for name, items in grouped.items():
        old = getattr(cfg, name)
        if not _is_section(old):
            continue
        try:
            memo_key = _memo_key(name, old, tuple(k for k, _ in items), [v for _, v in items], scalars)
            _SECTIONS[memo_key] = (old, getattr(out, name))
        except TypeError:
            continue
    return out


def _set(obj: Any, changes: dict[str, Any]) -> Any:
    """A copy of dataclass ``obj`` with nested ``changes`` (a dict marks a section)."""
    return dataclasses.replace(
        obj, **{name: _set(getattr(obj, name), v) if isinstance(v, dict) else v for name, v in changes.items()}
    )


def get_value(cfg: Any, key: str) -> Any:
    return _getter(key)(cfg)


@functools.lru_cache(maxsize=4096)
def _getter(key: str) -> Any:
    return operator.attrgetter(key)


def model_preset(name: str) -> ExperimentConfig:
    """The default experiment with the named model preset applied."""
    if name not in MODEL_PRESETS:
        raise ConfigError("preset", name, ", ".join(MODEL_PRESETS))
    return apply_overrides(ExperimentConfig(), MODEL_PRESETS[name])
