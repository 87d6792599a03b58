"""StudyFile -> concrete variants: the grid's product, zip groups, exclusions, named variants,
seeds and a profile; each variant with its resolved config, stable id and readable name.

Order of application for one variant: config defaults, the base file, ``set``, the row's axis
values (or the named variant's overrides), the profile, the command line's ``--set``, the seed.
The seeds are the study's ``seeds`` list, unless the profile or ``--set`` names a ``seed``: that
one replaces the list (``--set seed=77`` runs every variant once, with seed 77). Two variants
with the same resolved config are one run: the later one is dropped and named as an alias of
the first.
"""

from __future__ import annotations

import gc
import operator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

from study import config as cfgmod
from study.config import site
from study.kinds.registry import index_fields, kind_of, run_id
from study.studyfile import references
from study.studyfile.document import SEED_KEY, StudyFile
from study.studyfile.init_digest import with_init_digest
from study.studyfile.parse import resolve, with_profile
from study.studyfile.rows import format_value, named_rows, rows, short_keys
from study.studyfile.yamlfile import StudyFileError

__all__ = ["Variant", "expand", "expected_count", "format_value", "short_keys"]


@dataclass(frozen=True)
class Variant:
    index: int
    name: str
    run_id: str
    seed: int
    axes: dict[str, Any]  # the varied keys and their values for this variant
    config: cfgmod.ExperimentConfig
    source: str  # "grid", "variant" (named), "base", or what a variant names ("autoencoder")
    aliases: tuple[str, ...] = field(default=())
    fields: dict[str, Any] = field(default_factory=dict)  # its run kind's fields of the index


def expand(
    spec: StudyFile,
    profile: str | None = None,
    extra: dict[str, Any] | None = None,
    within: tuple[Path, ...] = (),
) -> list[Variant]:
    """Every concrete variant of the study (times seeds), in a stable order. ``extra`` overrides
    (from the command line's --set) apply after the profile; a ``seed`` in either replaces the
    study's seeds list. ``within``: the study files whose expansion is expanding this one (a
    diffusion variant naming another study's autoencoder), which it may not name back.

    The cyclic garbage collector is paused meanwhile: a grid's variants are many objects that
    live on, which its passes would walk again and again (an eighth of a large grid's time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _expand(spec, profile, extra, within)
    finally:
        if enabled:
            gc.enable()


def _expand(
    spec: StudyFile, profile: str | None, extra: dict[str, Any] | None, within: tuple[Path, ...]
) -> list[Variant]:
    profile_overrides = resolve(with_profile(spec, profile)) | resolve(extra or {})
    seeds = spec.seeds
    if SEED_KEY in profile_overrides:
        seeds = (profile_overrides.pop(SEED_KEY),)
    fixed = resolve(spec.base) | resolve(spec.set)

    candidates: list[tuple[str, dict[str, Any], dict[str, Any], str, str]] = []
    if spec.grid or spec.zip:
        for name, row in named_rows(spec):
            candidates.append((name, row, resolve(row), "grid", "grid"))
    for name, overrides in spec.variants.items():
        candidates.append((name, {}, resolve(overrides), "variant", f"variants.{name}"))
    if not candidates and not spec.variants and not (spec.grid or spec.zip):
        candidates.append((spec.study, {}, {}, "base", "set"))
    if not candidates:  # every row excluded and no named variant: nothing to run is a mistake
        raise StudyFileError(
            spec.path,
            "exclude",
            spec.exclude,
            "exclusions that leave at least one row of grid x zip (or a named variant)",
        )

    start = _resolve(spec, "set", fixed, None, check=False)  # base and set, applied once
    paths = _SitePaths(site.load())
    names: set[str] = set()
    resolved: list[_Resolved] = []
    for name, axes, overrides, source, where in candidates:
        if name in names:
            raise StudyFileError(spec.path, where, name, "variant names distinct from the grid's names")
        names.add(name)
        for seed in seeds:
            cfg = _resolve(spec, where, overrides | profile_overrides | {"seed": seed}, profile, start)
            cfg = paths.expanded(cfg)  # ${datasets.X}, ${VAR}: paths, not identity
            if cfg.model.init:
                cfg = with_init_digest(spec, where, cfg)
            resolved.append(_Resolved(name, axes, source, where, seed, cfg))
    return _deduplicated(spec, resolved, profile, extra, within)


class _SitePaths:
    """``site.with_site_paths`` once per distinct set of the sections that hold paths (a grid's
    variants share a few): a path's expansion reads only its own value and the site."""

    def __init__(self, settings: site.Settings):
        self.settings = settings
        self.sections = tuple(dict.fromkeys(key.partition(".")[0] for key in site.PATH_KEYS))
        self.of = operator.attrgetter(*self.sections, self.sections[0])  # a tuple, one section too
        # ids of the sections -> (those sections, the sections the expansion changed)
        self.memo: dict[tuple[int, ...], tuple[tuple[Any, ...], dict[str, Any]]] = {}

    def expanded(self, cfg: cfgmod.ExperimentConfig) -> cfgmod.ExperimentConfig:
        before = self.of(cfg)
        found = self.memo.get(key := tuple(map(id, before)))
        if found is None or not all(map(operator.is_, found[0], before)):
            out = site.with_site_paths(cfg, self.settings)
            changed = {s: new for s, old in zip(self.sections, before) if (new := getattr(out, s)) is not old}
            found = self.memo[key] = (before, changed)
        return replace(cfg, **found[1]) if found[1] else cfg


class _Resolved(NamedTuple):  # a tuple: a grid makes one per row
    name: str
    axes: dict[str, Any]
    source: str
    where: str
    seed: int
    config: cfgmod.ExperimentConfig


def _deduplicated(
    spec: StudyFile,
    resolved: list[_Resolved],
    profile: str | None,
    extra: dict[str, Any] | None,
    within: tuple[Path, ...],
) -> list[Variant]:
    """Variants in order, the runs that others name before those (each named run resolved, and
    added when it is not a variant of the study: a diffusion run's autoencoder); two variants
    with one config are one run, the later named as an alias."""
    configs = {(r.name, r.seed): r.config for r in resolved}  # a run that names another is refused later
    references_of = [(kind_of(r.config).reference, r) for r in resolved]
    own_names = sorted({r.name for reference, r in references_of if reference is None})

    def own(name: str, seed: int) -> cfgmod.ExperimentConfig | None:
        return configs.get((name, seed)) or next((c for (n, _), c in configs.items() if n == name), None)

    expansion = references.Expansion(spec, profile, extra, within, own, own_names, expand)
    variants: list[Variant] = []
    by_id: dict[str, int] = {}

    def add(name: str, seed: int, axes: dict[str, Any], cfg: cfgmod.ExperimentConfig, source: str) -> None:
        rid = run_id(cfg)
        if rid in by_id:
            variants[by_id[rid]] = _with_alias(variants[by_id[rid]], name)
            return
        by_id[rid] = len(variants)
        variants.append(Variant(len(variants), name, rid, seed, axes, cfg, source, fields=index_fields(cfg)))

    # stable: file order kept, the variants that name another run last
    for reference, r in sorted(references_of, key=lambda pair: pair[0] is not None):
        cfg = r.config
        if reference is not None:
            cfg, named = references.resolve(expansion, r.where, cfg, reference)
            if named.source != "variant":
                add(named.name, named.config.seed, {}, named.config, reference.label)
        add(r.name, r.seed, r.axes, cfg, r.source)
    return variants


def _resolve(
    spec: StudyFile,
    where: str,
    overrides: dict[str, Any],
    profile: str | None,
    start: cfgmod.ExperimentConfig | None = None,
    check: bool = True,
) -> cfgmod.ExperimentConfig:
    """``start`` (default: the config defaults) with ``overrides`` applied, then validated."""
    try:
        cfg = cfgmod.apply_overrides(start or cfgmod.ExperimentConfig(), overrides)
        if check:
            cfg = cfgmod.validate(cfg)
            kind_of(cfg).check(cfg)  # the sections only its kind reads; an unknown task
        return cfg
    except cfgmod.ConfigError as e:
        origin = where if profile is None else f"{where} (with profile {profile})"
        raise StudyFileError(spec.path, f"{origin}: {e.key}", e.value, e.allowed) from None


def _with_alias(variant: Variant, alias: str) -> Variant:
    if alias == variant.name or alias in variant.aliases:
        return variant
    return replace(variant, aliases=variant.aliases + (alias,))


def expected_count(spec: StudyFile) -> int:
    """product x zip length - excluded + named variants, times seeds (before deduplication)."""
    if not (spec.grid or spec.zip or spec.variants):
        return len(spec.seeds)  # the base experiment alone
    kept = sum(1 for _ in rows(spec)) if (spec.grid or spec.zip) else 0
    return (kept + len(spec.variants)) * len(spec.seeds)
