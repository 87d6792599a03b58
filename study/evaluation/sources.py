"""Which autoencoder a reconstruction uses: a run (its folder, or its id under a results folder),
or a checkpoint file or folder whose model a config describes. ``run_study.py reconstruct`` reads
a study file's variant itself (the study file lies above this stage) and hands over its run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, cast

import torch

from study import config as cfgmod
from study import store
from study.autoencoder import pretrained, trained
from study.models.autoencoder import Autoencoder, build_autoencoder

CHECKPOINT_RESOLUTION = 256  # a checkpoint's resolution unless --resolution says otherwise (our choice)


class SourceError(ValueError):
    """A source that is neither a run nor a checkpoint."""


@dataclass(frozen=True)
class Source:
    """The autoencoder a reconstruction uses, its config and its run folder (None: a checkpoint)."""

    autoencoder: Autoencoder
    config: cfgmod.ExperimentConfig
    run: Path | None

    @property
    def resolution(self) -> int:
        """The resolution to reconstruct at by default: a run's data.resolution, else 256."""
        return self.config.data.resolution if self.run is not None else CHECKPOINT_RESOLUTION


def from_run(folder: Path, cfg: cfgmod.ExperimentConfig, device: torch.device) -> Autoencoder:
    """The trained autoencoder of a run folder (its last checkpoint), in eval mode on ``device``."""
    return cast(Autoencoder, trained.load_trained(folder, cfg, device))


def from_checkpoint(path: Path, cfg: cfgmod.ExperimentConfig, device: torch.device) -> Autoencoder:
    """The model ``cfg`` describes with the weights of ``path`` (``model.init``'s loader)."""
    autoencoder = build_autoencoder(cfgmod.autoencoder_args(cfg.model))
    pretrained.apply_init(autoencoder, path)
    return autoencoder.to(device).eval()


def resolve_source(
    source: str, root: Path, checkpoint_config: Callable[[], cfgmod.ExperimentConfig], device: torch.device
) -> Source:
    """The autoencoder of ``source``: a run folder, a checkpoint (its model from
    ``checkpoint_config()``), or a run id under ``root``; SourceError for anything else."""
    path = Path(source).expanduser()
    if path.is_dir() and (path / "config.yaml").is_file():  # a run folder
        cfg = store.read_config(path)
        return Source(from_run(path, cfg, device), cfg, path)
    if path.exists():  # a checkpoint: the model is described by the caller's config
        cfg = checkpoint_config()
        return Source(from_checkpoint(path, cfg, device), cfg, None)
    folder = store.run_dir(root, source)
    if (folder / "config.yaml").is_file():
        cfg = store.read_config(folder)
        return Source(from_run(folder, cfg, device), cfg, folder)
    raise SourceError(f"{source}: neither a study file, a checkpoint nor a run under {root / 'runs'}")
