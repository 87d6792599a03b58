"""A complexity-only run (Table 3): nothing trained and no checkpoint; the encoder's parameters,
MACs, throughput and peak memory are measured where the job runs."""

from __future__ import annotations

from typing import Any

from study import store
from study.kinds import autoencoder
from study.kinds.base import Config, Job, RunKind

MEASURED = ("throughput_img_s", "peak_mem_mb", "device", "batch", "precision")


def trains_nothing(cfg: Config) -> bool:
    """No steps and no checkpoint: there is nothing to evaluate, only the model to measure."""
    return cfg.task == autoencoder.KIND_TASK and cfg.train.steps == 0 and not cfg.model.init


def run(job: Job) -> dict[str, Any]:
    from study.measure import complexity  # torch, imported by the job only

    cfg = job.cfg
    if job.ctx.main:
        measured = complexity.measure_model(
            cfg.model, job.folder.name, cfg.data.resolution, cfg.train.batch_size, str(job.ctx.device)
        )
        record = complexity.run_record(cfg.model, cfg.data.resolution)
        store.write_complexity(job.folder, record | {k: measured[k] for k in MEASURED})
    return {"trained": False}


KIND = RunKind(
    name="complexity",
    task=autoencoder.KIND_TASK,
    claims=trains_nothing,
    reads=("model", "data.resolution", "train.batch_size", "train.precision", "seed"),
    run=run,
    work=autoencoder.work,
    total_steps=lambda cfg: 0,
    index_fields=autoencoder.index_fields,
    description="measures the model's parameters, MACs, throughput and memory (Table 3)",
)
