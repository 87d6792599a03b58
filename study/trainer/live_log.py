"""Live curves while a run trains: TensorBoard event files in ``<run>/tensorboard/``, and Weights &
Biases when ``train.wandb_project`` is set and wandb is installed; written by the main process
only. The scalars and the trainer's hooks: docs/reports.md, "The live-curve scalars".
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from study import config as cfgmod
from study.store.media import tensorboard_dir

NOT_LOSSES = {"step", "images_per_s", "resolution", "adversarial_weight"}
Network = tuple[nn.Module | None, torch.optim.Optimizer | None]


class LiveLogWarning(UserWarning):
    """A live-curve sink asked for could not be used (the run trains on without it)."""


@dataclass
class LiveLog:
    """One run's open sinks and the networks whose gradients and learning rates it reads."""

    writer: Any = None  # torch.utils.tensorboard.SummaryWriter
    wandb_run: Any = None
    networks: dict[str, Network] = field(default_factory=dict)

    def write(self, step: int, values: dict[str, float]) -> None:
        values = {k: v for k, v in values.items() if math.isfinite(v)}
        if self.writer is not None:
            for tag, value in values.items():
                self.writer.add_scalar(tag, value, step)
            self.writer.flush()  # live: readable by TensorBoard at once
        if self.wandb_run is not None:
            self.wandb_run.log(values, step=step)

    def training(self, record: dict[str, Any]) -> dict[str, float]:
        """The tags and values of one metrics.jsonl training record, with gradient norms and
        learning rates read from the networks."""
        values = {"loss/total": record["loss"], "speed/images_per_s": record["images_per_s"]}
        values["train/resolution"] = record["resolution"]
        values |= {f"loss/{k}": v for k, v in record.items() if k not in NOT_LOSSES and k != "loss"}
        if "adversarial_weight" in record:
            values["adversarial/weight"] = record["adversarial_weight"]
        for name, (_, optimizer) in self.networks.items():
            if optimizer is not None:
                values[f"lr/{name}"] = float(optimizer.param_groups[0]["lr"])
        return values | gradient_norms({k: m for k, (m, _) in self.networks.items() if m is not None})

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()


def gradient_norms(modules: dict[str, nn.Module]) -> dict[str, float]:
    """``grad_norm/<name>``: the L2 norm of all of a module's gradients (those in ``.grad`` now:
    the last update's), for the modules that hold any; one device-to-host transfer for all."""
    norms = {}
    for name, module in modules.items():
        grads = [p.grad.detach().float() for p in module.parameters() if p.grad is not None]
        if grads:
            norms[f"grad_norm/{name}"] = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))
    if not norms:
        return {}
    return dict(zip(norms, torch.stack(list(norms.values())).tolist()))


_OPEN: dict[str, LiveLog] = {}  # the live logs of the runs training in this process, by folder


def _tensorboard(folder: Path, step: int) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:  # a declared dependency; still, training goes on without curves
        warnings.warn(f"no TensorBoard curves for {folder}: {e}", LiveLogWarning, stacklevel=3)
        return None
    return SummaryWriter(str(tensorboard_dir(folder)), purge_step=step + 1 if step > 0 else None)


def _wandb(cfg: cfgmod.ExperimentConfig, folder: Path) -> Any:
    """A W&B run for ``train.wandb_project`` (None when unset, or when wandb is not installed:
    never a hard dependency). The W&B run's id is the run's, so a resumed run continues it."""
    if not cfg.train.wandb_project:
        return None
    try:
        import wandb  # type: ignore[import-not-found]
    except ImportError:
        warnings.warn(
            f"train.wandb_project is {cfg.train.wandb_project!r} but wandb is not installed: TensorBoard only",
            LiveLogWarning,
            stacklevel=3,
        )
        return None
    return wandb.init(
        project=cfg.train.wandb_project,
        id=folder.name,
        name=folder.name,
        resume="allow",
        dir=str(folder),
        config=cfgmod.to_dict(cfg),
    )


def open_run(cfg: cfgmod.ExperimentConfig, folder: Path, main: bool, step: int, networks: dict[str, Network]) -> None:
    """Open the run's sinks (main process only); ``step``: the step training resumes from;
    ``networks``: name -> (module, optimiser), either None where the run has none."""
    close(folder)
    if main:
        _OPEN[os.fspath(folder)] = LiveLog(_tensorboard(folder, step), _wandb(cfg, folder), dict(networks))


def scalars(folder: Path, record: dict[str, Any]) -> None:
    """A training record (metrics.jsonl's) of the run in ``folder``; nothing when none is open."""
    live = _OPEN.get(os.fspath(folder))
    if live is not None:
        live.write(int(record["step"]), live.training(record))


def validation(folder: Path, step: int, psnr: float) -> None:
    live = _OPEN.get(os.fspath(folder))
    if live is not None:
        live.write(step, {"val/psnr": psnr})


def during(folder: Path, step: int, weights: str, metrics: dict[str, float]) -> None:
    """Protocol metrics of ``weights`` (model, ema) measured at ``step`` during training."""
    live = _OPEN.get(os.fspath(folder))
    if live is not None:
        live.write(step, {f"during/{weights}/{k}": float(v) for k, v in metrics.items()})


def close(folder: Path) -> None:
    live = _OPEN.pop(os.fspath(folder), None)
    if live is not None:
        live.close()
