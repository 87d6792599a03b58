"""Where and how a run trains (device, DDP rank and world size), and a preemption stop."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from study import config


class Preempted(RuntimeError):
    """Training stopped on request (preemption) after writing a checkpoint."""


@dataclass
class Context:
    """Where and how a run trains: the device, the DDP rank and world size."""

    device: torch.device
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def default_context() -> Context:
    """The device and, when torch.distributed is initialised, the rank and world size."""
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    else:
        rank, world = 0, 1
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", rank % max(torch.cuda.device_count(), 1)))
        torch.cuda.set_device(local)
        return Context(torch.device("cuda", local), rank, world)
    return Context(torch.device("cpu"), rank, world)


def use_bf16(cfg: config.ExperimentConfig, device: torch.device) -> bool:
    return cfg.train.precision == "bf16" or (cfg.train.precision == "auto" and device.type == "cuda")
