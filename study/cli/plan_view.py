"""What ``plan`` shows a person: the study's header (dataset, resolution, steps x batch, GPUs, time
limit, executor), each variant's keys that differ from the base, the runs other studies share,
``--keys`` (every config key with its default, type, allowed values and source) and
``--config`` (one variant's resolved config, the sections its run kind reads)."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from study import config as cfgmod
from study import store
from study.kinds import registry
from study.studyfile.grid import Variant, expand, format_value
from study.studyfile.parse import StudyFile, StudyFileError, load_study, resolve, with_profile


# --------------------------------------------------------------------------------------------
# the base and what each variant changes
# --------------------------------------------------------------------------------------------
def base_config(spec: StudyFile, profile: str | None, extra: dict[str, Any]) -> cfgmod.ExperimentConfig:
    """The study's base file and ``set`` with the profile and ``--set``: what every variant starts from."""
    overrides = resolve(spec.base) | resolve(spec.set) | resolve(with_profile(spec, profile)) | resolve(extra)
    overrides.pop("seed", None)
    return cfgmod.apply_overrides(cfgmod.ExperimentConfig(), overrides)


def changes(cfg: Any, base: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted key -> value of every field where ``cfg`` differs from ``base`` (equal sections
    are skipped whole: one comparison each; a pair of sections compared before is not compared
    again: a grid's variants share a few hundred section objects)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        mine, theirs = getattr(cfg, f.name), getattr(base, f.name)
        if f.name == "seed":
            continue
        if dataclasses.is_dataclass(mine) and dataclasses.is_dataclass(theirs):
            out |= _section_changes(mine, theirs, f"{prefix}{f.name}.")
        elif mine != theirs:
            out[f"{prefix}{f.name}"] = mine
    return out


def _section_changes(mine: Any, theirs: Any, prefix: str) -> dict[str, Any]:
    """``changes`` of two sections, kept per (the two objects, ``prefix``)."""
    key = (id(mine), id(theirs), prefix)
    found = _CHANGES.get(key)
    if found is None or found[0] is not mine or found[1] is not theirs:
        if len(_CHANGES) >= 100_000:  # a memo, not a store
            _CHANGES.clear()
        found = _CHANGES[key] = (mine, theirs, {} if mine == theirs else changes(mine, theirs, prefix))
    return found[2]


_CHANGES: dict[tuple[int, int, str], tuple[Any, Any, dict[str, Any]]] = {}


def changes_text(v: Variant, base: cfgmod.ExperimentConfig) -> str:
    """``key=value`` of each key the variant changes from the base (the autoencoder a diffusion
    run fills in is left out), or ``(base)``."""
    cfg = v.config
    parts = [_field_text(getattr(cfg, f.name), getattr(base, f.name), f.name) for f in dataclasses.fields(cfg)]
    return " ".join([part for part in parts if part]) or "(base)"


def _field_text(mine: Any, theirs: Any, name: str) -> str:
    """``changes_text``'s part of one top-level field (a section's kept per the two objects)."""
    if name == "seed":
        return ""
    if dataclasses.is_dataclass(mine) and dataclasses.is_dataclass(theirs):
        key = (id(mine), id(theirs), name)
        found = _TEXTS.get(key)
        if found is None or found[0] is not mine or found[1] is not theirs:
            if len(_TEXTS) >= 100_000:  # a memo, not a store
                _TEXTS.clear()
            found = _TEXTS[key] = (mine, theirs, _text(_section_changes(mine, theirs, f"{name}.")))
        return found[2]
    return _text({name: mine} if mine != theirs else {})


def _text(diff: dict[str, Any]) -> str:
    return " ".join(f"{k}={format_value(x)}" for k, x in diff.items() if k != "diffusion.autoencoder_id")


_TEXTS: dict[tuple[int, int, str], tuple[Any, Any, str]] = {}


def header(spec: StudyFile, base: cfgmod.ExperimentConfig, executor: str) -> list[str]:
    d, t, r = base.data, base.train, spec.resources
    stages = "" if not t.stages else " in stages " + ", ".join(f"{s.steps}@{s.resolution}px" for s in t.stages)
    varied = list(dict.fromkeys([*spec.axes, *(k for o in spec.variants.values() for k in resolve(o))]))
    return [
        f"  varies: {', '.join(varied) or 'nothing (the base alone)'}",
        f"  data: {d.name} ({d.kind}{', ' + d.path if d.path else ''}), {d.resolution}x{d.resolution}",
        f"  train: {t.steps:,} steps x batch {t.batch_size}{stages}, lr {t.lr:g}, {t.precision} precision",
        f"  each run: {r.gpus} GPU(s) x {r.nodes} node(s), time limit {r.timeout_min} min; executor {executor}",
    ]


# --------------------------------------------------------------------------------------------
# runs shared with other studies
# --------------------------------------------------------------------------------------------
def shared_with(spec: StudyFile, profile: str | None, root: Path) -> dict[str, list[str]]:
    """Run id -> the other studies that have the same run: the study files beside this one (under
    the same profile, where they have it) and the studies recorded under ``root``."""
    out: dict[str, list[str]] = {}
    for path in sorted(spec.path.parent.glob("*.yaml")):
        if path.resolve() == spec.path.resolve():
            continue
        try:
            other = load_study(path)
            ids = [v.run_id for v in expand(other, profile if profile in other.profiles else None)]
        except (StudyFileError, cfgmod.ConfigError, OSError):
            continue  # not a study file, or one that does not expand here: nothing to share
        for rid in ids:
            out.setdefault(rid, []).append(other.study)
    for index in sorted(root.glob("*/index*.json")) if root.is_dir() else ():
        doc = store.read_json(index) or {}
        if doc.get("study") in (spec.study, None):
            continue
        for v in doc.get("variants", []):
            names = out.setdefault(v.get("run_id", ""), [])
            if doc["study"] not in names:
                names.append(doc["study"])
    return out


# --------------------------------------------------------------------------------------------
# --keys and --config
# --------------------------------------------------------------------------------------------
def _comments(cls: type) -> dict[str, str]:
    """Field name -> the comment lines above it in its dataclass's source (sections.py)."""
    source = inspect.getsource(cls)
    lines = source.splitlines()
    out: dict[str, str] = {}
    for node in ast.parse(source).body[0].body:  # type: ignore[attr-defined]
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            above: list[str] = []
            i = node.lineno - 2
            while i >= 0 and lines[i].strip().startswith("#"):
                above.insert(0, lines[i].strip().lstrip("#").strip())
                i -= 1
            trailing = lines[node.lineno - 1].partition("  # ")[2].strip()
            out[node.target.id] = " ".join(above + ([trailing] if trailing else []))
    return out


def _type_text(tp: Any) -> tuple[str, str]:
    """(type, allowed values) of a field's annotation."""
    if get_origin(tp) is Literal:
        return "choice", " | ".join(str(a) for a in get_args(tp))
    return cfgmod.describe_type(tp), ""


def keys_rows() -> list[list[str]]:
    """One row per config key: key, default, type, allowed values, source (its comment)."""
    rows = []

    def walk(cls: type, default: Any, prefix: str) -> None:
        comments = _comments(cls)
        hints = cfgmod.config_keys(cls)
        for f in dataclasses.fields(cls):
            value = getattr(default, f.name)
            if dataclasses.is_dataclass(value):
                walk(type(value), value, f"{prefix}{f.name}.")
                continue
            kind, allowed = _type_text(hints[f.name])
            shown = json.dumps(cfgmod.to_dict(value))
            rows.append([f"{prefix}{f.name}", shown, kind, allowed, comments.get(f.name, "")])

    walk(cfgmod.ExperimentConfig, cfgmod.ExperimentConfig(), "")
    return rows


def config_yaml(variant: Variant) -> str:
    """The variant's resolved config as YAML: only what its run kind reads (``registry.reads``)."""
    full = cfgmod.to_dict(variant.config)
    out: dict[str, Any] = {}
    for part in registry.reads(variant.config):
        *path, name = part.split(".")
        src, dst = full, out
        for p in path:
            src, dst = src[p], dst.setdefault(p, {})
        dst[name] = src[name]
    head = (
        f"# {variant.name} (run {variant.run_id}, {registry.kind_of(variant.config).name} run): the sections it reads\n"
    )
    return head + yaml.safe_dump(out, sort_keys=False)


def find_variant(variants: list[Variant], wanted: str) -> Variant | None:
    """A variant by name (its first seed), alias, run id or index."""
    for v in variants:
        if wanted in (v.name, v.run_id, str(v.index)) or wanted in v.aliases:
            return v
    return None
