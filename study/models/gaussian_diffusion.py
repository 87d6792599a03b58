"""The diffusion process of LDM on latents: DDPM's forward process and eps objective (Ho et al.
2020) with LDM's defaults, and the DDIM sampler (Song et al. 2021). The equations and the
timestep sub-sequence: docs/diffusion.md, "The diffusion process and DDIM".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

EpsModel = Callable[[Tensor, Tensor], Tensor]  # (x_t, t) -> eps prediction


class DDIMStepsError(ValueError):
    """A number of DDIM steps that LDM's uniform discretisation cannot place in T steps."""


class UnknownLossError(ValueError):
    """A diffusion loss type other than "l1" or "l2"."""


@dataclass(frozen=True)
class ScheduleArgs:
    """DDPM's noise schedule and objective; defaults are LDM's KL-f8 256 (lsun_churches-ldm-kl-8.yaml)."""

    timesteps: int = 1000  # model.params.timesteps
    linear_start: float = 0.0015  # model.params.linear_start (beta_1)
    linear_end: float = 0.0155  # model.params.linear_end (beta_T)
    loss: Literal["l1", "l2"] = "l1"  # model.params.loss_type
    schedule: Literal["linear"] = "linear"  # DDPM default beta_schedule (the config sets none)
    parameterization: Literal["eps"] = "eps"  # DDPM default: the network predicts the noise


# --------------------------------------------------------------------------------------------
# the schedule
# --------------------------------------------------------------------------------------------
def betas(args: ScheduleArgs = ScheduleArgs()) -> Tensor:
    """LDM's "linear" schedule (make_beta_schedule): linear in sqrt(beta), float64, (T,)."""
    return torch.linspace(args.linear_start**0.5, args.linear_end**0.5, args.timesteps, dtype=torch.float64) ** 2


def alphas_cumprod(args: ScheduleArgs = ScheduleArgs()) -> Tensor:
    """alpha_bar_t = prod_{s<=t} (1 - beta_s), float64, (T,), indexed by t = 0..T-1."""
    return torch.cumprod(1.0 - betas(args), dim=0)


def _per_sample(values: Tensor, t: Tensor, like: Tensor) -> Tensor:
    """values[t], shaped (B, 1, 1, 1) to broadcast over ``like``, in its dtype and device."""
    return values.to(like.device)[t.to(like.device)].to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))


def q_sample(x0: Tensor, t: Tensor, noise: Tensor, args: ScheduleArgs = ScheduleArgs()) -> Tensor:
    """x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise (DDPM Eq. 4); t: (B,) integers."""
    a = alphas_cumprod(args)
    return _per_sample(a.sqrt(), t, x0) * x0 + _per_sample((1.0 - a).sqrt(), t, x0) * noise


# --------------------------------------------------------------------------------------------
# the objective
# --------------------------------------------------------------------------------------------
def diffusion_loss(
    model: EpsModel, x0: Tensor, t: Tensor, noise: Tensor, args: ScheduleArgs = ScheduleArgs()
) -> Tensor:
    """L_simple (DDPM Eq. 14), LDM's loss_simple: the mean over pixels and batch of |eps - eps_theta|
    (l1) or its square (l2). The caller draws t and noise, so a seed fixes the whole step."""
    if args.loss not in ("l1", "l2"):
        raise UnknownLossError(f"unknown diffusion loss {args.loss!r}; allowed: l1, l2")
    error = model(q_sample(x0, t, noise, args), t).float() - noise.float()
    per_sample = (error.abs() if args.loss == "l1" else error.square()).flatten(1).mean(dim=1)
    return per_sample.mean()


# --------------------------------------------------------------------------------------------
# DDIM sampling
# --------------------------------------------------------------------------------------------
def ddim_timesteps(steps: int, timesteps: int = 1000) -> list[int]:
    """LDM's "uniform" discretisation: range(0, T, T // S) + 1, highest last."""
    if not 1 <= steps <= timesteps // 2:
        raise DDIMStepsError(f"DDIM steps must lie in 1..{timesteps // 2} for T = {timesteps}, got {steps}")
    return [t + 1 for t in range(0, timesteps, timesteps // steps)]


@torch.no_grad()
def ddim_sample(
    model: EpsModel,
    shape: tuple[int, ...],
    steps: int,
    generator: torch.Generator,
    eta: float = 0.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    args: ScheduleArgs = ScheduleArgs(),
) -> Tensor:
    """x0 latents of ``shape`` by DDIM (Eq. 12) in ``steps`` steps. The initial noise (and, for
    eta > 0, every step's noise) is drawn on the generator's device from ``generator``, so a seed
    fixes the samples; the model sees ``dtype`` on ``device``, the update runs in float32. The
    model's train/eval mode is the caller's."""
    device = torch.device(device) if device is not None else generator.device
    a = alphas_cumprod(args)
    ts = ddim_timesteps(steps, args.timesteps)
    prevs = [0] + ts[:-1]  # a_prev of the lowest step is alpha_bar_0
    x = _normal(shape, generator, device)
    for t, prev in zip(reversed(ts), reversed(prevs), strict=True):
        a_t, a_prev = float(a[t]), float(a[prev])
        sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)) ** 0.5  # Eq. 16
        t_batch = torch.full((shape[0],), t, device=device, dtype=torch.long)
        eps = model(x.to(dtype), t_batch).float()
        x0_hat = (x - (1 - a_t) ** 0.5 * eps) / a_t**0.5
        x = a_prev**0.5 * x0_hat + (1 - a_prev - sigma**2) ** 0.5 * eps
        if sigma > 0:
            x = x + sigma * _normal(shape, generator, device)
    return x


def _normal(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> Tensor:
    return torch.randn(shape, generator=generator, device=generator.device, dtype=torch.float32).to(device)
