"""A tiny frozen autoencoder run and tiny diffusion configs on it, for the diffusion tests
(tests/test_latent_cache.py, tests/test_diffusion_train.py, tests/test_generate.py).

The autoencoder is the launcher tests' tiny LiteVAE-S at 32x32 (latents 4 x 4 x 4), trained for
4 real steps by the real trainer and marked done, so its folder is what a completed run leaves:
config.yaml, a checkpoint, DONE. The diffusion configs use the ``tiny`` UNet preset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from study import config as cfgmod
from study import store
from study.autoencoder.loop import train
from study.kinds.registry import run_id
from study.trainer.context import Context
from tests.launch_helpers import TINY_SET

CPU = Context(torch.device("cpu"))

DIFFUSION: dict[str, Any] = {
    "task": "diffusion",
    "data.kind": "samples",
    "data.resolution": 32,
    "diffusion.unet": "tiny",
    "diffusion.steps": 20,
    "diffusion.batch_size": 16,
    "diffusion.lr": 1e-3,
    "diffusion.warmup_steps": 0,
    "diffusion.ema_decay": 0.9,
    "diffusion.cache_images": 64,
    "diffusion.num_samples": 16,
    "diffusion.sampler_steps": 10,
    "diffusion.sample_batch_size": 16,
    "train.log_every": 1,
    "train.checkpoint_every": 10,
}


def tiny_autoencoder(root: Path) -> Path:
    """A completed tiny autoencoder run in ``root/runs``; its folder."""
    cfg = cfgmod.validate(
        cfgmod.apply_overrides(cfgmod.ExperimentConfig(), TINY_SET | {"train.steps": 4, "train.log_every": 100})
    )
    folder = store.init_run(root, cfg, run_id(cfg))
    train(cfg, folder, CPU, progress=False)
    store.mark_done(folder)
    return folder


def diffusion_cfg(ae_folder: Path, **overrides: Any) -> cfgmod.ExperimentConfig:
    """A tiny diffusion config on the autoencoder run in ``ae_folder`` (dotted-key overrides)."""
    return cfgmod.validate(
        cfgmod.apply_overrides(
            cfgmod.ExperimentConfig(), DIFFUSION | {"diffusion.autoencoder_id": ae_folder.name} | overrides
        )
    )


def diffusion_run(ae_folder: Path, **overrides: Any) -> tuple[cfgmod.ExperimentConfig, Path]:
    """(config, folder) of a fresh diffusion run beside the autoencoder run."""
    cfg = diffusion_cfg(ae_folder, **overrides)
    return cfg, store.init_run(ae_folder.parent.parent, cfg, run_id(cfg))
