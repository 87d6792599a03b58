"""The training batches and noise of a step, as pure functions of (seed, step, global sample index):
a run resumed from a checkpoint, or split over DDP ranks, computes the same steps as one process."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from study import config
from study.data.datasets import train_set

if TYPE_CHECKING:
    from study.trainer.context import Context


def _sample_seed(seed: int, step: int, index: int, stream: int) -> int:
    return (seed * 1_000_003 + step * 7919 + index * 104_729 + stream * 15_485_863) % (2**63 - 1)


def posterior_noise(seed: int, step: int, indices: range, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Per-sample standard normal noise, a pure function of (seed, step, global sample index)."""
    out = []
    for i in indices:
        g = torch.Generator().manual_seed(_sample_seed(seed, step, i, stream=1))
        out.append(torch.randn(shape, generator=g))
    return torch.stack(out).to(device)


def stage_at(cfg: config.ExperimentConfig, step: int) -> config.Stage:
    """The resolution stage that step ``step`` (0-based) belongs to."""
    end = 0
    for stage in config.stages(cfg):
        end += stage.steps
        if step < end:
            return stage
    return config.stages(cfg)[-1]


class BatchStream:
    """The global batch of step s is samples [s*B, (s+1)*B) of the endless training stream;
    rank r of w takes its contiguous slice. Resuming at step s needs nothing but s."""

    def __init__(self, cfg: config.ExperimentConfig, ctx: Context):
        self.cfg, self.ctx = cfg, ctx
        B = cfg.train.batch_size
        if B % ctx.world:
            raise ValueError(f"train.batch_size {B} is not divisible by the {ctx.world} DDP ranks")
        self.local = B // ctx.world
        self._sets: dict[int, Any] = {}

    def indices(self, step: int) -> range:
        start = step * self.cfg.train.batch_size + self.ctx.rank * self.local
        return range(start, start + self.local)

    def batch(self, step: int) -> torch.Tensor:
        res = stage_at(self.cfg, step).resolution
        if res not in self._sets:
            self._sets[res] = train_set(self.cfg.data, res, self.cfg.seed)
        ds = self._sets[res]
        return torch.stack([ds[i] for i in self.indices(step)])
