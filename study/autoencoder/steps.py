"""One training step: the autoencoder's update on Eq. 1's loss, then the discriminator's, each over
``train.grad_accum`` micro-batches whose gradients add up before the one optimiser step. Which
reconstruction the discriminator sees, how the step avoids device reads and how accumulation
keeps the full batch's gradient: docs/performance.md, "One training step".
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from study import config as cfgmod
from study.autoencoder import losses
from study.trainer.accelerate import LossWatch, NonFiniteLoss
from study.trainer.ema import EMA


class MissingEMA(RuntimeError):
    """EMA weights asked for (LDL, resume, ``eval.weights: ema``) where there are none."""


class Reconstruct(nn.Module):
    """x -> (x_hat, posterior) with the posterior sampled as mean + std * noise: the module a
    DDP wrapper sees, so the autoencoder's gradients are reduced once per step."""

    def __init__(self, autoencoder: nn.Module):
        super().__init__()
        self.autoencoder = autoencoder

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, Any]:
        ae: Any = self.autoencoder  # study.models.autoencoder.Autoencoder: encode, decode
        posterior = ae.encode(x)
        return ae.decode(posterior.mean + posterior.std * noise), posterior


def unwrap(m: nn.Module) -> nn.Module:
    return m.module if isinstance(m, nn.parallel.DistributedDataParallel) else m


def _sync_unless_last(model: nn.Module, i: int, n: int) -> contextlib.AbstractContextManager[Any]:
    """DDP's ``no_sync`` for every micro-batch but the last (whose backward reduces the sum)."""
    if i < n - 1 and isinstance(model, nn.parallel.DistributedDataParallel):
        return model.no_sync()
    return contextlib.nullcontext()


def _check(watch: LossWatch | None, loss: torch.Tensor, step: int) -> None:
    if watch is None:
        if not torch.isfinite(loss):
            raise NonFiniteLoss(step, float(loss.detach()))
    else:
        watch.observe(loss, step)


def autoencoder_loss(
    cfg: cfgmod.ExperimentConfig,
    model: nn.Module,
    disc: nn.Module | None,
    x: torch.Tensor,
    noise: torch.Tensor,
    *,
    step: int,
    perceptual: nn.Module | None,
    last_layer: torch.Tensor,
    bf16: bool,
    ema: EMA | None,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """The forward pass and Eq. 1's loss of one (micro-)batch; the discriminator (when on at
    ``step``) judges the reconstructions frozen and unwrapped, so it takes no gradient and no
    DDP reduction. With LDL on (Table 15), the EMA model reconstructs ``x`` from the same
    posterior noise without gradients. Returns (reconstructions, total loss, the loss terms)."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        x_hat, posterior = model(x, noise)
        x_hat_ema = None
        if cfg.loss.ldl_weight > 0:
            if ema is None:
                raise MissingEMA("loss.ldl_weight > 0 needs the EMA model (train.ema_decay > 0)")
            with torch.no_grad():
                x_hat_ema, _ = Reconstruct(ema.module)(x, noise)
        fake_logits = None
        if disc is not None and step >= cfg.loss.discriminator_start:
            judge = unwrap(disc)
            judge.requires_grad_(False)
            fake_logits = judge(x_hat)
        total_loss, terms = losses.autoencoder_loss(
            cfg.loss,
            x,
            x_hat,
            posterior,
            fake_logits=fake_logits,
            lpips_model=perceptual,
            last_layer=last_layer,
            step=step,
            x_hat_ema=x_hat_ema,
        )
    return x_hat, total_loss, terms


def autoencoder_step(
    cfg: cfgmod.ExperimentConfig,
    model: nn.Module,
    disc: nn.Module | None,
    opt_ae: torch.optim.Optimizer,
    x: torch.Tensor,
    noise: torch.Tensor,
    *,
    step: int,
    perceptual: nn.Module | None,
    last_layer: torch.Tensor,
    bf16: bool = False,
    ema: EMA | None = None,
    watch: LossWatch | None = None,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """One update of the autoencoder over ``train.grad_accum`` micro-batches. Returns the
    (detached) reconstructions of the whole batch, the batch's total loss and its loss terms
    (means over the micro-batches, detached)."""
    n = cfg.train.grad_accum
    opt_ae.zero_grad(set_to_none=True)
    x_hats, total = [], torch.zeros((), device=x.device)
    terms: dict[str, Any] = {}
    for i, (xi, ni) in enumerate(zip(x.chunk(n), noise.chunk(n))):
        with _sync_unless_last(model, i, n):
            x_hat, loss, t = autoencoder_loss(
                cfg, model, disc, xi, ni, step=step, perceptual=perceptual, last_layer=last_layer, bf16=bf16, ema=ema
            )
            _check(watch, loss, step)
            (loss / n if n > 1 else loss).backward()
        x_hats.append(x_hat.detach())
        total = total + loss.detach() / n
        terms = {k: terms.get(k, 0) + v / n for k, v in t.items()} if n > 1 else t
    opt_ae.step()
    return torch.cat(x_hats) if n > 1 else x_hats[0], total if n > 1 else loss, terms


@dataclass(frozen=True)
class DiscriminatorStep:
    """What one discriminator update saw: its loss and its logits on each half (detached)."""

    loss: torch.Tensor
    real_logits: list[torch.Tensor]
    fake_logits: list[torch.Tensor]


def discriminator_step(
    cfg: cfgmod.LossConfig,
    disc: nn.Module,
    opt_d: torch.optim.Optimizer,
    x: torch.Tensor,
    x_hat: torch.Tensor,
    *,
    step: int,
    bf16: bool = False,
    grad_accum: int = 1,
    watch: LossWatch | None = None,
) -> DiscriminatorStep:
    """One update of the discriminator, as LDM makes it: the real images and the (detached)
    reconstructions go through it in separate forward passes, so no batch statistic (PatchGAN's
    BatchNorm in train mode, the StyleGAN discriminator's minibatch standard deviation) mixes
    the two halves. The two losses are summed and take one backward: under DDP each parameter's
    gradient from both passes reaches its accumulator in that one backward, so the reducer
    averages it across ranks once, as for a single forward. With ``grad_accum`` n > 1, the
    same over n micro-batches, gradients summed (each loss divided by n)."""
    unwrap(disc).requires_grad_(True)
    opt_d.zero_grad(set_to_none=True)
    total = torch.zeros((), device=x.device)
    reals: list[list[torch.Tensor]] = []
    fakes: list[list[torch.Tensor]] = []
    for i, (xi, fi) in enumerate(zip(x.chunk(grad_accum), x_hat.chunk(grad_accum))):
        with _sync_unless_last(disc, i, grad_accum):
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
                real_logits = disc(xi)
                fake_logits = disc(fi.detach())
                loss = losses.discriminator_loss(cfg, real_logits, fake_logits)
            _check(watch, loss, step)
            (loss / grad_accum if grad_accum > 1 else loss).backward()
        total = total + loss.detach() / grad_accum
        reals.append([t.detach() for t in _outputs(real_logits)])
        fakes.append([t.detach() for t in _outputs(fake_logits)])
    opt_d.step()
    if grad_accum == 1:
        return DiscriminatorStep(loss.detach(), reals[0], fakes[0])
    return DiscriminatorStep(total, _joined(reals), _joined(fakes))


def _outputs(logits: losses.Logits) -> list[torch.Tensor]:
    """A discriminator's outputs as a list (one tensor, or the UNet discriminator's two)."""
    return [logits] if isinstance(logits, torch.Tensor) else list(logits)


def _joined(parts: list[list[torch.Tensor]]) -> list[torch.Tensor]:
    """The micro-batches' outputs as the batch's: each output concatenated along the batch."""
    return [torch.cat(level) for level in zip(*parts)]


def _autoencoder(model: nn.Module) -> nn.Module:
    """The autoencoder inside a (possibly DDP-wrapped) ``Reconstruct``."""
    rec = unwrap(model)
    if not isinstance(rec, Reconstruct):
        raise TypeError(f"expected a Reconstruct module, got {type(rec).__name__}")
    return rec.autoencoder


def fresh_reconstruction(
    model: nn.Module, x: torch.Tensor, noise: torch.Tensor, *, bf16: bool, chunks: int
) -> torch.Tensor:
    """The batch reconstructed again by the (just updated) autoencoder, without gradients, in
    ``chunks`` micro-batches: the discriminator's input as LDM makes it. The posterior noise is
    the batch's own (LDM draws another sample from the same posterior; reusing the draw keeps a
    step a function of seed, step and sample, study/data/loader.py). The DDP wrapper is
    bypassed: no gradient, nothing to reduce."""
    rec = unwrap(model)
    with torch.no_grad(), torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        parts = [rec(xi, ni)[0] for xi, ni in zip(x.chunk(chunks), noise.chunk(chunks))]
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def train_step(
    cfg: cfgmod.ExperimentConfig,
    model: nn.Module,
    disc: nn.Module | None,
    opt_ae: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer | None,
    x: torch.Tensor,
    noise: torch.Tensor,
    *,
    step: int,
    perceptual: nn.Module | None,
    last_layer: torch.Tensor,
    bf16: bool = False,
    ema: EMA | None = None,
    watch: LossWatch | None = None,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """One whole step: ``autoencoder_step``; the EMA (when on) follows the updated weights; then,
    from ``loss.discriminator_start`` on, ``discriminator_step`` on ``train.discriminator_input``
    (``fresh``: ``fresh_reconstruction``; ``stale``: the autoencoder step's reconstructions).
    ``model`` is the (possibly DDP-wrapped) ``Reconstruct``. Returns the autoencoder step's
    reconstructions, total loss and terms, with ``discriminator`` (its loss) when it stepped."""
    x_hat, total, terms = autoencoder_step(
        cfg, model, disc, opt_ae, x, noise, step=step, perceptual=perceptual, last_layer=last_layer,
        bf16=bf16, ema=ema, watch=watch,
    )  # fmt: skip
    if ema is not None:  # on every rank: the ranks' weights are equal after the step
        ema.update(_autoencoder(model))
    if disc is not None and opt_d is not None and step >= cfg.loss.discriminator_start:
        n = cfg.train.grad_accum
        fake = x_hat if cfg.train.discriminator_input == "stale" else fresh_reconstruction(
            model, x, noise, bf16=bf16, chunks=n
        )  # fmt: skip
        terms["discriminator"] = discriminator_step(
            cfg.loss, disc, opt_d, x, fake, step=step, bf16=bf16, grad_accum=n, watch=watch
        ).loss
    return x_hat, total, terms
