"""The training input pipeline: step s -> (the local batch of step s, its posterior noise), made
by DataLoader workers ahead of the step, pinned and copied to the device without blocking; and
the share of time the step waits on it.

The items are pure functions of the step (study/data/batches.py), so how many workers make
them, and in which process, changes no number: a worker-fed run equals a main-process one.
Workers (``train.num_workers``) run on CUDA, where the step is on the device and the host is
free to decode; on the CPU the main process makes the batches, as the step needs every core
(``pin_memory`` and ``non_blocking`` are CUDA's too). Workers persist for the run and keep
``PREFETCH`` batches each in flight.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from study import config
from study.data.batches import BatchStream, posterior_noise

if TYPE_CHECKING:
    from study.trainer.context import (
        Context,  # Batches in flight per worker (DataLoader's prefetch_factor); ours: 4 keeps a worker ahead
    )
# through a slow file without holding many 256x256 batches in pinned memory.
PREFETCH = 4
# The data-wait share above which the run's log says so (issue 15: 10%).
WAIT_WARNING = 0.10


class StepBatches(Dataset):
    """Item ``step``: the rank's slice of that step's global batch (float32, [-1, 1]) and the
    per-sample posterior noise of its samples (nz x R/8 x R/8 each), both on the CPU."""

    def __init__(self, cfg: config.ExperimentConfig, ctx: Context):
        self.cfg = cfg
        self.stream = BatchStream(cfg, ctx)

    def __len__(self) -> int:
        return self.cfg.train.steps

    def __getitem__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.stream.batch(step)
        latent = (self.cfg.model.latent_channels, x.shape[2] // 8, x.shape[3] // 8)
        return x, posterior_noise(self.cfg.seed, step, self.stream.indices(step), latent, torch.device("cpu"))


def workers_for(cfg: config.ExperimentConfig, device: torch.device) -> int:
    """DataLoader workers: train.num_workers on CUDA, none (the main process) on the CPU."""
    return cfg.train.num_workers if device.type == "cuda" else 0


def step_loader(dataset: Dataset, start: int, end: int, device: torch.device, workers: int) -> DataLoader:
    """The items of steps start..end-1 in order (no collation: an item is a batch)."""
    return DataLoader(
        dataset,
        batch_size=None,
        sampler=range(start, end),
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        prefetch_factor=PREFETCH if workers > 0 else None,
        # its own generator: an iterator draws its workers' base seed from it, never from the
        # global RNG, whose state the checkpoint saves (a resumed run creates one more iterator)
        generator=torch.Generator().manual_seed(0),
    )


class Batches:
    """Iterates (x, noise) on ``device`` for steps start..end-1 and times the waits on them."""

    def __init__(self, cfg: config.ExperimentConfig, ctx: Context, start: int, end: int, fmt: torch.memory_format):
        self.device, self.fmt = ctx.device, fmt
        self.workers = workers_for(cfg, ctx.device)
        self.loader = step_loader(StepBatches(cfg, ctx), start, end, ctx.device, self.workers)
        self._it: Iterator[tuple[torch.Tensor, torch.Tensor]] | None = None
        self.waited = 0.0  # seconds spent waiting on data since the last ``report``
        self._since, self._since_step = time.perf_counter(), start
        self._told = False  # whether a main-process run has said it waits on data

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        tic = time.perf_counter()
        if self._it is None:
            self._it = iter(self.loader)
        x, noise = next(self._it)
        x = x.to(self.device, memory_format=self.fmt, non_blocking=True)
        noise = noise.to(self.device, non_blocking=True)
        self.waited += time.perf_counter() - tic
        return x, noise

    def report(self, step: int) -> float:
        """The share of the time since the last report that went to waiting on data; over
        WAIT_WARNING, a line in the run's log (stderr) that says so. Resets the clock."""
        now = time.perf_counter()
        share = self.waited / max(now - self._since, 1e-9)
        if share > WAIT_WARNING and (self.workers > 0 or not self._told):
            where = (
                f"{self.workers} DataLoader workers; more train.num_workers or faster storage would help"
                if self.workers
                else "made in the main process, as on the CPU; said once per run"
            )
            tqdm.write(
                f"steps {self._since_step + 1}-{step}: waited on data {share:.0%} of the time "
                f"({self.waited:.2f} s of {now - self._since:.2f} s; {where})",
                file=sys.stderr,
            )
            self._told = True
        self.waited, self._since, self._since_step = 0.0, now, step
        return share
