"""Site settings: one YAML file that says where this machine's (or cluster's) datasets,
checkpoints and metric weights are, and how its jobs are launched, so study files need no editing.

The file is ``$LITEVAE_SITE``, else ``$XDG_CONFIG_HOME/litevae/site.yaml``, else
``~/.config/litevae/site.yaml``; without one every setting keeps its default. A path value of a
study file (``PATH_KEYS``) may name an entry: ``${datasets.imagenet}/train``,
``${checkpoints.kl-f8}``; ``${NAME}`` without a dot is an environment variable. What the file
holds and how each setting's source is shown (``plan --explain``): docs/site.md.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from study.config.sections import ConfigError, ExperimentConfig

SITE_ENV = "LITEVAE_SITE"
# The config keys whose values are paths: the only ones ``${...}`` is expanded in.
PATH_KEYS = ("data.path", "data.list", "eval.path", "eval.list", "model.init", "diffusion.autoencoder")
SECTIONS = ("datasets", "checkpoints", "weights", "launch")
# launch defaults: key -> (type, allowed); the executors are study/launch/launcher.py's EXECUTORS
LAUNCH_KEYS: dict[str, tuple[type, str]] = {
    "executor": (str, "slurm | local | debug"),
    "partition": (str, "a SLURM partition name"),
    "account": (str, "a SLURM account"),
    "qos": (str, "a SLURM QOS"),
    "gpus": (int, "an integer >= 0 (GPUs per variant)"),
    "time": (int, "an integer >= 1 (minutes)"),
}
_REF = re.compile(r"\$\{([^}]*)\}")


class SiteError(ConfigError):
    """A malformed site file, or a ``${...}`` that names no setting: the message names the file
    (or the config key), the entry and what is allowed."""


@dataclass(frozen=True)
class Settings:
    """The site file's contents (empty where there is no file)."""

    path: Path | None = None  # the file read; None: none found
    looked_at: Path | None = None  # where it was looked for
    datasets: dict[str, str] = field(default_factory=dict)
    checkpoints: dict[str, str] = field(default_factory=dict)
    weights: str = ""
    launch: dict[str, Any] = field(default_factory=dict)

    def where(self) -> str:
        """The file, as errors name it."""
        if self.path is not None:
            return f"the site file {self.path}"
        return f"the site file ({self.looked_at or site_path()}, not present)"


def site_path() -> Path:
    """Where the site file is looked for: $LITEVAE_SITE, else the user's config directory."""
    if os.environ.get(SITE_ENV):
        return Path(os.environ[SITE_ENV]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "litevae" / "site.yaml"


_CACHE: dict[tuple[str, int, int], Settings] = {}


def load(path: str | Path | None = None) -> Settings:
    """The site settings (``path``, else ``site_path()``); SiteError for a malformed file, or for
    a $LITEVAE_SITE that names no file. Read once per file version."""
    where = Path(path).expanduser() if path else site_path()
    if not where.is_file():
        if path or os.environ.get(SITE_ENV):
            raise SiteError(f"${SITE_ENV}" if not path else "site file", str(where), "an existing site file")
        return Settings(looked_at=where)
    st = where.stat()
    key = (str(where.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _CACHE:
        _CACHE[key] = _parse(where)
    return _CACHE[key]


def _parse(path: Path) -> Settings:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}" + (f", line {mark.line + 1}" if mark is not None else "")
        raise SiteError(
            where, " ".join(str(e).split())[:120], "YAML (quote a value holding ${...} inside {...})"
        ) from None
    if not isinstance(doc, dict):
        raise SiteError(str(path), doc, "a mapping with keys " + ", ".join(SECTIONS))
    for key in doc:
        if key not in SECTIONS:
            raise SiteError(f"{path}: {key}", doc[key], "top-level keys " + ", ".join(SECTIONS))
    named = {s: _names(path, s, doc.get(s) or {}) for s in ("datasets", "checkpoints")}
    weights = doc.get("weights") or ""
    if not isinstance(weights, str):
        raise SiteError(f"{path}: weights", weights, "a directory path")
    return Settings(
        path, path, named["datasets"], named["checkpoints"], weights, _launch(path, doc.get("launch") or {})
    )


def _names(path: Path, section: str, raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise SiteError(f"{path}: {section}", raw, "a mapping of name -> path")
    for name, value in raw.items():
        if not isinstance(name, str) or not isinstance(value, str) or not value:
            raise SiteError(f"{path}: {section}.{name}", value, "a path (a string)")
    return dict(raw)


def _launch(path: Path, raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise SiteError(f"{path}: launch", raw, "a mapping of " + ", ".join(LAUNCH_KEYS))
    for key, value in raw.items():
        if key not in LAUNCH_KEYS:
            raise SiteError(f"{path}: launch.{key}", value, "keys " + ", ".join(LAUNCH_KEYS))
        kind, allowed = LAUNCH_KEYS[key]
        bad = not isinstance(value, kind) or isinstance(value, bool)
        bad = bad or (key == "executor" and value not in ("slurm", "local", "debug"))
        bad = bad or (key == "gpus" and value < 0) or (key == "time" and value < 1)
        if bad:
            raise SiteError(f"{path}: launch.{key}", value, allowed)
    return dict(raw)


# --------------------------------------------------------------------------------------------
# ${...} in path values
# --------------------------------------------------------------------------------------------
class Unresolved(SiteError):
    """A ``${...}`` in a config key's value that nothing sets; ``fix`` says how to set it."""

    def __init__(self, key: str, value: str, reason: str, fix: str):
        self.key, self.value, self.allowed = key, value, f"{reason} ({fix})"
        self.reason, self.fix = reason, fix
        ValueError.__init__(self, f"{key}: {value}: {reason} ({fix})")


def expand(value: str, key: str, site: Settings | None = None) -> str:
    """``value`` with each ``${datasets.X}`` / ``${checkpoints.X}`` from the site file and each
    ``${VAR}`` from the environment; Unresolved naming ``key`` and the missing name otherwise."""
    if "${" not in value:
        return value
    site = site if site is not None else load()

    def one(m: re.Match) -> str:
        ref = m.group(1).strip()
        section, dot, name = ref.partition(".")
        if not dot:
            if ref in os.environ:
                return os.environ[ref]
            raise Unresolved(
                key, value, f"the environment variable {ref} is not set", f"export {ref}=..., or --set {key}=PATH"
            )
        if section not in ("datasets", "checkpoints"):
            raise Unresolved(
                key, value, f"${{{ref}}} names no site setting", "use ${datasets.NAME}, ${checkpoints.NAME} or ${VAR}"
            )
        entries = getattr(site, section)
        if name not in entries:
            known = ", ".join(entries) or "none"
            raise Unresolved(
                key,
                value,
                f"{site.where()} has no {section}.{name} (it names: {known})",
                f"add `{section}: {{{name}: PATH}}` to it, or --set {key}=PATH",
            )
        try:  # ${VAR} in the site file's own value
            return expand(entries[name], key, site)
        except Unresolved as e:
            raise Unresolved(key, value, f"{e.reason} (in {site.where()}, {section}.{name})", e.fix) from None

    return _REF.sub(one, value)


def references(value: str) -> list[str]:
    """The names ``value`` refers to (``datasets.imagenet``, ``HOME``), in order."""
    return [m.group(1).strip() for m in _REF.finditer(value)]


def _get(cfg: ExperimentConfig, key: str) -> Any:
    section, _, name = key.partition(".")
    return getattr(getattr(cfg, section), name)


def with_site_paths(cfg: ExperimentConfig, site: Settings | None = None) -> ExperimentConfig:
    """``cfg`` with ``${...}`` expanded in each path value that resolves; one that does not is
    kept as written (the preflight reports it, ``unresolved``), so ``plan`` works anywhere."""
    changes: dict[str, dict[str, str]] = {}
    for key in PATH_KEYS:
        value = _get(cfg, key)
        if "${" not in value:
            continue
        try:
            expanded = expand(value, key, site)
        except Unresolved:
            continue
        section, _, name = key.partition(".")
        changes.setdefault(section, {})[name] = expanded
    for section, values in changes.items():
        cfg = dataclasses.replace(cfg, **{section: dataclasses.replace(getattr(cfg, section), **values)})
    return cfg


def unresolved_value(value: str, key: str, site: Settings | None = None) -> list[Unresolved]:
    """The error of a ``${...}`` in ``value`` that nothing sets ([] when it expands)."""
    try:
        expand(value, key, site)
    except Unresolved as e:
        return [e]
    return []


def unresolved(
    cfg: ExperimentConfig, keys: tuple[str, ...] = PATH_KEYS, site: Settings | None = None
) -> list[Unresolved]:
    """The ``${...}`` left in ``cfg``'s path values (among ``keys``), each as the error it raises."""
    return [e for key in keys for e in unresolved_value(_get(cfg, key), key, site)]


def dataset_of(path: str, site: Settings) -> tuple[str, str] | None:
    """(name, root) of the site's dataset whose root ``path`` lies in, if any."""
    for name, root in site.datasets.items():
        try:
            expanded = expand(root, f"datasets.{name}", site)
        except Unresolved:
            continue
        if path == expanded or path.startswith(expanded.rstrip("/") + "/"):
            return name, expanded
    return None
