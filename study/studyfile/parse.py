"""Study files: YAML -> a validated ``StudyFile``.

A study file names a base experiment and the axes to vary (README.md, "Study files"). Every
dotted key is checked against the experiment config (study/config/) while loading, so a typo
or a bad value is reported with the file, the key path, the value and what is allowed before
anything runs. Expansion into concrete variants is study/studyfile/grid.py's job.

Override mappings (``set``, each named variant, each profile, the base file) accept dotted keys
(``model.decoder.norm: smc``), nested sections (``model: {decoder: {norm: smc}}``) and the
pseudo-key ``preset`` naming a model preset of Tables 2/3 (``preset: LiteVAE-S``), which is
applied before the other keys of its mapping.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from study import config as cfgmod
from study.paper import REFERENCE_TABLE, paper_tables
from study.studyfile.document import PRESET_KEY, SEED_KEY, PaperRef, Resources, StudyFile
from study.studyfile.rows import variant_names
from study.studyfile.yamlfile import StudyFileError, _StrictLoader, read_yaml

STUDY_NAME = re.compile(r"^[a-z0-9_-]+$")
TOP_KEYS = (
    "study",
    "description",
    "paper",
    "base",
    "set",
    "grid",
    "zip",
    "variants",
    "exclude",
    "seeds",
    "profiles",
    "resources",
)


# --------------------------------------------------------------------------------------------
# override mappings
# --------------------------------------------------------------------------------------------
_KEYS = cfgmod.config_keys()
_SECTIONS = {k.rsplit(".", i)[0] for k in _KEYS for i in range(1, k.count(".") + 1)}


def _flatten(path: Path, where: str, mapping: Any) -> dict[str, Any]:
    """Nested sections and dotted keys -> {dotted key: value}; a key reached twice is an error."""
    if not isinstance(mapping, dict):
        raise StudyFileError(path, where, mapping, "a mapping of config keys to values")
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: dict) -> None:
        for key, value in node.items():
            if not isinstance(key, str):
                raise StudyFileError(path, f"{where}.{key}", key, "string keys")
            full = f"{prefix}{key}"
            if full in _SECTIONS and isinstance(value, dict):
                walk(full + ".", value)
                continue
            if full in flat:
                raise StudyFileError(path, f"{where}.{full}", value, "each key once per mapping")
            flat[full] = value

    walk("", mapping)
    return flat


def _check_key(path: Path, where: str, key: str) -> None:
    """``where`` is the key path that ends with ``key`` (e.g. ``set.model.decoder.norm``)."""
    if key == PRESET_KEY or key in _KEYS:
        return
    if key in _SECTIONS:
        raise StudyFileError(
            path, where, key, "a leaf key below this section, e.g. " + next(k for k in _KEYS if k.startswith(key + "."))
        )
    raise StudyFileError(
        path, where, key, "a key of the experiment config" + cfgmod.suggest(key, list(_KEYS) + [PRESET_KEY])
    )


def check_value(path: Path, where: str, key: str, value: Any) -> Any:
    """The value coerced to the key's type (so 1 and 1.0 agree), or StudyFileError."""
    _check_key(path, where, key)
    if key == PRESET_KEY:
        if not isinstance(value, str) or value not in cfgmod.MODEL_PRESETS:
            raise StudyFileError(
                path,
                where,
                value,
                "one of "
                + ", ".join(cfgmod.MODEL_PRESETS)
                + (cfgmod.suggest(value, cfgmod.MODEL_PRESETS) if isinstance(value, str) else ""),
            )
        return value
    try:
        coerced = cfgmod.coerce(key, value, _KEYS[key])
    except cfgmod.ConfigError as e:
        # e.key is ``key`` or a path below it (``train.stages[0].steps``): where + the rest
        sub = e.key[len(key) :] if e.key.startswith(key) else f".{e.key}"
        raise StudyFileError(path, where + sub, e.value, e.allowed) from None
    if key == SEED_KEY and coerced < 0:  # as the `seeds` list requires
        raise StudyFileError(path, where, value, "a non-negative integer")
    return coerced


def _overrides(path: Path, where: str, mapping: Any) -> dict[str, Any]:
    flat = _flatten(path, where, mapping)
    out = {}
    for key, value in flat.items():
        out[key] = check_value(path, f"{where}.{key}", key, value)
    if PRESET_KEY in out:  # the preset first, then the mapping's own keys on top
        out = {PRESET_KEY: out.pop(PRESET_KEY), **out}
    return out


def resolve(overrides: dict[str, Any]) -> dict[str, Any]:
    """Overrides with ``preset`` replaced by the preset's own dotted keys."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        if key == PRESET_KEY:
            out.update(cfgmod.MODEL_PRESETS[value])
        else:
            out[key] = value
    return out


# --------------------------------------------------------------------------------------------
# the study file
# --------------------------------------------------------------------------------------------
def _refuse_seed(path: Path, where: str, key: str) -> None:
    """``seed`` is the one key a study sets through its top-level ``seeds`` list: an override of
    it in ``set``, the base file, a variant or an axis would be replaced by that list."""
    if key == SEED_KEY:
        raise StudyFileError(
            path,
            where,
            key,
            "config keys other than `seed` here; the study's seeds "
            "are its top-level `seeds` list (e.g. seeds: [0, 1, 2])",
        )


def _overrides_without_seed(path: Path, where: str, mapping: Any) -> dict[str, Any]:
    out = _overrides(path, where, mapping)
    if SEED_KEY in out:
        _refuse_seed(path, f"{where}.{SEED_KEY}", SEED_KEY)
    return out


def _axis(path: Path, where: str, key: Any, values: Any, distinct: bool = True) -> tuple[str, list[Any]]:
    if not isinstance(key, str):
        raise StudyFileError(path, f"{where}.{key}", key, "a dotted config key")
    _check_key(path, f"{where}.{key}", key)
    _refuse_seed(path, f"{where}.{key}", key)
    if not isinstance(values, list):
        raise StudyFileError(path, f"{where}.{key}", values, "a list of values for the axis")
    if not values:
        raise StudyFileError(path, f"{where}.{key}", values, "at least one value")
    checked = [check_value(path, f"{where}.{key}[{i}]", key, v) for i, v in enumerate(values)]
    seen = []
    for i, v in enumerate(checked):
        if distinct and v in seen:
            raise StudyFileError(path, f"{where}.{key}[{i}]", values[i], "distinct values per axis")
        seen.append(v)
    return key, checked


def load_study(path: str | Path) -> StudyFile:
    """Read and validate a study file; every problem is a StudyFileError."""
    path = Path(path)
    doc = read_yaml(path)
    _check_top(path, doc)
    study = doc.get("study")
    if not isinstance(study, str) or not STUDY_NAME.match(study):
        raise StudyFileError(path, "study", study, "a name of lowercase letters, digits, '_' and '-'")
    description = doc.get("description", "")
    if not isinstance(description, str):
        raise StudyFileError(path, "description", description, "a string")

    base = _base(path, doc["base"]) if "base" in doc else {}
    fixed = _overrides_without_seed(path, "set", doc.get("set") or {}) if "set" in doc else {}
    grid = _grid(path, doc["grid"]) if "grid" in doc else {}
    zips = _zips(path, doc["zip"]) if "zip" in doc else []
    _check_axes_vary_once(path, grid, zips, fixed)
    variants = _variants(path, doc["variants"]) if "variants" in doc else {}
    axis_values = grid | {k: v for group in zips for k, v in group.items()}
    exclude = _exclude(path, doc["exclude"], axis_values) if "exclude" in doc else []
    seeds = _seeds(path, doc["seeds"]) if "seeds" in doc else (0,)
    profiles = _profiles(path, doc["profiles"]) if "profiles" in doc else {}
    resources = _resources(path, doc["resources"]) if "resources" in doc else Resources()
    paper = _paper(path, doc["paper"]) if "paper" in doc else None
    if not grid and not zips and not variants and ("grid" in doc or "zip" in doc):
        raise StudyFileError(path, "grid", {}, "at least one axis or named variant")
    spec = StudyFile(
        path=path,
        study=study,
        description=description,
        paper=paper,
        base=base,
        set=fixed,
        grid=grid,
        zip=zips,
        variants=variants,
        exclude=exclude,
        seeds=seeds,
        profiles=profiles,
        resources=resources,
    )
    _check_baseline(spec)
    return spec


def _check_baseline(spec: StudyFile) -> None:
    """``paper.baseline`` and every key of ``paper.rows`` name a variant of the study (a grid
    row's name or a named variant)."""
    if spec.paper is None or (spec.paper.baseline is None and not spec.paper.rows):
        return
    names = variant_names(spec)
    if spec.paper.baseline is not None and spec.paper.baseline not in names:
        raise StudyFileError(spec.path, "paper.baseline", spec.paper.baseline, "a variant name: " + ", ".join(names))
    for key in spec.paper.rows or {}:
        if key not in names:
            raise StudyFileError(spec.path, f"paper.rows.{key}", key, "a variant name: " + ", ".join(names))


def _check_top(path: Path, doc: Any) -> None:
    if not isinstance(doc, dict):
        raise StudyFileError(path, "<top>", doc, "a mapping with keys " + ", ".join(TOP_KEYS))
    for key in doc:
        if key not in TOP_KEYS:
            raise StudyFileError(
                path, str(key), doc[key], "top-level keys " + ", ".join(TOP_KEYS) + cfgmod.suggest(str(key), TOP_KEYS)
            )


def _base(path: Path, raw: Any) -> dict[str, Any]:
    """The base experiment file's overrides (its path relative to the study file)."""
    if not isinstance(raw, str):
        raise StudyFileError(path, "base", raw, "a path to a base experiment file")
    base_path = (path.parent / raw).resolve()
    if not base_path.is_file():
        raise StudyFileError(path, "base", raw, f"an existing file (looked at {base_path})")
    base_doc = read_yaml(base_path)
    return _overrides_without_seed(base_path, "base", base_doc if base_doc is not None else {})


def _grid(path: Path, raw: Any) -> dict[str, list[Any]]:
    if not isinstance(raw, dict) or not raw:
        raise StudyFileError(path, "grid", raw, "a non-empty mapping of axis -> list of values")
    return dict(_axis(path, "grid", key, values) for key, values in raw.items())


def _zips(path: Path, raw: Any) -> list[dict[str, list[Any]]]:
    """Groups of axes varied in lock-step: equal lengths, distinct rows."""
    if not isinstance(raw, list) or not raw:
        raise StudyFileError(path, "zip", raw, "a non-empty list of mappings of axis -> values")
    zips = []
    for i, group in enumerate(raw):
        where = f"zip[{i}]"
        if not isinstance(group, dict) or not group:
            raise StudyFileError(path, where, group, "a non-empty mapping of axis -> list of values")
        checked = dict(_axis(path, where, k, v, distinct=False) for k, v in group.items())
        lengths = {k: len(v) for k, v in checked.items()}
        if len(set(lengths.values())) > 1:
            raise StudyFileError(path, where, lengths, "axes of equal length (they vary in lock-step)")
        rows = list(zip(*checked.values()))
        for j, row in enumerate(rows):
            if row in rows[:j]:
                raise StudyFileError(path, f"{where}[{j}]", dict(zip(checked, row)), "distinct rows")
        zips.append(checked)
    return zips


def _check_axes_vary_once(
    path: Path, grid: dict[str, list[Any]], zips: list[dict[str, list[Any]]], fixed: dict[str, Any]
) -> None:
    """Each axis in one place only: not in the grid and a zip group, not in two groups, not
    also fixed under ``set``."""
    seen_axes: list[str] = list(grid)
    for i, group in enumerate(zips):
        for key in group:
            if key in seen_axes or key in fixed:
                raise StudyFileError(path, f"zip[{i}].{key}", key, "an axis varied in one place only")
            seen_axes.append(key)
    for key in grid:
        if key in fixed:
            raise StudyFileError(path, f"grid.{key}", key, "a key not also fixed under `set`")


def _variants(path: Path, raw: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(raw, dict) or not raw:
        raise StudyFileError(path, "variants", raw, "a non-empty mapping of name -> overrides")
    variants = {}
    for name, overrides in raw.items():
        if not isinstance(name, str) or not STUDY_NAME.match(name):
            raise StudyFileError(
                path, f"variants.{name}", name, "a variant name of lowercase letters, digits, '_' and '-'"
            )
        variants[name] = _overrides_without_seed(path, f"variants.{name}", overrides or {})
    return variants


def _exclude(path: Path, raw: Any, axis_values: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Exclusions: each a mapping of axes of grid or zip to one of their values."""
    if not isinstance(raw, list) or not raw:
        raise StudyFileError(path, "exclude", raw, "a non-empty list of mappings axis -> value")
    exclude = []
    for i, entry in enumerate(raw):
        where = f"exclude[{i}]"
        if not isinstance(entry, dict) or not entry:
            raise StudyFileError(path, where, entry, "a non-empty mapping of axis -> value")
        checked = {}
        for key, value in entry.items():
            if key not in axis_values:
                allowed = "an axis of grid or zip: " + (", ".join(axis_values) or "(none)")
                raise StudyFileError(path, f"{where}.{key}", key, allowed + cfgmod.suggest(str(key), axis_values))
            value = check_value(path, f"{where}.{key}", key, value)
            if value not in axis_values[key]:
                raise StudyFileError(
                    path, f"{where}.{key}", value, "one of the axis values " + ", ".join(map(repr, axis_values[key]))
                )
            checked[key] = value
        exclude.append(checked)
    return exclude


def _seeds(path: Path, raw: Any) -> tuple[int, ...]:
    if (
        not isinstance(raw, list)
        or not raw
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in raw)
    ):
        raise StudyFileError(path, "seeds", raw, "a non-empty list of non-negative integers")
    if len(set(raw)) != len(raw):
        raise StudyFileError(path, "seeds", raw, "distinct seeds")
    return tuple(raw)


def _profiles(path: Path, raw: Any) -> dict[str, dict[str, Any]]:
    """Named override sets chosen with --profile (a ``seed`` in one replaces the seeds list)."""
    if not isinstance(raw, dict):
        raise StudyFileError(path, "profiles", raw, "a mapping of profile name -> overrides")
    profiles = {}
    for name, overrides in raw.items():
        if not isinstance(name, str) or not STUDY_NAME.match(name):
            raise StudyFileError(path, f"profiles.{name}", name, "a profile name of [a-z0-9_-]")
        profiles[name] = _overrides(path, f"profiles.{name}", overrides or {})
    return profiles


def _resources(path: Path, raw: Any) -> Resources:
    try:
        resources = cfgmod.coerce("resources", raw, Resources)
    except cfgmod.ConfigError as e:
        raise StudyFileError(path, e.key, e.value, e.allowed) from None
    _check_resources(path, resources)
    return resources


def resource_problem(r: Resources) -> tuple[str, Any, str] | None:
    """The first invalid field of ``r`` as (key path, value, allowed), or None. Shared by the
    study file's check and the launcher's check of command-line overrides."""
    for key in ("cpus_per_gpu", "mem_gb", "timeout_min", "nodes", "array_parallelism"):
        if getattr(r, key) < 1:
            return f"resources.{key}", getattr(r, key), "an integer >= 1"
    for key in ("gpus", "max_requeue"):
        if getattr(r, key) < 0:
            return f"resources.{key}", getattr(r, key), "an integer >= 0"
    for i, arg in enumerate(r.sbatch):
        if not re.match(r"^--[a-z][a-z0-9-]*(=.+)?$", arg):
            return f"resources.sbatch[{i}]", arg, "an sbatch option like '--exclusive' or '--key=value'"
    return None


def _check_resources(path: Path, r: Resources) -> None:
    problem = resource_problem(r)
    if problem:
        raise StudyFileError(path, *problem)


def _paper(path: Path, raw: Any) -> PaperRef:
    if not isinstance(raw, dict) or "table" not in raw:
        raise StudyFileError(path, "paper", raw, "a mapping with `table` (and optional `rows`, `baseline`)")
    for key in raw:
        if key not in ("table", "rows", "baseline"):
            raise StudyFileError(path, f"paper.{key}", raw[key], "keys table, rows, baseline")
    table = str(raw["table"])
    if table not in paper_tables() and table != REFERENCE_TABLE:
        raise StudyFileError(
            path,
            "paper.table",
            raw["table"],
            "a paper table: "
            + ", ".join(paper_tables())
            + f", or {REFERENCE_TABLE} (the published numbers of other autoencoders)",
        )
    rows = raw.get("rows") or {}
    if not isinstance(rows, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in rows.items()):
        raise StudyFileError(path, "paper.rows", rows, "a mapping of variant name -> paper row label")
    baseline = raw.get("baseline")
    if baseline is not None and not isinstance(baseline, str):
        raise StudyFileError(path, "paper.baseline", baseline, "a variant name (a string)")
    return PaperRef(table=table, rows=dict(rows), baseline=baseline)


def with_profile(spec: StudyFile, profile: str | None) -> dict[str, Any]:
    """The overrides of the chosen profile ({} for none); an unknown profile is an error."""
    if profile is None:
        return {}
    if profile not in spec.profiles:
        raise StudyFileError(
            spec.path, "profiles", profile, "a profile of this study: " + (", ".join(spec.profiles) or "(none defined)")
        )
    return spec.profiles[profile]


def parse_sets(path: Path, items: list[str]) -> dict[str, Any]:
    """Command-line ``--set KEY=VALUE`` overrides (VALUE read as YAML), checked like the file's."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise StudyFileError(path, "--set", item, "KEY=VALUE, e.g. train.steps=20")
        try:
            value = yaml.load(text, Loader=_StrictLoader)
        except yaml.YAMLError:
            raise StudyFileError(path, f"--set {key}", text, "a YAML value") from None
        out[key] = check_value(path, f"--set {key}", key, value)
    return out
