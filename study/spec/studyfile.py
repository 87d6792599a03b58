"""Study files: YAML -> a validated ``StudySpec``.

A study file names a base experiment and the axes to vary (DESIGN.md, "The study file"). Every
dotted key is checked against the experiment config (study/config.py) while loading, so a typo
or a bad value is reported with the file, the key path, the value and what is allowed before
anything runs. Expansion into concrete variants is study/grid.py's job.

Override mappings (``set``, each named variant, each profile, the base file) accept dotted keys
(``model.decoder.norm: smc``), nested sections (``model: {decoder: {norm: smc}}``) and the
pseudo-key ``preset`` naming a model preset of Tables 2/3 (``preset: LiteVAE-S``), which is
applied before the other keys of its mapping.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from study import config as C
from study.paper import paper_tables

STUDY_NAME = re.compile(r"^[a-z0-9_-]+$")
TOP_KEYS = ("study", "description", "paper", "base", "set", "grid", "zip", "variants", "exclude",
            "seeds", "profiles", "resources")
PRESET_KEY = "preset"


class StudySpecError(ValueError):
    """A malformed study file. The one-line message names the file, the key path, the value
    and what is allowed."""

    def __init__(self, path: Path | str, key: str, value: Any, allowed: str):
        self.path, self.key, self.value, self.allowed = str(path), key, value, allowed
        super().__init__(f"{self.path}: {key}: got {_show(value)}; allowed: {allowed}")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


@dataclass(frozen=True)
class Resources:
    """What one variant asks of the cluster (not part of its id)."""

    gpus: int = 1
    cpus_per_gpu: int = 8
    mem_gb: int = 64
    timeout_min: int = 1440
    nodes: int = 1
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    array_parallelism: int = 256
    max_requeue: int = 3
    sbatch: tuple[str, ...] = ()  # extra "--key=value" sbatch parameters


@dataclass(frozen=True)
class PaperRef:
    """The paper table a study reproduces; ``rows`` maps variant names to the table's rows."""

    table: str
    rows: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StudySpec:
    path: Path
    study: str
    description: str = ""
    paper: PaperRef | None = None
    base: dict[str, Any] = field(default_factory=dict)       # dotted overrides from `base`
    set: dict[str, Any] = field(default_factory=dict)        # dotted overrides
    grid: dict[str, list[Any]] = field(default_factory=dict)  # axis -> values
    zip: list[dict[str, list[Any]]] = field(default_factory=list)
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    exclude: list[dict[str, Any]] = field(default_factory=list)
    seeds: tuple[int, ...] = (0,)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    resources: Resources = field(default_factory=Resources)

    @property
    def axes(self) -> list[str]:
        """The keys varied by ``grid`` and ``zip``, in file order."""
        return list(self.grid) + [k for group in self.zip for k in group]


# --------------------------------------------------------------------------------------------
# YAML with duplicate keys rejected
# --------------------------------------------------------------------------------------------
class _DuplicateKey(Exception):
    def __init__(self, key: Any, line: int):
        self.key, self.line = key, line


class _StrictLoader(yaml.SafeLoader):
    """The safe loader, refusing a key given twice in one mapping."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise _DuplicateKey(key, key_node.start_mark.line + 1)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# YAML 1.1 (PyYAML) reads 1e-4 and 1e5 as strings: it wants a dot and a signed exponent. Read
# them as numbers, as YAML 1.2 and every researcher do (`train.lr: 1e-4` must mean 0.0001).
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def read_yaml(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as e:
        raise StudySpecError(path, "<file>", str(path), f"a readable study file ({e.strerror})") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except _DuplicateKey as e:
        raise StudySpecError(path, str(e.key), f"a second {e.key!r} at line {e.line}",
                             "each key once per mapping") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "<file>"
        raise StudySpecError(path, where, getattr(e, "problem", str(e)), "valid YAML") from None


# --------------------------------------------------------------------------------------------
# override mappings
# --------------------------------------------------------------------------------------------
_KEYS = C.config_keys()
_SECTIONS = {k.rsplit(".", i)[0] for k in _KEYS for i in range(1, k.count(".") + 1)}


def _flatten(path: Path, where: str, mapping: Any) -> dict[str, Any]:
    """Nested sections and dotted keys -> {dotted key: value}; a key reached twice is an error."""
    if not isinstance(mapping, dict):
        raise StudySpecError(path, where, mapping, "a mapping of config keys to values")
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: dict) -> None:
        for key, value in node.items():
            if not isinstance(key, str):
                raise StudySpecError(path, f"{where}.{key}", key, "string keys")
            full = f"{prefix}{key}"
            if full in _SECTIONS and isinstance(value, dict):
                walk(full + ".", value)
                continue
            if full in flat:
                raise StudySpecError(path, f"{where}.{full}", value, "each key once per mapping")
            flat[full] = value

    walk("", mapping)
    return flat


def _check_key(path: Path, where: str, key: str) -> None:
    """``where`` is the key path that ends with ``key`` (e.g. ``set.model.decoder.norm``)."""
    if key == PRESET_KEY or key in _KEYS:
        return
    if key in _SECTIONS:
        raise StudySpecError(path, where, key, "a leaf key below this section, e.g. "
                             + next(k for k in _KEYS if k.startswith(key + ".")))
    raise StudySpecError(path, where, key, "a key of the experiment config"
                         + C.suggest(key, list(_KEYS) + [PRESET_KEY]))


def check_value(path: Path, where: str, key: str, value: Any) -> Any:
    """The value coerced to the key's type (so 1 and 1.0 agree), or StudySpecError."""
    _check_key(path, where, key)
    if key == PRESET_KEY:
        if not isinstance(value, str) or value not in C.MODEL_PRESETS:
            raise StudySpecError(path, where, value, "one of " + ", ".join(C.MODEL_PRESETS)
                                 + (C.suggest(value, C.MODEL_PRESETS) if isinstance(value, str) else ""))
        return value
    try:
        return C.coerce(key, value, _KEYS[key])
    except C.ConfigError as e:
        # e.key is ``key`` or a path below it (``train.stages[0].steps``): where + the rest
        sub = e.key[len(key):] if e.key.startswith(key) else f".{e.key}"
        raise StudySpecError(path, where + sub, e.value, e.allowed) from None


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
            out.update(C.MODEL_PRESETS[value])
        else:
            out[key] = value
    return out


# --------------------------------------------------------------------------------------------
# the study file
# --------------------------------------------------------------------------------------------
def _axis(path: Path, where: str, key: Any, values: Any, distinct: bool = True) -> tuple[str, list[Any]]:
    if not isinstance(key, str):
        raise StudySpecError(path, f"{where}.{key}", key, "a dotted config key")
    _check_key(path, f"{where}.{key}", key)
    if not isinstance(values, list):
        raise StudySpecError(path, f"{where}.{key}", values, "a list of values for the axis")
    if not values:
        raise StudySpecError(path, f"{where}.{key}", values, "at least one value")
    checked = [check_value(path, f"{where}.{key}[{i}]", key, v) for i, v in enumerate(values)]
    seen = []
    for i, v in enumerate(checked):
        if distinct and v in seen:
            raise StudySpecError(path, f"{where}.{key}[{i}]", values[i], "distinct values per axis")
        seen.append(v)
    return key, checked


def load_spec(path: str | Path) -> StudySpec:
    """Read and validate a study file; every problem is a StudySpecError."""
    path = Path(path)
    doc = read_yaml(path)
    if not isinstance(doc, dict):
        raise StudySpecError(path, "<top>", doc, "a mapping with keys " + ", ".join(TOP_KEYS))
    for key in doc:
        if key not in TOP_KEYS:
            raise StudySpecError(path, str(key), doc[key], "top-level keys " + ", ".join(TOP_KEYS)
                                 + C.suggest(str(key), TOP_KEYS))

    study = doc.get("study")
    if not isinstance(study, str) or not STUDY_NAME.match(study):
        raise StudySpecError(path, "study", study, "a name of lowercase letters, digits, '_' and '-'")
    description = doc.get("description", "")
    if not isinstance(description, str):
        raise StudySpecError(path, "description", description, "a string")

    base: dict[str, Any] = {}
    if "base" in doc:
        if not isinstance(doc["base"], str):
            raise StudySpecError(path, "base", doc["base"], "a path to a base experiment file")
        base_path = (path.parent / doc["base"]).resolve()
        if not base_path.is_file():
            raise StudySpecError(path, "base", doc["base"], f"an existing file (looked at {base_path})")
        base_doc = read_yaml(base_path)
        base = _overrides(base_path, "base", base_doc if base_doc is not None else {})

    fixed = _overrides(path, "set", doc.get("set") or {}) if "set" in doc else {}

    grid: dict[str, list[Any]] = {}
    if "grid" in doc:
        if not isinstance(doc["grid"], dict) or not doc["grid"]:
            raise StudySpecError(path, "grid", doc["grid"], "a non-empty mapping of axis -> list of values")
        for key, values in doc["grid"].items():
            key, values = _axis(path, "grid", key, values)
            grid[key] = values

    zips: list[dict[str, list[Any]]] = []
    if "zip" in doc:
        if not isinstance(doc["zip"], list) or not doc["zip"]:
            raise StudySpecError(path, "zip", doc["zip"], "a non-empty list of mappings of axis -> values")
        for i, group in enumerate(doc["zip"]):
            where = f"zip[{i}]"
            if not isinstance(group, dict) or not group:
                raise StudySpecError(path, where, group, "a non-empty mapping of axis -> list of values")
            checked = dict(_axis(path, where, k, v, distinct=False) for k, v in group.items())
            lengths = {k: len(v) for k, v in checked.items()}
            if len(set(lengths.values())) > 1:
                raise StudySpecError(path, where, lengths, "axes of equal length (they vary in lock-step)")
            rows = list(zip(*checked.values()))
            for j, row in enumerate(rows):
                if row in rows[:j]:
                    raise StudySpecError(path, f"{where}[{j}]", dict(zip(checked, row)), "distinct rows")
            zips.append(checked)
    seen_axes: list[str] = list(grid)
    for i, group in enumerate(zips):
        for key in group:
            if key in seen_axes or key in fixed:
                raise StudySpecError(path, f"zip[{i}].{key}", key, "an axis varied in one place only")
            seen_axes.append(key)
    for key in grid:
        if key in fixed:
            raise StudySpecError(path, f"grid.{key}", key, "a key not also fixed under `set`")

    variants: dict[str, dict[str, Any]] = {}
    if "variants" in doc:
        if not isinstance(doc["variants"], dict) or not doc["variants"]:
            raise StudySpecError(path, "variants", doc["variants"], "a non-empty mapping of name -> overrides")
        for name, overrides in doc["variants"].items():
            if not isinstance(name, str) or not STUDY_NAME.match(name):
                raise StudySpecError(path, f"variants.{name}", name,
                                     "a variant name of lowercase letters, digits, '_' and '-'")
            variants[name] = _overrides(path, f"variants.{name}", overrides or {})

    axis_values = {k: v for k, v in grid.items()} | {k: v for g in zips for k, v in g.items()}
    exclude: list[dict[str, Any]] = []
    if "exclude" in doc:
        if not isinstance(doc["exclude"], list) or not doc["exclude"]:
            raise StudySpecError(path, "exclude", doc["exclude"], "a non-empty list of mappings axis -> value")
        for i, entry in enumerate(doc["exclude"]):
            where = f"exclude[{i}]"
            if not isinstance(entry, dict) or not entry:
                raise StudySpecError(path, where, entry, "a non-empty mapping of axis -> value")
            checked = {}
            for key, value in entry.items():
                if key not in axis_values:
                    allowed = "an axis of grid or zip: " + (", ".join(axis_values) or "(none)")
                    raise StudySpecError(path, f"{where}.{key}", key,
                                         allowed + C.suggest(str(key), axis_values))
                value = check_value(path, f"{where}.{key}", key, value)
                if value not in axis_values[key]:
                    raise StudySpecError(path, f"{where}.{key}", value,
                                         "one of the axis values " + ", ".join(map(repr, axis_values[key])))
                checked[key] = value
            exclude.append(checked)

    seeds: tuple[int, ...] = (0,)
    if "seeds" in doc:
        raw = doc["seeds"]
        if (not isinstance(raw, list) or not raw
                or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in raw)):
            raise StudySpecError(path, "seeds", raw, "a non-empty list of non-negative integers")
        if len(set(raw)) != len(raw):
            raise StudySpecError(path, "seeds", raw, "distinct seeds")
        seeds = tuple(raw)

    profiles: dict[str, dict[str, Any]] = {}
    if "profiles" in doc:
        if not isinstance(doc["profiles"], dict):
            raise StudySpecError(path, "profiles", doc["profiles"], "a mapping of profile name -> overrides")
        for name, overrides in doc["profiles"].items():
            if not isinstance(name, str) or not STUDY_NAME.match(name):
                raise StudySpecError(path, f"profiles.{name}", name, "a profile name of [a-z0-9_-]")
            profiles[name] = _overrides(path, f"profiles.{name}", overrides or {})

    resources = Resources()
    if "resources" in doc:
        try:
            resources = C.coerce("resources", doc["resources"], Resources)
        except C.ConfigError as e:
            raise StudySpecError(path, e.key, e.value, e.allowed) from None
        _check_resources(path, resources)

    paper = None
    if "paper" in doc:
        paper = _paper(path, doc["paper"])

    if not grid and not zips and not variants and ("grid" in doc or "zip" in doc):
        raise StudySpecError(path, "grid", {}, "at least one axis or named variant")
    return StudySpec(path=path, study=study, description=description, paper=paper, base=base,
                     set=fixed, grid=grid, zip=zips, variants=variants, exclude=exclude, seeds=seeds,
                     profiles=profiles, resources=resources)


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
        raise StudySpecError(path, *problem)


def _paper(path: Path, raw: Any) -> PaperRef:
    if not isinstance(raw, dict) or "table" not in raw:
        raise StudySpecError(path, "paper", raw, "a mapping with `table` (and optional `rows`)")
    for key in raw:
        if key not in ("table", "rows"):
            raise StudySpecError(path, f"paper.{key}", raw[key], "keys table, rows")
    table = str(raw["table"])
    if table not in paper_tables():
        raise StudySpecError(path, "paper.table", raw["table"], "a paper table: " + ", ".join(paper_tables()))
    rows = raw.get("rows") or {}
    if not isinstance(rows, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in rows.items()):
        raise StudySpecError(path, "paper.rows", rows, "a mapping of variant name -> paper row label")
    return PaperRef(table=table, rows=dict(rows))


def with_profile(spec: StudySpec, profile: str | None) -> dict[str, Any]:
    """The overrides of the chosen profile ({} for none); an unknown profile is an error."""
    if profile is None:
        return {}
    if profile not in spec.profiles:
        raise StudySpecError(spec.path, "profiles", profile,
                             "a profile of this study: " + (", ".join(spec.profiles) or "(none defined)"))
    return spec.profiles[profile]


def replace(spec: StudySpec, **changes: Any) -> StudySpec:
    return dataclasses.replace(spec, **changes)


def parse_sets(path: Path, items: list[str]) -> dict[str, Any]:
    """Command-line ``--set KEY=VALUE`` overrides (VALUE read as YAML), checked like the file's."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise StudySpecError(path, "--set", item, "KEY=VALUE, e.g. train.steps=20")
        try:
            value = yaml.load(text, Loader=_StrictLoader)
        except yaml.YAMLError:
            raise StudySpecError(path, f"--set {key}", text, "a YAML value") from None
        out[key] = check_value(path, f"--set {key}", key, value)
    return out
