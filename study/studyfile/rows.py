"""The rows of a study's grid (the product of ``grid`` and each ``zip`` group, less ``exclude``)
and the names they give its variants (``norm=smc,LiteVAE-S``: the varied axes, shortest unique
key suffix, a preset bare). Names need no config: the study file's check of ``paper.baseline``
reads them before anything is expanded."""

from __future__ import annotations

import itertools
from typing import Any, Iterator

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
    groups: list[list[dict[str, Any]]] = [[{k: v} for v in values] for k, values in spec.grid.items()]
    for group in spec.zip:
        length = len(next(iter(group.values())))
        groups.append([{k: vals[i] for k, vals in group.items()} for i in range(length)])
    for combo in itertools.product(*groups):
        row: dict[str, Any] = {}
        for part in combo:
            row.update(part)
        yield row


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
    keys = varied(spec)
    shorts = short_keys(keys)
    texts: dict[tuple[str, type, Any], str] = {}  # each axis value's part of the name, spelled once

    def spelled(k: str, value: Any) -> str:
        return format_value(value) if k == PRESET_KEY else f"{shorts[k]}={format_value(value)}"

    def part(k: str, value: Any) -> str:
        if isinstance(value, (list, dict)):  # not hashable: spelled each time
            return spelled(k, value)
        key = (k, type(value), value)
        if key not in texts:
            texts[key] = spelled(k, value)
        return texts[key]

    for row in rows(spec):
        yield ",".join([part(k, row[k]) for k in keys]) or spec.study, row


def variant_names(spec: StudyFile) -> list[str]:
    """Every name a variant of the study has before expansion: grid rows, named variants, or the
    study's own name (base alone), in order; a later duplicate is an alias of the first."""
    names = [name for name, _ in named_rows(spec)] if (spec.grid or spec.zip) else []
    names += list(spec.variants)
    if not names and not (spec.grid or spec.zip):
        names.append(spec.study)
    return list(dict.fromkeys(names))
