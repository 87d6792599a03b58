"""An autoencoder run (Tables 1, 2, 4, 5, 8-12, 14-22): train, evaluate under the protocol,
record the model's complexity."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from study import config, store
from study.kinds.base import Config, Job, RunKind
from study.measure import cost


def trains(cfg: Config) -> bool:
    """An autoencoder run trains when it has steps to take."""
    return cfg.task == KIND_TASK and cfg.train.steps > 0


def evaluate_and_measure(job: Job) -> dict[str, Any]:
    """The trained (or given) autoencoder evaluated under the run's protocol, its complexity
    recorded; on the main process only."""
    from study.autoencoder.trained import load_trained  # the job's stages: torch, imported by the job only
    from study.evaluation.evaluate import evaluate
    from study.measure import complexity

    if not job.ctx.main:
        return {}
    ae = load_trained(job.folder, job.cfg, job.ctx.device)
    record = evaluate(ae, job.cfg, job.folder, job.ctx.device, progress=job.progress)
    store.write_complexity(job.folder, complexity.run_record(job.cfg.model, job.cfg.data.resolution))
    return {"metrics": record.get("metrics", {})}


def run(job: Job) -> dict[str, Any]:
    from study.autoencoder.loop import train  # the job's stages: torch, imported by the job only
    from study.data.eval_sets import check_size
    from study.evaluation.during import during_evaluator

    cfg = job.cfg
    check_size(cfg.data, cfg.eval, config.eval_resolution(cfg))  # before any step: names both numbers
    # eval.during: protocol metrics while training, measured by the main process (study/trainer/watch.py)
    during = during_evaluator(cfg, job.folder, job.ctx.device) if cfg.eval.during.every and job.ctx.main else None
    summary = train(cfg, job.folder, ctx=job.ctx, stop=job.stop, progress=job.progress, on_eval=during)
    return summary | evaluate_and_measure(job)


def work(cfg: Config, others: Mapping[str, Config]) -> cost.Work:
    """Each resolution stage at its own step time (``cost.step_time_key``)."""
    return cost.Work(
        resolution=cfg.data.resolution,
        model=cfg.model,
        model_resolution=cfg.data.resolution,
        stages=tuple((s.steps, cfg.train.batch_size, s.resolution) for s in config.stages(cfg)),
        key=lambda resolution, device: cost.step_time_key(cfg, resolution, device),
        forward_macs=cost.autoencoder_macs(cfg),  # the FLOP estimate without a recorded figure
        precision=cfg.train.precision,
    )


def index_fields(cfg: Config) -> dict[str, Any]:
    """The dataset, evaluation resolution and latent shape the report shows beside the run."""
    res = config.eval_resolution(cfg)
    return {
        "dataset": cfg.data.name,
        "resolution": res,
        "latent": f"{res // 8}x{res // 8}x{cfg.model.latent_channels}",
        "trains": TRAINS if cfg.train.steps else {},
    }


# the config keys of what a run trains, as the report's setup table reads them
TRAINS = {"steps": "train.steps", "batch": "train.batch_size", "lr": "train.lr"}


KIND_TASK = "autoencoder"
KIND = RunKind(
    name="autoencoder",
    task=KIND_TASK,
    claims=trains,
    reads=("model", "loss", "train", "data", "eval", "seed"),
    run=run,
    work=work,
    total_steps=lambda cfg: cfg.train.steps,
    index_fields=index_fields,
    description="trains an autoencoder, then evaluates it and records its complexity",
)
