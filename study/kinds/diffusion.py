"""A latent diffusion run (Tables 7, 13): a denoiser trained on a frozen autoencoder's latents,
then its samples' generation FID. It needs its autoencoder's run completed first."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from study import config
from study.diffusion import checks
from study.kinds.base import Config, Job, Reference, RunKind
from study.measure import cost

TASK = "diffusion"


def is_diffusion(cfg: Config) -> bool:
    return cfg.task == TASK


def identity(d: dict[str, Any]) -> dict[str, Any]:
    """A diffusion run is its diffusion settings, the frozen autoencoder's run id (inside them:
    the autoencoder's own identity, transitively), the data its latents come from, the precision
    and the seed; the autoencoder's model and loss sections are not its own."""
    return {
        "task": d["task"],
        "diffusion": d["diffusion"],
        "data": d["data"],
        "precision": d["train"]["precision"],
        "seed": d["seed"],
    }


def needs(cfg: Config) -> tuple[str, ...]:
    """The frozen autoencoder's run (``diffusion.autoencoder_id``, filled in by the study file)."""
    return (cfg.diffusion.autoencoder_id,) if cfg.diffusion.autoencoder_id else ()


def bind(cfg: Config, autoencoder_id: str) -> Config:
    return dataclasses.replace(cfg, diffusion=dataclasses.replace(cfg.diffusion, autoencoder_id=autoencoder_id))


def from_checkpoint(cfg: Config, path: str) -> Config:
    """A checkpoint named as the autoencoder: described by the diffusion variant's ``model``
    section, evaluated as it is (``train.steps: 0``)."""
    return dataclasses.replace(
        cfg,
        task="autoencoder",
        diffusion=config.DiffusionConfig(),
        model=dataclasses.replace(cfg.model, init=path),
        train=dataclasses.replace(cfg.train, steps=0, stages=()),
    )


AUTOENCODER = Reference(
    key="diffusion.autoencoder",
    named=lambda cfg: cfg.diffusion.autoencoder.strip(),
    bind=bind,
    from_checkpoint=from_checkpoint,
    label="autoencoder",
)


def run(job: Job) -> dict[str, Any]:
    from study.diffusion.run import run_diffusion  # torch, imported by the job only

    return run_diffusion(job.cfg, job.folder, job.ctx, stop=job.stop, progress=job.progress)


def step_time_key(cfg: Config, resolution: int, device: str | None) -> str:
    """``diffusion-<unet>/z<latent channels>/<resolution>px/<precision>``."""
    precision = cost.precision_on(cfg, device)
    return f"diffusion-{cfg.diffusion.unet}/z{cfg.model.latent_channels}/{resolution}px/{precision}"


def work(cfg: Config, others: Mapping[str, Config]) -> cost.Work:
    """The denoiser's steps; the counts shown are the frozen autoencoder's, where it is in the plan."""
    ae = others.get(cfg.diffusion.autoencoder_id)
    return cost.Work(
        resolution=cfg.data.resolution,
        model=ae.model if ae else None,
        model_resolution=ae.data.resolution if ae else cfg.data.resolution,
        stages=((cfg.diffusion.steps, cfg.diffusion.batch_size, cfg.data.resolution),),
        key=lambda resolution, device: step_time_key(cfg, resolution, device),
        forward_macs=cost.denoiser_macs(cfg),  # the FLOP estimate without a recorded figure
        precision=cfg.train.precision,
    )


def index_fields(cfg: Config) -> dict[str, Any]:
    from study.diffusion.generate import sampler  # torch: imported where a diffusion run is expanded

    return {
        "dataset": cfg.data.name,
        "resolution": config.eval_resolution(cfg),
        "latent": None,
        "autoencoder_id": cfg.diffusion.autoencoder_id,
        "generates": True,  # the report shows its samples and generation FID
        "trains": {"steps": "diffusion.steps", "batch": "diffusion.batch_size", "lr": "diffusion.lr"},
        "sampler": sampler(cfg.diffusion),  # its DDIM steps, eta and precision
    }


KIND = RunKind(
    name="diffusion",
    task=TASK,
    claims=is_diffusion,
    reads=("diffusion", "data", "train.precision", "seed"),
    run=run,
    work=work,
    total_steps=lambda cfg: cfg.diffusion.steps,
    identity=identity,
    needs=needs,
    index_fields=index_fields,
    check=checks.check_diffusion,
    reference=AUTOENCODER,
    description="trains a latent diffusion model on a frozen autoencoder's latents; generation FID",
)
