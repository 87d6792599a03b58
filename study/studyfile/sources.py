"""Where each setting comes from: a variant's config values, each with the layer that set it last
(default, the base file, the study file's ``set``, its grid row or named variant, the profile,
``--set``; a path through the site file or the environment), and the launch settings, where
the site file's ``launch`` defaults fill what the command line and the study's ``resources``
leave unset. ``plan --explain`` prints these; docs/site.md describes the order.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from study.config import site
from study.kinds.registry import reads
from study.studyfile.document import Resources, StudyFile
from study.studyfile.grid import Variant
from study.studyfile.parse import resolve, with_profile
from study.studyfile.yamlfile import read_yaml

# the site file's launch keys -> the Resources fields they default
SITE_RESOURCES = {"partition": "partition", "account": "account", "qos": "qos", "gpus": "gpus", "time": "timeout_min"}
DEFAULT_EXECUTOR = "local"


def _flat(cfg: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            out |= _flat(value, f"{prefix}{f.name}.")
        else:
            out[f"{prefix}{f.name}"] = value
    return out


def _layers(
    spec: StudyFile, v: Variant, profile: str | None, extra: dict[str, Any]
) -> list[tuple[str, dict[str, Any]]]:
    """(source, dotted overrides) in the order the grid applies them."""
    layers = [("study file (base)", resolve(spec.base)), ("study file (set)", resolve(spec.set))]
    if v.name in spec.variants:
        layers.append((f"study file (variants.{v.name})", resolve(spec.variants[v.name])))
    elif v.axes:
        layers.append(("study file (grid)", resolve(v.axes)))
    if profile:
        layers.append((f"profile {profile}", resolve(with_profile(spec, profile))))
    layers.append(("--set", resolve(extra)))
    return layers


def explain(
    spec: StudyFile, v: Variant, profile: str | None, extra: dict[str, Any], settings: site.Settings | None = None
) -> list[tuple[str, Any, str]]:
    """(key, resolved value, where it came from) of every setting the variant's run kind reads."""
    settings = settings if settings is not None else site.load()
    origin: dict[str, tuple[str, Any]] = {}
    for source, overrides in _layers(spec, v, profile, extra):
        for key, value in overrides.items():
            origin[key] = (source, value)
    if "seed" not in origin:  # the study's seeds list, unless the profile or --set names one
        origin["seed"] = ("study file (seeds)", v.seed)
    sections = reads(v.config)
    rows = []
    for key, value in _flat(v.config).items():
        if not any(key == s or key.startswith(s + ".") for s in sections):
            continue
        source, written = origin.get(key, ("default", None))
        if key in site.PATH_KEYS and isinstance(written, str) and "${" in written:
            source += f", {written} through " + ", ".join(
                _reference_source(r, settings) for r in site.references(written)
            )
        rows.append((key, value, source))
    return rows


def _reference_source(ref: str, settings: site.Settings) -> str:
    section, dot, name = ref.partition(".")
    if not dot:
        return f"the environment (${ref})"
    if name in getattr(settings, section, {}):
        return f"{settings.where()} ({ref})"
    return f"nothing: {settings.where()} has no {ref}"


# --------------------------------------------------------------------------------------------
# launch settings
# --------------------------------------------------------------------------------------------
def _written_resources(spec: StudyFile) -> set[str]:
    """The keys the study file's ``resources`` names."""
    doc = read_yaml(spec.path)
    written = doc.get("resources") if isinstance(doc, dict) else None
    return set(written) if isinstance(written, dict) else set()


def launch_resources(spec: StudyFile, settings: site.Settings | None = None) -> tuple[Resources, dict[str, str]]:
    """The study's resources with the site file's launch defaults where the study file names none,
    and the source of each field the site or the study file set."""
    settings = settings if settings is not None else site.load()
    written = _written_resources(spec)
    sources = {f: "study file (resources)" for f in written}
    changes = {}
    for key, field_name in SITE_RESOURCES.items():
        if key in settings.launch and field_name not in written:
            changes[field_name] = settings.launch[key]
            sources[field_name] = f"{settings.where()} (launch.{key})"
    return dataclasses.replace(spec.resources, **changes), sources


def executor(given: str | None, settings: site.Settings | None = None) -> tuple[str, str]:
    """(executor, source): the command line's, else the site file's ``launch.executor``, else local."""
    if given:
        return given, "--executor"
    settings = settings if settings is not None else site.load()
    if "executor" in settings.launch:
        return settings.launch["executor"], f"{settings.where()} (launch.executor)"
    return DEFAULT_EXECUTOR, "default"


def explain_launch(spec: StudyFile, given_executor: str | None = None) -> list[tuple[str, Any, str]]:
    """(setting, value, source) of the executor and each resource."""
    settings = site.load()
    name, source = executor(given_executor, settings)
    resources, sources = launch_resources(spec, settings)
    rows: list[tuple[str, Any, str]] = [("executor", name, source)]
    for f in dataclasses.fields(Resources):
        rows.append((f"resources.{f.name}", getattr(resources, f.name), sources.get(f.name, "default")))
    return rows
