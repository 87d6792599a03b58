"""Training one autoencoder variant: Adam on the autoencoder and the discriminator, resolution
stages, checkpoints that resume bit for bit, DDP across a job's GPUs, bf16 on CUDA.

The recipe is the paper's (docs/paper.md, "The training recipe"); why a resumed or DDP run computes
the same steps as one uninterrupted process: docs/architecture.md, "Determinism".
"""

from __future__ import annotations

import functools
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from study import config, store
from study.autoencoder.steps import MissingEMA, Reconstruct, train_step
from study.autoencoder.steps import unwrap as _unwrap
from study.autoencoder.trained import _initialise
from study.data.batches import stage_at
from study.data.datasets import eval_set
from study.data.loader import Batches
from study.measure import metrics
from study.models.autoencoder import build_autoencoder
from study.models.discriminators import build_discriminator
from study.trainer import accelerate as accel
from study.trainer import live_log
from study.trainer.checkpoints import CHECKPOINT, load_checkpoint, restore_rng, write_checkpoint
from study.trainer.context import Context, Preempted, default_context, use_bf16
from study.trainer.ema import EMA
from study.trainer.watch import Diverged, OnEval, Watch


# --------------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------------
def save_checkpoint(
    folder: Path,
    step: int,
    ae: nn.Module,
    disc: nn.Module | None,
    opt_ae: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer | None,
    ema: EMA | None = None,
    watch: Watch | None = None,
) -> None:
    state = {
        "step": step,
        "autoencoder": _unwrap(ae).state_dict(),
        "discriminator": _unwrap(disc).state_dict() if disc is not None else None,
        "opt_autoencoder": opt_ae.state_dict(),
        "opt_discriminator": opt_d.state_dict() if opt_d is not None else None,
        "ema": ema.state_dict() if ema is not None else None,
        "data_position": step,  # the batch stream is indexed by step
        "watch": watch.state_dict() if watch is not None else None,  # study/trainer/watch.py
    }
    write_checkpoint(folder, state)


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def _validation_set(data: config.DataConfig, resolution: int, num_images: int):
    return eval_set(data, resolution, num_images)


@torch.no_grad()
def validate_psnr(
    model: nn.Module, cfg: config.ExperimentConfig, resolution: int, device: torch.device, num_images: int
) -> float:
    """PSNR (dB; study.measure.metrics.psnr: uint8-quantised, per image, then averaged) of
    posterior-mean reconstructions of held-out crops."""
    ae: Any = _unwrap(model)  # study.models.autoencoder.Autoencoder: encode, decode
    was_training = ae.training
    ae.eval()
    ds = _validation_set(cfg.data, resolution, num_images)
    values = []
    for start in range(0, len(ds), 16):
        x = torch.stack([ds[i] for i in range(start, min(start + 16, len(ds)))]).to(device)
        x_hat = ae.decode(ae.encode(x).mode())
        values.append(metrics.psnr(metrics.to_uint8(x), metrics.to_uint8(x_hat)))
    ae.train(was_training)
    return float(torch.cat(values).mean())


# --------------------------------------------------------------------------------------------
# the steps
# --------------------------------------------------------------------------------------------
def load_perceptual(cfg: config.LossConfig, device: torch.device) -> nn.Module | None:
    """The frozen network of the perceptual term (``loss.perceptual``; none when its weight is
    0): LPIPS-VGG or ESRGAN's VGG19 (Table 14). Raises MissingWeightsError, naming ``weights
    fetch``, when its weights are not in the cache: called before the first step."""
    if cfg.lpips_weight <= 0:
        return None
    if cfg.perceptual == "esrgan":
        from study.autoencoder.perceptual import load_esrgan_vgg

        return load_esrgan_vgg(device)
    from study.measure.weights import load_lpips

    return load_lpips("vgg", device)


def resume(
    folder: Path,
    ae: nn.Module,
    disc: nn.Module | None,
    opt_ae: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer | None,
    ema: EMA | None = None,
    watch: Watch | None = None,
) -> int:
    """Load the run's last checkpoint into the networks, the optimisers, the EMA, the watch and
    the RNGs; the step to continue from (0 without a checkpoint)."""
    state = load_checkpoint(folder)
    if state is None:
        return 0
    ae.load_state_dict(state["autoencoder"])
    if ema is not None:
        if state.get("ema") is None:
            raise MissingEMA(f"{folder / CHECKPOINT} has no EMA weights to resume train.ema_decay from")
        ema.load_state_dict(state["ema"])
    if disc is not None and opt_d is not None:
        disc.load_state_dict(state["discriminator"])
        opt_d.load_state_dict(state["opt_discriminator"])
    opt_ae.load_state_dict(state["opt_autoencoder"])
    if watch is not None and state.get("watch"):  # a checkpoint of before the watch has none
        watch.load_state_dict(state["watch"])
    restore_rng(state)
    return int(state["step"])


def _distribute(model: nn.Module, disc: nn.Module | None, ctx: Context) -> tuple[nn.Module, nn.Module | None]:
    """Both networks DDP-wrapped when the run spans several processes, else as they are."""
    if ctx.world == 1:
        return model, disc
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    disc = nn.parallel.DistributedDataParallel(disc, device_ids=ids) if disc is not None else None
    return model, disc


def _log(
    cfg: config.ExperimentConfig,
    folder: Path,
    ctx: Context,
    step: int,
    loss: torch.Tensor,
    terms: dict[str, Any],
    rate: float,
    bar: tqdm,
    watch: Watch,
) -> None:
    """The step's losses (the global batch's mean under DDP) to metrics.jsonl, the status and the
    watch (progress record, discriminator streak)."""
    logged = {"loss": loss.detach(), **{k: torch.as_tensor(v).detach() for k, v in terms.items()}}
    if ctx.world > 1:  # the global batch's mean, as one process would log it
        values = torch.stack([v.float().reshape(()) for v in logged.values()])
        dist.all_reduce(values)
        logged = dict(zip(logged, values / ctx.world))
    record = {
        "step": step,
        "images_per_s": rate,
        "resolution": stage_at(cfg, step - 1).resolution,
        **{k: float(v) for k, v in logged.items()},
    }
    bar.set_postfix(loss=f"{record['loss']:.4g}", img_s=f"{rate:.1f}")
    if ctx.main:
        store.append_jsonl(folder / "metrics.jsonl", record)
        store.update_status(folder, step=step, total_steps=cfg.train.steps, loss=record["loss"], heartbeat=time.time())
        live_log.scalars(folder, record)  # TensorBoard / W&B (study/trainer/live_log.py)
    watch.logged(step, record)  # on every rank: the record is the same on all


def _validate(
    cfg: config.ExperimentConfig, folder: Path, ctx: Context, step: int, ae: nn.Module, watch: Watch
) -> float | None:
    """Validation PSNR at ``step`` when it is due (main process only), recorded and watched."""
    if not (ctx.main and (step % cfg.train.val_every == 0 or step == cfg.train.steps)):
        return None
    resolution = stage_at(cfg, step - 1).resolution
    psnr = validate_psnr(ae, cfg, resolution, ctx.device, cfg.train.val_images)
    store.append_jsonl(folder / "metrics.jsonl", {"step": step, "val_psnr": psnr})
    store.update_status(folder, psnr=psnr)
    live_log.validation(folder, step, psnr)
    watch.validated(step, psnr, resolution)
    return psnr


# --------------------------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------------------------
def _build(cfg: config.ExperimentConfig, device: torch.device, fmt: torch.memory_format) -> tuple[Any, ...]:
    """The autoencoder, the discriminator (or None), the perceptual network (or None) and both
    optimisers (Adam, the paper's betas; fused on CUDA), on ``device``."""
    ae = build_autoencoder(config.autoencoder_args(cfg.model), checkpoint_decoder=cfg.train.checkpoint_decoder)
    ae = ae.to(device).to(memory_format=fmt)
    disc = build_discriminator(cfg.loss.discriminator, cfg.loss.discriminator_channels)
    disc = disc.to(device).to(memory_format=fmt) if disc is not None else None
    perceptual = load_perceptual(cfg.loss, device)
    betas = (cfg.train.betas[0], cfg.train.betas[1])
    opt_ae = accel.adam(ae.parameters(), cfg.train.lr, betas, device)
    opt_d = accel.adam(disc.parameters(), cfg.train.discriminator_lr, betas, device) if disc is not None else None
    return ae, disc, perceptual, opt_ae, opt_d


def _setup(
    cfg: config.ExperimentConfig, folder: Path, ctx: Context, on_eval: OnEval | None
) -> tuple[Any, nn.Module, nn.Module | None, nn.Module | None, Any, Any, EMA | None, Watch, int]:
    """The networks, optimisers, EMA and watch, restored from the run's last checkpoint; the live
    log opened; (autoencoder, DDP model, discriminator, perceptual network, both optimisers, EMA,
    watch, the step to continue from)."""
    device = ctx.device
    accel.configure_device(device)
    ae, disc, perceptual, opt_ae, opt_d = _build(cfg, device, accel.memory_format(device))
    if cfg.model.init and not (folder / CHECKPOINT).exists():  # a pretrained start; resume wins
        _initialise(ae, cfg, folder if ctx.main else None)
    # The EMA starts from the (initialised) autoencoder, before resume restores both.
    ema = EMA(ae, cfg.train.ema_decay) if cfg.train.ema_decay > 0 else None
    watch = Watch(cfg, folder, ctx.main, device, ctx.world, on_eval)
    step = resume(folder, ae, disc, opt_ae, opt_d, ema, watch)
    if ctx.main:
        store.truncate_jsonl(folder / "metrics.jsonl", step)  # what the last checkpoint lost
    watch.start(step)  # during.jsonl likewise
    if cfg.train.compile:  # in place, after the EMA's copy: the state_dict keys stay the eager ones
        _compile(device, ae, disc)
    model, disc = _distribute(Reconstruct(ae), disc, ctx)
    live_log.open_run(cfg, folder, ctx.main, step, {"autoencoder": (ae, opt_ae), "discriminator": (disc, opt_d)})
    return ae, model, disc, perceptual, opt_ae, opt_d, ema, watch, step


def train(
    cfg: config.ExperimentConfig,
    folder: Path,
    ctx: Context | None = None,
    stop: threading.Event | None = None,
    progress: bool = True,
    max_steps: int | None = None,
    on_eval: OnEval | None = None,
) -> dict[str, Any]:
    """Train (or resume) the run in ``folder`` to cfg.train.steps; returns a summary.

    ``stop`` set from another thread (preemption) makes the loop write a checkpoint at the next
    step boundary and raise Preempted. ``max_steps`` stops early (for tests) without a checkpoint
    beyond the periodic ones, as a crash would. ``on_eval`` measures the protocol metrics of
    ``eval.during`` (study/trainer/watch.py; the job passes study/evaluation/during.py's). A
    divergence the run stops on raises ``Diverged`` (study/trainer/watch.py), recorded first."""
    ctx = ctx or default_context()
    torch.manual_seed(cfg.seed)
    device = ctx.device
    bf16, fmt = use_bf16(cfg, device), accel.memory_format(device)
    ae, model, disc, perceptual, opt_ae, opt_d, ema, watch, step = _setup(cfg, folder, ctx, on_eval)

    total = cfg.train.steps
    end = total if max_steps is None else min(total, max_steps)
    batches, losses = Batches(cfg, ctx, step, end, fmt), accel.LossWatch(device)
    bar = tqdm(total=total, initial=step, disable=not (progress and ctx.main), desc=folder.name, mininterval=1.0)
    tic, seen = time.perf_counter(), 0
    summary: dict[str, Any] = {"resumed_from": step}
    model.train()
    try:
        while step < end:
            if stop is not None and stop.is_set():
                losses.check()
                if ctx.main:
                    save_checkpoint(folder, step, ae, disc, opt_ae, opt_d, ema, watch)
                raise Preempted(f"checkpointed at step {step} on request")
            x, noise = batches.next()
            _, total_loss, terms = train_step(
                cfg, model, disc, opt_ae, opt_d, x, noise, step=step, perceptual=perceptual,
                last_layer=ae.last_layer, bf16=bf16, ema=ema, watch=losses,
            )  # fmt: skip
            step += 1
            seen += x.shape[0] * ctx.world
            bar.update(1)

            if _boundary(cfg, step, end):  # the device is read here only (no host sync in the step)
                losses.check()
            if step % cfg.train.log_every == 0 or step == total:
                rate = seen / max(time.perf_counter() - tic, 1e-9)
                _log(cfg, folder, ctx, step, total_loss, terms, rate, bar, watch)
                batches.report(step)
                tic, seen = time.perf_counter(), 0
            psnr = _validate(cfg, folder, ctx, step, ae, watch)
            if psnr is not None:
                summary["val_psnr"] = psnr
            if _boundary(cfg, step, end):  # before the checkpoint: it keeps weights from before a divergence
                watch.stop_if_diverged()
            watch.evaluate(step, {"model": ae} | ({"ema": ema.module} if ema is not None else {}))
            if step % cfg.train.checkpoint_every == 0 or step == total:
                if ctx.main:
                    save_checkpoint(folder, step, ae, disc, opt_ae, opt_d, ema, watch)
                if ctx.world > 1:
                    dist.barrier()
    except Diverged as e:
        watch.fatal(e)
        raise
    finally:
        bar.close()
        live_log.close(folder)
    summary["step"] = step
    return summary


def _compile(device: torch.device, ae: Any, disc: nn.Module | None) -> None:
    """train.compile: the encoder, the decoder and the discriminator, in place; the run's log
    says which stays eager (a spectral-norm discriminator: study/trainer/accelerate.py)."""
    for eager in accel.compile_networks(device, ae.encoder, ae.decoder, disc):
        tqdm.write(f"train.compile: {type(eager).__name__} stays eager (spectral norm)", file=sys.stderr)


def _boundary(cfg: config.ExperimentConfig, step: int, end: int) -> bool:
    """A step after which the loop logs, validates, checkpoints or stops."""
    t = cfg.train
    return step == end or step == t.steps or any(step % k == 0 for k in (t.log_every, t.val_every, t.checkpoint_every))
