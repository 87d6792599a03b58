"""A variant's ``model.init`` resolved against the study file's folder (a run id stays as it is),
and ``model.init_sha256`` set from the file: the weights a run starts from are its identity.
Hashing reads the file only (study/store/checkpoint_files.py), never torch."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from study import config as cfgmod
from study.config import site
from study.store.checkpoint_files import CheckpointError, checkpoint_sha256
from study.studyfile.document import StudyFile
from study.studyfile.yamlfile import StudyFileError


def with_init_digest(spec: StudyFile, where: str, cfg: cfgmod.ExperimentConfig) -> cfgmod.ExperimentConfig:
    """``cfg`` with ``model.init`` made absolute where it names a file beside the study file, and
    ``model.init_sha256`` the sha256 of its weights; StudyFileError if it names no checkpoint."""
    for problem in site.unresolved(cfg, ("model.init",)):  # ${checkpoints.X} the site file lacks
        raise StudyFileError(spec.path, f"{where}: model.init", cfg.model.init, problem.allowed)
    init = Path(cfg.model.init).expanduser()
    if not init.is_absolute() and (spec.path.parent / init).exists():
        init = (spec.path.parent / init).resolve()
    source = str(init) if init.exists() else cfg.model.init
    try:
        digest = checkpoint_sha256(source)  # cached per (file, size, mtime)
    except CheckpointError as e:
        raise StudyFileError(
            spec.path, f"{where}: model.init", cfg.model.init, f"a readable checkpoint ({e})"
        ) from None
    return replace(cfg, model=replace(cfg.model, init=source, init_sha256=digest))
