"""A run's identity: the fields that define what is trained, as canonical JSON, and its hash.

Which fields count, and when one is left out, each field declares in study/config/sections.py
(study/config/fields.py); this module reads the declarations, it lists no field.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import operator
from collections.abc import Callable
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

from study.config import fields
from study.config.checks import validate
from study.config.overrides import _hints, _is_section, coerce
from study.config.sections import ExperimentConfig

_LEAF_TYPES = frozenset({str, int, float, bool, type(None)})


def to_dict(cfg: Any, identity_only: bool = False) -> Any:
    """Plain nested dicts and lists (tuples as lists), optionally without non-identity fields."""
    if type(cfg) in _LEAF_TYPES:
        return cfg
    if _is_section(cfg):  # leaves inline: this runs once per variant id
        return {
            name: v if type(v := getattr(cfg, name)) in _LEAF_TYPES else to_dict(v, identity_only)
            for name, ident in _fields(_class_of(cfg))
            if ident or not identity_only
        }
    if isinstance(cfg, (tuple, list)):
        return [v if type(v) in _LEAF_TYPES else to_dict(v, identity_only) for v in cfg]
    return cfg


def _class_of(obj: Any) -> Any:
    return type(obj)


@functools.lru_cache(maxsize=None)
def _fields(cls: Any) -> tuple[tuple[str, bool], ...]:
    """(name, is an identity field) of each field of a config dataclass."""
    return tuple((f.name, f.metadata.get(fields.IDENTITY, True)) for f in dataclasses.fields(cls))


@dataclass(frozen=True)
class _Omission:
    """A field's declared rule for leaving it out of the id (see study/config/fields.py)."""

    name: str
    at: tuple[Any, ...]  # () or (the value at which it is left out, as in to_dict)
    when: tuple[fields.Condition, ...]

    def applies(self, value: Any, cfg: ExperimentConfig) -> bool:
        return bool(self.at and value == self.at[0]) or bool(self.when and all(c.holds(cfg) for c in self.when))


@functools.lru_cache(maxsize=None)
def _omissions(cls: Any) -> tuple[_Omission, ...]:
    """The declared omissions of the identity fields of a config dataclass."""
    out = []
    for f in dataclasses.fields(cls):
        at = (to_dict(f.metadata[fields.OMIT_AT]),) if fields.OMIT_AT in f.metadata else ()
        when = f.metadata.get(fields.OMIT_WHEN, ())
        if f.metadata.get(fields.IDENTITY, True) and (at or when):
            out.append(_Omission(f.name, at, when))
    return tuple(out)


def _omit_declared(section: Any, d: dict[str, Any], cfg: ExperimentConfig) -> None:
    """Delete from ``d`` (``section`` as ``to_dict`` wrote it) the fields whose declared
    omission applies, in every section below it."""
    for rule in _omissions(_class_of(section)):
        if rule.applies(d[rule.name], cfg):
            del d[rule.name]
    for name, value in d.items():
        if isinstance(value, dict):
            _omit_declared(getattr(section, name), value, cfg)


def from_dict(data: dict[str, Any]) -> ExperimentConfig:
    """The inverse of ``to_dict`` (for configs read back from a run folder)."""
    return validate(coerce("config", data, ExperimentConfig))


def identity(cfg: ExperimentConfig) -> dict[str, Any]:
    """Every field that can define a run, without the eval protocol, the fields declared not
    identity and those whose declared omission applies; a run's kind keeps its part of it
    (``study.kinds``: an autoencoder run drops ``task`` and ``diffusion``).

    Its sections are read-only (``Section``): each is kept per (section object, the truth of the
    conditions its omissions name), with its canonical JSON, so that the variants of a grid,
    which share a few hundred section objects, are spelled and hashed from those."""
    d: dict[str, Any] = {}
    cls = _class_of(cfg)
    truths = tuple((get(cfg) in values) == among for get, values, among in _tests(cls))  # each condition, once
    for name, section in _top_fields(cls):
        value = getattr(cfg, name)
        if section:
            d[name] = _section(value, cfg, truths)
        else:
            d[name] = value if type(value) in _LEAF_TYPES else to_dict(value, True)
    for rule in _omissions(cls):  # a section compared as written, as to_dict writes it
        value = d[rule.name]
        if rule.applies(to_dict(getattr(cfg, rule.name), True) if type(value) is Section else value, cfg):
            del d[rule.name]
    return d


@functools.lru_cache(maxsize=None)
def _top_fields(cls: Any) -> tuple[tuple[str, bool], ...]:
    """(name, is a section) of each identity field of an experiment config class but ``eval``."""
    hints = _hints(cls)
    return tuple((name, _is_section(hints[name])) for name, ident in _fields(cls) if ident and name != "eval")


class Section(dict):  # type: ignore[type-arg]
    """A section of an identity: a dict that may not change, with its canonical JSON kept."""

    json: str

    def _read_only(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("an identity's section is read-only; copy it with dict(...)")

    __setitem__ = __delitem__ = pop = popitem = clear = update = setdefault = __ior__ = _read_only  # type: ignore[assignment]

    def __reduce__(self) -> Any:  # copies and pickles are plain dicts
        return (dict, (dict(self),))


def _frozen(d: dict[str, Any]) -> Section:
    out = Section({k: _frozen(v) if isinstance(v, dict) else v for k, v in d.items()})
    out.json = canonical_json(dict(out))
    return out


@functools.lru_cache(maxsize=None)
def _conditions(cls: Any) -> tuple[fields.Condition, ...]:
    """The distinct conditions the omissions of ``cls`` and the sections below it name."""
    found = [c for rule in _omissions(cls) for c in rule.when]
    for f in dataclasses.fields(cls):
        tp = _hints(cls)[f.name]
        if _is_section(tp):
            found += _conditions(tp)
    return tuple(dict.fromkeys(found))


@functools.lru_cache(maxsize=None)
def _tests(cls: Any) -> tuple[tuple[Callable[[Any], Any], tuple[Any, ...], bool], ...]:
    """``_conditions(cls)`` as (getter, values, among): ``Condition.holds``, its key read once."""
    return tuple((operator.attrgetter(c.key), c.values, c.among) for c in _conditions(cls))


_SECTIONS: dict[tuple[int, tuple[bool, ...]], tuple[Any, Section]] = {}
_SECTIONS_MAX = 100_000  # cleared when full: a memo, not a store


def _section(section: Any, cfg: ExperimentConfig, truths: tuple[bool, ...]) -> Section:
    """The identity of one top-level section of ``cfg``, its declared omissions applied; kept
    per (section object, ``truths``: the truth of every condition an omission of the config
    names, ``_conditions(ExperimentConfig)``, those of this section among them)."""
    key = (id(section), truths)
    found = _SECTIONS.get(key)
    if found is not None and found[0] is section:
        return found[1]
    d = to_dict(section, identity_only=True)
    _omit_declared(section, d, cfg)
    if len(_SECTIONS) >= _SECTIONS_MAX:
        _SECTIONS.clear()
    out = _frozen(d)
    _SECTIONS[key] = (section, out)
    return out


def identity_hash(identity: dict[str, Any]) -> str:
    """12 hex digits of the sha256 of an identity's canonical JSON: a run's id."""
    return hashlib.sha256(canonical_json(identity).encode()).hexdigest()[:12]


def canonical_json(obj: Any) -> str:
    """Sorted keys, no spaces, floats by repr: one spelling for equal configs (a ``Section``
    inside is spelled as kept: JSON nests, so the whole spells the same)."""
    if type(obj) is dict and Section in map(type, obj.values()):
        return "{" + ",".join([key + _spelled(obj[k]) for k, key in _keys(tuple(obj))]) + "}"
    return _dumps(obj)


def _spelled(value: Any) -> str:
    kind = type(value)
    if kind is Section:
        return value.json
    if kind is int or kind is str:  # json.dumps' spelling, without its encoder's set-up
        return str(value) if kind is int else encode_basestring_ascii(value)  # type: ignore[no-any-return]
    return canonical_json(value)


@functools.lru_cache(maxsize=1024)
def _keys(keys: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """(key, its JSON and a colon) of each key, sorted."""
    return tuple((k, _dumps(k) + ":") for k in sorted(keys))


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)
