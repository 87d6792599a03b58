"""The whole job of a diffusion run (``task: diffusion``), given its folder: check that its frozen
autoencoder is done, encode the latent cache (or reuse it), train the UNet, sample and measure gFID.

The autoencoder's run folder is ``runs/<diffusion.autoencoder_id>`` beside the diffusion run's.
It must be completed (its DONE written): a diffusion model on a half-trained autoencoder's latents
would be measured against latents that later change. Otherwise ``AutoencoderNotReady`` names the
autoencoder, its state and the reason its status gives, so a diffusion run launched after a failed
autoencoder fails with that reason instead of waiting. The cache and the generation run on the
main process only; under DDP the other ranks wait for the cache at a barrier. Status and DONE are
the caller's (study/launch/job.py).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import torch.distributed as dist

from study import config, store
from study.diffusion.generate import generate
from study.diffusion.latents import build_cache
from study.diffusion.train import train_diffusion
from study.trainer.context import Context


class AutoencoderNotReady(RuntimeError):
    """The diffusion run's autoencoder run is not completed; the message says its state and why."""

    def __init__(self, autoencoder_id: str, state: str, reason: str | None):
        self.autoencoder_id, self.state, self.reason = autoencoder_id, state, reason
        why = f": {reason}" if reason else ""
        super().__init__(f"autoencoder run {autoencoder_id} is {state}{why}; the diffusion run needs it completed")


def autoencoder_folder(cfg: config.ExperimentConfig, folder: Path) -> Path:
    """``runs/<diffusion.autoencoder_id>`` of the results folder that holds ``folder``."""
    return store.run_dir(folder.parent.parent, cfg.diffusion.autoencoder_id)


def check_autoencoder(cfg: config.ExperimentConfig, folder: Path) -> Path:
    """The autoencoder's folder if its run is completed, else AutoencoderNotReady."""
    ae_folder = autoencoder_folder(cfg, folder)
    if not cfg.diffusion.autoencoder_id:
        raise AutoencoderNotReady("(none)", "missing", "diffusion.autoencoder_id is empty")
    if store.is_done(ae_folder):
        return ae_folder
    st = store.run_state(ae_folder)
    reason = st.reason or st.record.get("error") or st.record.get("reason")
    raise AutoencoderNotReady(cfg.diffusion.autoencoder_id, str(st.state), reason)


def run_diffusion(
    cfg: config.ExperimentConfig,
    folder: Path,
    ctx: Context,
    stop: threading.Event | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Cache -> train -> generate for the diffusion run in ``folder``; a summary: the autoencoder,
    whether the cache was reused, the training summary (``step``, ``loss``) and ``metrics``."""
    ae_folder = check_autoencoder(cfg, folder)
    summary: dict[str, Any] = {"autoencoder_id": cfg.diffusion.autoencoder_id}
    if ctx.main:
        cache = build_cache(cfg, ae_folder, ctx.device, progress=progress)
        summary["latent_cache"] = {"key": cache.meta["key"], "reused": cache.reused, "count": cache.count}
    if ctx.world > 1:
        dist.barrier()  # the cache is complete before any rank reads it
    summary.update(train_diffusion(cfg, folder, ae_folder, ctx, stop=stop, progress=progress))
    if ctx.main:
        record = generate(cfg, folder, ae_folder, ctx.device, progress=progress)
        summary["metrics"] = record.get("metrics", {})
        summary["unavailable"] = record.get("unavailable", {})
        summary["protocol_id"] = record["protocol_id"]
    return summary
