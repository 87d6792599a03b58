"""The checks of a diffusion run's own section (``diffusion``): run by its run kind."""

from __future__ import annotations

from study import config

_AUTOENCODER_FORMS = "a variant of this study, 'FILE.yaml VARIANT', a run id, or a checkpoint path"


def check_diffusion(cfg: config.ExperimentConfig) -> None:
    """A diffusion run names its autoencoder; its schedule and sampler are well formed."""
    dif = cfg.diffusion
    if not (dif.autoencoder or dif.autoencoder_id):
        raise config.ConfigError("diffusion.autoencoder", dif.autoencoder, _AUTOENCODER_FORMS)
    for key in ("diffusion.steps", "diffusion.batch_size", "diffusion.num_samples", "diffusion.sample_batch_size"):
        if config.get_value(cfg, key) < 1:
            raise config.ConfigError(key, config.get_value(cfg, key), "an integer >= 1")
    if dif.warmup_steps < 0:
        raise config.ConfigError("diffusion.warmup_steps", dif.warmup_steps, "an integer >= 0 (0: no warm-up)")
    if dif.cache_images < 1:
        raise config.ConfigError("diffusion.cache_images", dif.cache_images, "an integer >= 1")
    if dif.timesteps < 2:
        raise config.ConfigError("diffusion.timesteps", dif.timesteps, "an integer >= 2")
    if not 1 <= dif.sampler_steps <= dif.timesteps // 2:  # LDM's uniform DDIM steps are shifted by one
        raise config.ConfigError(
            "diffusion.sampler_steps", dif.sampler_steps, f"an integer in [1, {dif.timesteps // 2}]"
        )
    if not 0.0 < dif.linear_start < dif.linear_end < 1.0:
        raise config.ConfigError(
            "diffusion.linear_end", dif.linear_end, f"0 < linear_start ({dif.linear_start}) < linear_end < 1"
        )
    if not 0.0 <= dif.ema_decay < 1.0:
        raise config.ConfigError("diffusion.ema_decay", dif.ema_decay, "a number in [0, 1) (0: no EMA)")
    if dif.eta < 0:
        raise config.ConfigError("diffusion.eta", dif.eta, "a number >= 0 (0: deterministic DDIM)")
    if dif.scale_factor is not None and dif.scale_factor <= 0:
        raise config.ConfigError("diffusion.scale_factor", dif.scale_factor, "a number > 0, or null (measured: 1/std)")
    if dif.reference_images != "all" and dif.reference_images < 1:
        raise config.ConfigError("diffusion.reference_images", dif.reference_images, "an integer >= 1, or 'all'")
