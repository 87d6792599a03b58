"""A run's identity: the fields that define what is trained, as canonical JSON, and its hash.

Which fields count, and when one is left out, each field declares in study/config/sections.py
(study/config/fields.py); this module reads the declarations, it lists no field.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from study.config import fields
from study.config.checks import validate
from study.config.overrides import _is_section, coerce
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
    (``study.kinds``: an autoencoder run drops ``task`` and ``diffusion``)."""
    d = to_dict(cfg, identity_only=True)
    del d["eval"]
    _omit_declared(cfg, d, cfg)
    return d


def identity_hash(identity: dict[str, Any]) -> str:
    """12 hex digits of the sha256 of an identity's canonical JSON: a run's id."""
    return hashlib.sha256(canonical_json(identity).encode()).hexdigest()[:12]


def canonical_json(obj: Any) -> str:
    """Sorted keys, no spaces, floats by repr: one spelling for equal configs."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)
