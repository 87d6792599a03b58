"""A trained autoencoder from its run folder: the checkpoint's raw or EMA weights, or its ``model.init``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from study import config, store
from study.autoencoder.steps import MissingEMA
from study.models.autoencoder import build_autoencoder
from study.trainer.checkpoints import CHECKPOINT, load_checkpoint


class MissingCheckpoint(FileNotFoundError):
    """A run has no checkpoint to load (e.g. a complexity-only run, ``train.steps: 0``): its
    model was never trained, so there is nothing to evaluate."""

    def __init__(self, folder: Path):
        self.folder = folder
        super().__init__(
            f"run {folder} has no checkpoint: expected {folder / CHECKPOINT} (a run with "
            f"train.steps 0 trains nothing, so it cannot be evaluated)"
        )


def load_trained(folder: Path, cfg: config.ExperimentConfig, device: torch.device) -> nn.Module:
    """The autoencoder of a run's last checkpoint, in eval mode; MissingCheckpoint when the run
    has none (never random weights)."""
    state = load_checkpoint(folder)
    if state is None and cfg.model.init:  # nothing trained yet (train.steps 0): the pretrained weights
        ae = build_autoencoder(config.autoencoder_args(cfg.model))
        _initialise(ae, cfg, None)
        return ae.to(device).eval()
    if state is None:
        raise MissingCheckpoint(folder)
    ae = build_autoencoder(config.autoencoder_args(cfg.model))
    ae.load_state_dict(_trained_weights(folder, state, cfg.eval.weights))
    return ae.to(device).eval()


def _trained_weights(folder: Path, state: dict[str, Any], weights: str) -> dict[str, Any]:
    """The checkpoint's autoencoder weights, or their EMA (``eval.weights: ema``); MissingEMA
    when the run kept none (train.ema_decay 0)."""
    if weights == "model":
        return state["autoencoder"]
    if state.get("ema") is None:
        raise MissingEMA(
            f"eval.weights is 'ema' but {folder / CHECKPOINT} has no EMA weights "
            f"(the run trained with train.ema_decay 0)"
        )
    return state["ema"]["module"]


def _initialise(ae: nn.Module, cfg: config.ExperimentConfig, folder: Path | None) -> None:
    """``model.init``'s weights into ``ae`` (study/autoencoder/pretrained.py), checked against the
    digest the run was planned with; what was loaded goes to the run's status when ``folder``."""
    from study.autoencoder.pretrained import apply_init

    report = apply_init(ae, cfg.model.init, expected_sha256=cfg.model.init_sha256 or None)
    if folder is not None:
        store.update_status(folder, **report.record())
