"""A run that a variant names (a diffusion run's frozen autoencoder, Tables 7, 13), resolved to a
run of the study. Its run kind says which field names it (``study.kinds.base.Reference``).

The forms, tried in this order: a variant of the same study (``sd-vae``; the naming variant's
seed where it has one); a variant of another study file (``table2a.yaml LiteVAE-B``, expanded with
the same profile); a run id with a run folder (``6e47d7f8241b``); a checkpoint path (a run that
evaluates it as it is). The named run becomes a run of the study, so one ``launch`` runs it first.
The expansion under way is passed in as an ``Expansion``, so this module imports nothing of the
grid."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from study import config as cfgmod
from study import store
from study.kinds.base import Reference
from study.kinds.registry import kind_of, run_id
from study.studyfile.document import StudyFile
from study.studyfile.init_digest import with_init_digest
from study.studyfile.parse import load_study
from study.studyfile.yamlfile import StudyFileError

RUN_ID = re.compile(r"^[0-9a-f]{12}$")


class Expanded(Protocol):
    """A variant of an expanded study, as study.studyfile.grid.Variant has it."""

    @property
    def name(self) -> str: ...
    @property
    def aliases(self) -> tuple[str, ...]: ...
    @property
    def seed(self) -> int: ...
    @property
    def config(self) -> cfgmod.ExperimentConfig: ...


# expand(spec, profile, extra, within): another study file's variants (grid.expand)
ExpandFn = Callable[[StudyFile, str | None, dict[str, Any] | None, tuple[Path, ...]], Sequence[Expanded]]


@dataclass(frozen=True)
class Expansion:
    """The study's expansion under way, which a variant's reference is resolved in."""

    spec: StudyFile
    profile: str | None  # the profile and --set overrides, applied to another study's variant too
    extra: dict[str, Any] | None
    within: tuple[Path, ...]  # the study files whose expansion is resolving this one's (no cycle)
    own: Callable[[str, int], cfgmod.ExperimentConfig | None]  # this study's variant (name, seed)
    own_names: list[str]
    expand: ExpandFn


@dataclass(frozen=True)
class Named:
    """The resolved run: its config and a readable name for plans and reports."""

    name: str
    config: cfgmod.ExperimentConfig
    source: str  # "variant" (this study), "study" (another file), "run", "checkpoint"


def _forms(names: list[str]) -> str:
    own = ", ".join(names) if names else "(this study has no variant to name)"
    return f"a variant of this study ({own}), 'FILE.yaml VARIANT', a run id of results/runs, or a checkpoint path"


def resolve(
    expansion: Expansion, where: str, cfg: cfgmod.ExperimentConfig, ref: Reference
) -> tuple[cfgmod.ExperimentConfig, Named]:
    """``cfg`` with the run it names (``ref``) resolved and bound, and that run."""
    written = ref.named(cfg)
    key = f"{where}: {ref.key}"
    named = _find(expansion, key, written, cfg, ref)
    if kind_of(named.config).reference is not None:
        raise StudyFileError(
            expansion.spec.path,
            key,
            written,
            f"a run that names no other run (an {ref.label} run), not a {kind_of(named.config).name} run",
        )
    return ref.bind(cfg, run_id(named.config)), named


def _find(expansion: Expansion, key: str, ref: str, cfg: cfgmod.ExperimentConfig, reference: Reference) -> Named:
    spec = expansion.spec
    if not ref:
        raise StudyFileError(spec.path, key, ref, _forms(expansion.own_names))
    mine = expansion.own(ref, cfg.seed)
    if mine is not None:
        return Named(ref, mine, "variant")
    parts = ref.split()
    if len(parts) == 2 and parts[0].endswith((".yaml", ".yml")):
        return _other_study(expansion, key, parts[0], parts[1], cfg.seed)
    if RUN_ID.match(ref):
        folder = store.run_dir(store.results_root(), ref)
        if (folder / "config.yaml").is_file():
            return Named(f"run {ref}", store.read_config(folder), "run")
        raise StudyFileError(spec.path, key, ref, f"a run id with a run folder ({folder} does not exist)")
    path = Path(ref).expanduser()
    if not path.is_absolute():
        path = spec.path.parent / path
    if path.exists():
        as_run = reference.from_checkpoint(cfg, str(path.resolve()))
        return Named(path.name, with_init_digest(spec, key, as_run), "checkpoint")
    raise StudyFileError(spec.path, key, ref, _forms(expansion.own_names))


def _other_study(expansion: Expansion, key: str, file: str, variant: str, seed: int) -> Named:
    """A variant of another study file, expanded with this study's profile (where it has one of
    that name) and --set overrides."""
    spec, profile = expansion.spec, expansion.profile
    path = Path(file).expanduser()
    if not path.is_absolute():
        path = spec.path.parent / path
    if not path.is_file():
        raise StudyFileError(spec.path, key, f"{file} {variant}", f"an existing study file ({path} is not one)")
    path, here = path.resolve(), spec.path.resolve()
    if path == here or path in expansion.within:
        raise StudyFileError(
            spec.path,
            key,
            f"{file} {variant}",
            "another study file that does not refer back (name this study's own variants alone)",
        )
    other = load_study(path)
    variants = expansion.expand(
        other, profile if profile in other.profiles else None, expansion.extra, expansion.within + (here,)
    )
    named = [v for v in variants if variant == v.name or variant in v.aliases]
    if not named:
        names = sorted({v.name for v in variants} | {a for v in variants for a in v.aliases})
        raise StudyFileError(spec.path, key, f"{file} {variant}", f"a variant of {other.study}: {', '.join(names)}")
    chosen = next((v for v in named if v.seed == seed), named[0])
    return Named(f"{other.study}/{variant}", chosen.config, "study")
