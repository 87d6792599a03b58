"""The rows of a study's grid (the product of ``grid`` and each ``zip`` group, less ``exclude``)
and the names they give its variants (``norm=smc,LiteVAE-S``: the varied axes, shortest unique
key suffix, a preset bare). Names need no config: the study file's check of ``paper.baseline``
reads them before anything is expanded."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

from study.studyfile.document import PRESET_KEY, StudyFile


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "-".join(format_value(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def short_keys(keys: list[str]) -> dict[str, str]:
    """The shortest dotted suffix of each key that is unique among ``keys``."""
    out = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            suffix = ".".join(parts[-n:])
            if sum(1 for k in keys if k == suffix or k.endswith("." + suffix)) == 1:
                out[key] = suffix
                break
        else:
            out[key] = key
    return out


def all_rows(spec: StudyFile) -> Iterator[dict[str, Any]]:
    """Axis assignments of the grid x zip product, in file order (first axis slowest)."""
    return (row for _, row in _product(spec, lambda key, values: ""))


def _groups(spec: StudyFile) -> list[tuple[tuple[str, ...], list[tuple[Any, ...]]]]:
    """Each axis of ``grid`` and each ``zip`` group: its keys and its values, a tuple per option."""
    groups: list[tuple[tuple[str, ...], list[tuple[Any, ...]]]] = [
        ((k,), [(v,) for v in values]) for k, values in spec.grid.items()
    ]
    for group in spec.zip:
        length = len(next(iter(group.values())))
        groups.append((tuple(group), [tuple(vals[i] for vals in group.values()) for i in range(length)]))
    return groups


def _product(
    spec: StudyFile, spell: Callable[[tuple[str, ...], tuple[Any, ...]], str]
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(the parts of its name, row) of each row of the grid x zip product, in file order: each
    group's option spelled once (``spell(keys, values)``; "" adds no part)."""
    groups = _groups(spec)
    keys = [k for group_keys, _ in groups for k in group_keys]
    options = [[(values, spell(group_keys, values)) for values in group] for group_keys, group in groups]
    for combo in itertools.product(*options):
        values = [v for option in combo for v in option[0]]
        yield ",".join([option[1] for option in combo if option[1]]), dict(zip(keys, values))


def excluded(row: dict[str, Any], exclude: list[dict[str, Any]]) -> bool:
    return any(all(row[k] == v for k, v in entry.items()) for entry in exclude)


def rows(spec: StudyFile) -> Iterator[dict[str, Any]]:
    """The rows that ``exclude`` leaves, in file order."""
    return (row for row in all_rows(spec) if not excluded(row, spec.exclude))


def varied(spec: StudyFile) -> list[str]:
    """Axes with more than one value: the ones that name a variant."""
    return [k for k in spec.axes if len(spec.grid.get(k) or next(g[k] for g in spec.zip if k in g)) > 1]


def named_rows(spec: StudyFile) -> Iterator[tuple[str, dict[str, Any]]]:
    """(name, row) of each row ``exclude`` leaves: the varied axes' values, or the study's name."""
    shorts = short_keys(varied(spec))

    def spelled(k: str, value: Any) -> str:
        return format_value(value) if k == PRESET_KEY else f"{shorts[k]}={format_value(value)}"

    def spell(keys: tuple[str, ...], values: tuple[Any, ...]) -> str:
        return ",".join([spelled(k, v) for k, v in zip(keys, values) if k in shorts])

    for name, row in _product(spec, spell):
        if not spec.exclude or not excluded(row, spec.exclude):
            yield name or spec.study, row


def variant_names(spec: StudyFile) -> list[str]:
    """Every name a variant of the study has before expansion: grid rows, named variants, or the
    study's own name (base alone), in order; a later duplicate is an alias of the first."""
    names = [name for name, _ in named_rows(spec)] if (spec.grid or spec.zip) else []
    names += list(spec.variants)
    if not names and not (spec.grid or spec.zip):
        names.append(spec.study)
    return list(dict.fromkeys(names))
