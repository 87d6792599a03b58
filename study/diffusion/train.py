"""Training a latent diffusion model (Tables 7, 13) on a frozen autoencoder's cached latents: LDM's
UNet, schedule, optimiser, warm-up and EMA, with batches drawn per step from seeded generators so
a resumed run computes the same steps. Details: docs/diffusion.md, "Training the denoiser".
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm import tqdm

from study import config as cfgmod
from study import store
from study.autoencoder.steps import MissingEMA
from study.diffusion.latents import LatentCache, open_cache
from study.models import gaussian_diffusion
from study.models.ldm_unet import UNET_PRESETS, build_unet
from study.trainer import accelerate
from study.trainer.checkpoints import CHECKPOINT, load_checkpoint, restore_rng, write_checkpoint
from study.trainer.context import Context, Preempted, use_bf16
from study.trainer.ema import EMA

_BATCH_STREAM = 0xD1F  # the per-step generator's stream, apart from the data's and the posterior's


# --------------------------------------------------------------------------------------------
# the pieces: the network, the schedule, the scale factor, the batch of a step
# --------------------------------------------------------------------------------------------
def build_denoiser(cfg: cfgmod.ExperimentConfig, latent_channels: int) -> nn.Module:
    """The UNet preset ``diffusion.unet`` with in/out channels = the latent's channels."""
    args = dataclasses.replace(
        UNET_PRESETS[cfg.diffusion.unet], in_channels=latent_channels, out_channels=latent_channels
    )
    return build_unet(args)


def schedule_args(cfg: cfgmod.ExperimentConfig) -> gaussian_diffusion.ScheduleArgs:
    d = cfg.diffusion
    return gaussian_diffusion.ScheduleArgs(
        timesteps=d.timesteps, linear_start=d.linear_start, linear_end=d.linear_end, loss=d.loss
    )


def scale_factor(cfg: cfgmod.ExperimentConfig, cache: LatentCache) -> float:
    """``diffusion.scale_factor``, else the cache's measured 1/std of the chosen latent kind."""
    given = cfg.diffusion.scale_factor
    return float(given) if given is not None else cache.scale_factor(cfg.diffusion.latent)


def _step_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step * 7919 + _BATCH_STREAM * 15_485_863) % (2**63 - 1)


@dataclass(frozen=True)
class DiffusionBatch:
    """The global batch of one step: cache indices, flip choices, timesteps and noise."""

    index: Tensor
    flip: Tensor
    t: Tensor
    noise: Tensor

    def local(self, ctx: Context) -> DiffusionBatch:
        """Rank ``ctx.rank``'s contiguous slice (the whole batch without DDP)."""
        n = len(self.index) // ctx.world
        s = slice(ctx.rank * n, (ctx.rank + 1) * n)
        return DiffusionBatch(self.index[s], self.flip[s], self.t[s], self.noise[s])


def draw_batch(
    seed: int, step: int, batch: int, count: int, flips: int, shape: tuple[int, ...], timesteps: int
) -> DiffusionBatch:
    """Step ``step``'s draws, all from one generator seeded by (seed, step): a pure function."""
    g = torch.Generator().manual_seed(_step_seed(seed, step))
    index = torch.randint(count, (batch,), generator=g)
    flip = torch.randint(flips, (batch,), generator=g)
    t = torch.randint(timesteps, (batch,), generator=g)
    noise = torch.randn((batch, *shape), generator=g)
    return DiffusionBatch(index, flip, t, noise)


# --------------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------------
def save_diffusion_checkpoint(
    folder: Path, step: int, unet: nn.Module, opt: torch.optim.Optimizer, ema: EMA | None, scale: float
) -> None:
    """The UNet, AdamW, the EMA, the step and the scale factor (with the RNG states, atomically:
    ``study.trainer.checkpoints.write_checkpoint``)."""
    state = {
        "task": "diffusion",
        "step": step,
        "unet": _unwrap(unet).state_dict(),
        "optimizer": opt.state_dict(),
        "ema": ema.state_dict() if ema is not None else None,
        "scale_factor": scale,
    }
    write_checkpoint(folder, state)


def resume_diffusion(folder: Path, unet: nn.Module, opt: torch.optim.Optimizer, ema: EMA | None) -> int:
    """Load the last checkpoint into the UNet, AdamW, the EMA and the RNGs; the step to continue
    from (0 without one)."""
    state = load_checkpoint(folder)
    if state is None:
        return 0
    unet.load_state_dict(state["unet"])
    if ema is not None:
        if state.get("ema") is None:
            raise MissingEMA(f"{folder / CHECKPOINT} has no EMA weights to resume diffusion.ema_decay from")
        ema.load_state_dict(state["ema"])
    opt.load_state_dict(state["optimizer"])
    restore_rng(state)
    return int(state["step"])


# LDM's LambdaLinearScheduler of the KL-f8 config: from f_start 1e-6 x lr to lr over warm_up_steps.
WARMUP_START = 1e-6


def learning_rate(d: cfgmod.DiffusionConfig, step: int) -> float:
    """The learning rate of step ``step`` (from 0): a linear warm-up, then constant."""
    if step >= d.warmup_steps:
        return d.lr
    return d.lr * (WARMUP_START + (1.0 - WARMUP_START) * step / d.warmup_steps)


def _unwrap(m: nn.Module) -> nn.Module:
    return m.module if isinstance(m, nn.parallel.DistributedDataParallel) else m


# --------------------------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------------------------
@dataclass
class _Setup:
    """What the loop works with: the cached latents (F x N x C x h x w), the scale factor, the
    networks, the optimiser and the step to start from."""

    latents: Tensor
    scale: float
    unet: nn.Module
    model: nn.Module  # the UNet, DDP-wrapped across several processes
    opt: torch.optim.Optimizer
    ema: EMA | None
    step: int


def _setup(cfg: cfgmod.ExperimentConfig, folder: Path, ae_folder: Path, ctx: Context) -> _Setup:
    cache = open_cache(cfg, ae_folder)
    latents = cache.load(cfg.diffusion.latent)
    scale = scale_factor(cfg, cache)
    unet = build_denoiser(cfg, cache.shape[0]).to(ctx.device)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.diffusion.lr, fused=True if ctx.device.type == "cuda" else None)
    ema = EMA(unet, cfg.diffusion.ema_decay, ramp=True) if cfg.diffusion.ema_decay > 0 else None
    step = resume_diffusion(folder, unet, opt, ema)
    model: nn.Module = unet
    if ctx.world > 1:
        ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(unet, device_ids=ids)
    return _Setup(latents, scale, unet, model, opt, ema, step)


def diffusion_step(
    s: _Setup, batch: DiffusionBatch, sched: gaussian_diffusion.ScheduleArgs, device: torch.device, bf16: bool
) -> Tensor:
    """One AdamW update on L_simple of the batch's scaled latents; the EMA follows. The loss."""
    x0 = (s.latents[batch.flip, batch.index] * s.scale).to(device, non_blocking=True)
    t, noise = batch.t.to(device), batch.noise.to(device, non_blocking=True)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        loss = gaussian_diffusion.diffusion_loss(s.model, x0, t, noise, sched)
    s.opt.zero_grad(set_to_none=True)
    loss.backward()
    s.opt.step()
    if s.ema is not None:  # on every rank: the ranks' weights are equal after the step
        s.ema.update(s.unet)
    return loss.detach()


def _log(
    cfg: cfgmod.ExperimentConfig, folder: Path, ctx: Context, step: int, loss: Tensor, lr: float, rate: float
) -> float:
    """The global batch's mean loss to metrics.jsonl and the status (the autoencoder runs' format)."""
    if ctx.world > 1:
        loss = loss.float().clone()
        dist.all_reduce(loss)
        loss = loss / ctx.world
    value = float(loss)
    if ctx.main:
        store.append_jsonl(folder / "metrics.jsonl", {"step": step, "loss": value, "lr": lr, "images_per_s": rate})
        store.update_status(folder, step=step, total_steps=cfg.diffusion.steps, loss=value, heartbeat=time.time())
    return value


def train_diffusion(
    cfg: cfgmod.ExperimentConfig,
    folder: Path,
    ae_folder: Path,
    ctx: Context,
    stop: threading.Event | None = None,
    progress: bool = True,
    max_steps: int | None = None,
) -> dict[str, Any]:
    """Train (or resume) the diffusion run in ``folder`` to ``diffusion.steps`` on the latent
    cache of ``ae_folder`` (built beforehand: study/diffusion/latents.py); returns a summary.

    ``stop`` set from another thread (preemption) makes the loop write a checkpoint at the next
    step boundary and raise Preempted. ``max_steps`` stops early (for tests) without a checkpoint
    beyond the periodic ones, as a crash would."""
    torch.manual_seed(cfg.seed)
    device = ctx.device
    accelerate.configure_device(device)
    bf16, sched = use_bf16(cfg, device), schedule_args(cfg)
    s = _setup(cfg, folder, ae_folder, ctx)
    if ctx.main:
        store.truncate_jsonl(folder / "metrics.jsonl", s.step)  # what the last checkpoint lost
    total, batch = cfg.diffusion.steps, cfg.diffusion.batch_size
    if batch % ctx.world:
        raise ValueError(f"diffusion.batch_size {batch} is not divisible by the {ctx.world} DDP ranks")
    end = total if max_steps is None else min(total, max_steps)
    flips, count, shape = s.latents.shape[0], s.latents.shape[1], tuple(s.latents.shape[2:])
    watch = accelerate.LossWatch(device)
    bar = tqdm(total=total, initial=s.step, disable=not (progress and ctx.main), desc=folder.name, mininterval=1.0)
    summary: dict[str, Any] = {"resumed_from": s.step, "scale_factor": s.scale}
    tic, seen, step = time.perf_counter(), 0, s.step
    s.model.train()
    while step < end:
        if stop is not None and stop.is_set():
            watch.check()
            if ctx.main:
                save_diffusion_checkpoint(folder, step, s.unet, s.opt, s.ema, s.scale)
            raise Preempted(f"checkpointed at step {step} on request")
        draws = draw_batch(cfg.seed, step, batch, count, flips, shape, cfg.diffusion.timesteps).local(ctx)
        for group in s.opt.param_groups:
            group["lr"] = learning_rate(cfg.diffusion, step)
        loss = diffusion_step(s, draws, sched, device, bf16)
        watch.observe(loss, step)
        step += 1
        seen += batch
        bar.update(1)
        log, save = step % cfg.train.log_every == 0 or step == total, step % cfg.train.checkpoint_every == 0
        if log or save or step == end:  # the device is read here only
            watch.check()
        if log:
            rate = seen / max(time.perf_counter() - tic, 1e-9)
            summary["loss"] = _log(cfg, folder, ctx, step, loss, s.opt.param_groups[0]["lr"], rate)
            bar.set_postfix(loss=f"{summary['loss']:.4g}", img_s=f"{rate:.1f}")
            tic, seen = time.perf_counter(), 0
        if save or step == total:
            if ctx.main:
                save_diffusion_checkpoint(folder, step, s.unet, s.opt, s.ema, s.scale)
            if ctx.world > 1:
                dist.barrier()
    bar.close()
    summary["step"] = step
    return summary
