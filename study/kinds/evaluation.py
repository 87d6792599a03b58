"""An evaluation-only run: a given checkpoint (``model.init``, ``train.steps: 0``) evaluated as it
is, e.g. the public SD-VAE weights of the protocol check."""

from __future__ import annotations

from typing import Any

from study import config
from study.kinds import autoencoder
from study.kinds.base import Config, Job, RunKind


def evaluates_as_given(cfg: Config) -> bool:
    """Nothing to train and a checkpoint to start from: the checkpoint is evaluated as it is."""
    return cfg.task == autoencoder.KIND_TASK and cfg.train.steps == 0 and bool(cfg.model.init)


def run(job: Job) -> dict[str, Any]:
    from study.data.eval_sets import check_size  # the job's stages, imported by the job only

    check_size(job.cfg.data, job.cfg.eval, config.eval_resolution(job.cfg))
    return {"step": 0} | autoencoder.evaluate_and_measure(job)


KIND = RunKind(
    name="evaluation",
    task=autoencoder.KIND_TASK,
    claims=evaluates_as_given,
    reads=("model", "data", "eval", "seed"),
    run=run,
    work=autoencoder.work,
    total_steps=lambda cfg: 0,
    index_fields=autoencoder.index_fields,
    description="evaluates a given checkpoint (model.init) as it is",
)
