"""A diffusion variant's frozen autoencoder: ``diffusion.autoencoder`` resolved to a run.

A diffusion run (Tables 7, 13) trains on the latents of an autoencoder the study file names in
one of four ways, tried in this order:

1. ``sd-vae``: a variant of the same study (with the diffusion variant's seed when the
   autoencoder has it, else its first seed);
2. ``table2a.yaml LiteVAE-B``: a variant of another study file (its path relative to this study
   file's folder), expanded with the same profile;
3. ``6e47d7f8241b``: a run id whose folder exists under the results root;
4. ``/ckpt/sd-vae-ft-mse``: a checkpoint (``model.init``'s forms), described by the diffusion
   variant's own ``model`` section and evaluated as it is (``train.steps: 0``).

Each resolves to the autoencoder's config; its run id becomes ``diffusion.autoencoder_id`` (the
diffusion run's identity), and the autoencoder is a run of the study too, so one ``launch`` trains
or evaluates it first. A reference that is none of these is a StudyFileError naming the forms.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from study import config as cfgmod
from study import store
from study.studyfile.parse import StudyFile, StudyFileError

RUN_ID = re.compile(r"^[0-9a-f]{12}$")
_EXPANDING: list[Path] = []  # study files whose expansion is resolving another's (a cycle is an error)


@dataclass(frozen=True)
class Autoencoder:
    """The resolved autoencoder: its config and a readable name for plans and reports."""

    name: str
    config: cfgmod.ExperimentConfig
    source: str  # "variant" (this study), "study" (another file), "run", "checkpoint"


def _forms(names: list[str]) -> str:
    own = ", ".join(names) if names else "(this study has no autoencoder variant)"
    return f"a variant of this study ({own}), 'FILE.yaml VARIANT', a run id of results/runs, or a checkpoint path"


def resolve(
    spec: StudyFile,
    where: str,
    cfg: cfgmod.ExperimentConfig,
    own: Callable[[str, int], cfgmod.ExperimentConfig | None],
    own_names: list[str],
    expansion: tuple[str | None, dict[str, Any] | None],
    with_digest: Callable[[StudyFile, str, cfgmod.ExperimentConfig], cfgmod.ExperimentConfig],
) -> tuple[cfgmod.ExperimentConfig, Autoencoder]:
    """``cfg`` (a diffusion variant) with ``diffusion.autoencoder_id`` set, and its autoencoder.
    ``own(name, seed)``: the config of this study's variant of that name, or None; ``expansion``:
    the profile and the --set overrides of this study, applied to another study's variant too."""
    ref = cfg.diffusion.autoencoder.strip()
    key = f"{where}: diffusion.autoencoder"
    ae = _find(spec, key, ref, cfg, own, own_names, expansion, with_digest)
    if ae.config.task != "autoencoder":
        raise StudyFileError(spec.path, key, ref, "an autoencoder run (task: autoencoder), not a diffusion run")
    resolved = dataclasses.replace(
        cfg, diffusion=dataclasses.replace(cfg.diffusion, autoencoder_id=cfgmod.run_id(ae.config))
    )
    return resolved, ae


def _find(
    spec: StudyFile,
    key: str,
    ref: str,
    cfg: cfgmod.ExperimentConfig,
    own: Callable[[str, int], cfgmod.ExperimentConfig | None],
    own_names: list[str],
    expansion: tuple[str | None, dict[str, Any] | None],
    with_digest: Callable[[StudyFile, str, cfgmod.ExperimentConfig], cfgmod.ExperimentConfig],
) -> Autoencoder:
    if not ref:
        raise StudyFileError(spec.path, key, ref, _forms(own_names))
    mine = own(ref, cfg.seed)
    if mine is not None:
        return Autoencoder(ref, mine, "variant")
    parts = ref.split()
    if len(parts) == 2 and parts[0].endswith((".yaml", ".yml")):
        return _other_study(spec, key, parts[0], parts[1], cfg.seed, expansion)
    if RUN_ID.match(ref):
        folder = store.run_dir(store.results_root(), ref)
        if (folder / "config.yaml").is_file():
            return Autoencoder(f"run {ref}", store.read_config(folder), "run")
        raise StudyFileError(spec.path, key, ref, f"a run id with a run folder ({folder} does not exist)")
    path = Path(ref).expanduser()
    if not path.is_absolute():
        path = spec.path.parent / path
    if path.exists():
        as_autoencoder = dataclasses.replace(
            cfg,
            task="autoencoder",
            diffusion=cfgmod.DiffusionConfig(),
            model=dataclasses.replace(cfg.model, init=str(path.resolve())),
            train=dataclasses.replace(cfg.train, steps=0, stages=()),
        )
        return Autoencoder(path.name, with_digest(spec, key, as_autoencoder), "checkpoint")
    raise StudyFileError(spec.path, key, ref, _forms(own_names))


def _other_study(
    spec: StudyFile, key: str, file: str, variant: str, seed: int, expansion: tuple[str | None, dict[str, Any] | None]
) -> Autoencoder:
    """A variant of another study file, expanded with this study's profile (where it has one of
    that name) and --set overrides."""
    profile, extra = expansion
    from study.studyfile.grid import expand  # grid imports this module
    from study.studyfile.parse import load_study

    path = Path(file).expanduser()
    if not path.is_absolute():
        path = spec.path.parent / path
    if not path.is_file():
        raise StudyFileError(spec.path, key, f"{file} {variant}", f"an existing study file ({path} is not one)")
    path, here = path.resolve(), spec.path.resolve()
    if path == here or path in _EXPANDING:
        raise StudyFileError(
            spec.path,
            key,
            f"{file} {variant}",
            "another study file that does not refer back (name this study's own variants alone)",
        )
    other = load_study(path)
    _EXPANDING.append(here)
    try:
        variants = expand(other, profile if profile in other.profiles else None, extra)
    finally:
        _EXPANDING.pop()
    named = [v for v in variants if variant == v.name or variant in v.aliases]
    if not named:
        names = sorted({v.name for v in variants} | {a for v in variants for a in v.aliases})
        raise StudyFileError(spec.path, key, f"{file} {variant}", f"a variant of {other.study}: {', '.join(names)}")
    chosen = next((v for v in named if v.seed == seed), named[0])
    return Autoencoder(f"{other.study}/{variant}", chosen.config, "study")
