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

import itertools
from dataclasses import dataclass, field
from typing import Any, Iterator

from study import config as cfgmod
from study.studyfile import autoencoder_ref
from study.studyfile.parse import PRESET_KEY, SEED_KEY, StudyFile, StudyFileError, resolve, with_profile


@dataclass(frozen=True)
class Variant:
    index: int
    name: str
    run_id: str
    seed: int
    axes: dict[str, Any]  # the varied keys and their values for this variant
    config: cfgmod.ExperimentConfig
    source: str  # "grid", "variant" (named) or "base"
    aliases: tuple[str, ...] = field(default=())


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


def _rows(spec: StudyFile) -> Iterator[dict[str, Any]]:
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


def _excluded(row: dict[str, Any], exclude: list[dict[str, Any]]) -> bool:
    return any(all(row[k] == v for k, v in entry.items()) for entry in exclude)


def _varied(spec: StudyFile) -> list[str]:
    """Axes with more than one value: the ones that name a variant."""
    return [k for k in spec.axes if len(spec.grid.get(k) or next(g[k] for g in spec.zip if k in g)) > 1]


def expand(spec: StudyFile, profile: str | None = None, extra: dict[str, Any] | None = None) -> list[Variant]:
    """Every concrete variant of the study (times seeds), in a stable order. ``extra`` overrides
    (from the command line's --set) apply after the profile; a ``seed`` in either replaces the
    study's seeds list."""
    profile_overrides = resolve(with_profile(spec, profile)) | resolve(extra or {})
    seeds = spec.seeds
    if SEED_KEY in profile_overrides:
        seeds = (profile_overrides.pop(SEED_KEY),)
    fixed = resolve(spec.base) | resolve(spec.set)
    varied = _varied(spec)
    shorts = short_keys(varied)

    candidates: list[tuple[str, dict[str, Any], dict[str, Any], str, str]] = []
    if spec.grid or spec.zip:
        for row in _rows(spec):
            if _excluded(row, spec.exclude):
                continue
            name = (
                ",".join(
                    format_value(row[k]) if k == PRESET_KEY else f"{shorts[k]}={format_value(row[k])}" for k in varied
                )
                or spec.study
            )
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
    names: set[str] = set()
    resolved: list[_Resolved] = []
    for name, axes, overrides, source, where in candidates:
        if name in names:
            raise StudyFileError(spec.path, where, name, "variant names distinct from the grid's names")
        names.add(name)
        for seed in seeds:
            cfg = _resolve(spec, where, overrides | profile_overrides | {"seed": seed}, profile, start)
            if cfg.model.init:
                cfg = _with_init_digest(spec, where, cfg)
            resolved.append(_Resolved(name, axes, source, where, seed, cfg))
    return _deduplicated(spec, resolved, profile, extra)


@dataclass(frozen=True)
class _Resolved:
    name: str
    axes: dict[str, Any]
    source: str
    where: str
    seed: int
    config: cfgmod.ExperimentConfig


def _deduplicated(
    spec: StudyFile, resolved: list[_Resolved], profile: str | None, extra: dict[str, Any] | None
) -> list[Variant]:
    """Variants in order, autoencoders before the diffusion runs on them (each diffusion run's
    autoencoder resolved, and added when it is not a variant of the study); two variants with
    one config are one run, the later named as an alias."""
    configs = {(r.name, r.seed): r.config for r in resolved}  # a diffusion run named is refused later
    own_names = sorted({r.name for r in resolved if r.config.task == "autoencoder"})

    def own(name: str, seed: int) -> cfgmod.ExperimentConfig | None:
        return configs.get((name, seed)) or next((c for (n, _), c in configs.items() if n == name), None)

    variants: list[Variant] = []
    by_id: dict[str, int] = {}

    def add(name: str, seed: int, axes: dict[str, Any], cfg: cfgmod.ExperimentConfig, source: str) -> None:
        rid = cfgmod.run_id(cfg)
        if rid in by_id:
            variants[by_id[rid]] = _with_alias(variants[by_id[rid]], name)
            return
        by_id[rid] = len(variants)
        variants.append(Variant(len(variants), name, rid, seed, axes, cfg, source))

    for r in sorted(resolved, key=lambda r: r.config.task == "diffusion"):  # stable: file order kept
        cfg = r.config
        if cfg.task == "diffusion":
            cfg, ae = autoencoder_ref.resolve(spec, r.where, cfg, own, own_names, (profile, extra), _with_init_digest)
            if ae.source != "variant":
                add(ae.name, ae.config.seed, {}, ae.config, "autoencoder")
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
        return cfgmod.validate(cfg) if check else cfg
    except cfgmod.ConfigError as e:
        origin = where if profile is None else f"{where} (with profile {profile})"
        raise StudyFileError(spec.path, f"{origin}: {e.key}", e.value, e.allowed) from None


def _with_init_digest(spec: StudyFile, where: str, cfg: cfgmod.ExperimentConfig) -> cfgmod.ExperimentConfig:
    """``model.init`` resolved against the study file's folder (a run id stays as it is) and
    ``model.init_sha256`` set from the file: the weights a run starts from are its identity."""
    from dataclasses import replace
    from pathlib import Path

    from study.autoencoder import pretrained  # torch: imported only for studies that need it

    init = Path(cfg.model.init).expanduser()
    if not init.is_absolute() and (spec.path.parent / init).exists():
        init = (spec.path.parent / init).resolve()
    source = str(init) if init.exists() else cfg.model.init
    try:
        digest = pretrained.checkpoint_sha256(source)  # cached per (file, size, mtime)
    except pretrained.CheckpointError as e:
        raise StudyFileError(
            spec.path, f"{where}: model.init", cfg.model.init, f"a readable checkpoint ({e})"
        ) from None
    return replace(cfg, model=replace(cfg.model, init=source, init_sha256=digest))


def _with_alias(variant: Variant, alias: str) -> Variant:
    from dataclasses import replace

    if alias == variant.name or alias in variant.aliases:
        return variant
    return replace(variant, aliases=variant.aliases + (alias,))


def expected_count(spec: StudyFile) -> int:
    """product x zip length - excluded + named variants, times seeds (before deduplication)."""
    rows = sum(1 for row in _rows(spec) if not _excluded(row, spec.exclude)) if (spec.grid or spec.zip) else 0
    if not (spec.grid or spec.zip or spec.variants):
        return len(spec.seeds)  # the base experiment alone
    return (rows + len(spec.variants)) * len(spec.seeds)
