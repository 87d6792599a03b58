"""LDM's diffusion process (study/models/gaussian_diffusion.py): the linear schedule against its
formula, q_sample, DDIM recovering a fixed x0 under an analytic oracle eps model, seeded
reproducibility, and a tiny UNet whose loss falls on a fixed latent set."""

from __future__ import annotations

import math

import pytest
import torch

from study.models.gaussian_diffusion import (
    DDIMStepsError,
    ScheduleArgs,
    UnknownLossError,
    alphas_cumprod,
    betas,
    ddim_sample,
    ddim_timesteps,
    diffusion_loss,
    q_sample,
)
from study.models.ldm_unet import UNET_PRESETS, build_unet

pytestmark = pytest.mark.usefixtures("one_thread")


def reference_alpha_bar(t: int) -> float:
    """alpha_bar_t from the config's numbers by hand: beta_s = (sqrt(0.0015) + s/999 (sqrt(0.0155) - sqrt(0.0015)))^2."""
    lo, hi = math.sqrt(0.0015), math.sqrt(0.0155)
    return math.prod(1.0 - (lo + s / 999 * (hi - lo)) ** 2 for s in range(t + 1))


def test_schedule_defaults_are_the_ldm_kl8_config():
    a = ScheduleArgs()
    assert (a.timesteps, a.linear_start, a.linear_end, a.loss) == (1000, 0.0015, 0.0155, "l1")


def test_betas_match_the_linear_formula():
    b = betas()
    assert b.shape == (1000,) and b.dtype == torch.float64
    assert b[0].item() == pytest.approx(0.0015, rel=1e-12) and b[-1].item() == pytest.approx(0.0155, rel=1e-12)
    s = 417
    assert b[s].item() == pytest.approx((math.sqrt(0.0015) + s / 999 * (math.sqrt(0.0155) - math.sqrt(0.0015))) ** 2)
    assert (b[1:] > b[:-1]).all()


def test_alphas_cumprod_monotone_and_by_hand():
    a = alphas_cumprod()
    assert (a[1:] < a[:-1]).all() and 0 < a[-1] < a[0] < 1
    for t in (0, 1, 250, 999):
        assert a[t].item() == pytest.approx(reference_alpha_bar(t), rel=1e-10)
    assert a[-1].item() < 0.01  # x_T is close to pure noise


def test_q_sample_at_t0_is_nearly_x0_and_follows_eq4():
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(4, 4, 8, 8, generator=g), torch.randn(4, 4, 8, 8, generator=g)
    xt = q_sample(x0, torch.zeros(4, dtype=torch.long), noise)
    assert (xt - x0).abs().max() < 0.2  # sqrt(1 - alpha_bar_0) = sqrt(0.0015) ~ 0.039 times the noise
    t = torch.tensor([0, 10, 500, 999])
    xt = q_sample(x0, t, noise)
    for i, ti in enumerate(t.tolist()):
        ab = reference_alpha_bar(ti)
        torch.testing.assert_close(xt[i], math.sqrt(ab) * x0[i] + math.sqrt(1 - ab) * noise[i])


def test_ddim_timesteps_are_ldm_uniform():
    assert ddim_timesteps(50) == list(range(1, 1000, 20))
    assert ddim_timesteps(4, 1000) == [1, 251, 501, 751]
    with pytest.raises(DDIMStepsError):
        ddim_timesteps(1000)


class Oracle:
    """The true noise of a fixed x0: from x_t = sqrt(a) x0 + sqrt(1 - a) eps, eps = (x_t - sqrt(a) x0) / sqrt(1 - a)."""

    def __init__(self, x0: torch.Tensor):
        self.x0 = x0

    def __call__(self, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        ab = torch.tensor([reference_alpha_bar(int(s)) for s in t], dtype=torch.float64).reshape(-1, 1, 1, 1)
        return ((xt.double() - ab.sqrt() * self.x0.double()) / (1 - ab).sqrt()).to(xt.dtype)


def test_ddim_with_the_oracle_recovers_x0():
    x0 = torch.randn(3, 4, 4, 4, generator=torch.Generator().manual_seed(1))
    sample = ddim_sample(Oracle(x0), tuple(x0.shape), steps=25, generator=torch.Generator().manual_seed(2))
    assert (sample - x0).abs().mean() < 0.05
    # exactly: the last step lands on alpha_bar_0 with the first step's noise (LDM's sampler)
    xT = torch.randn(x0.shape, generator=torch.Generator().manual_seed(2))
    top = ddim_timesteps(25)[-1]
    eps = (xT - math.sqrt(reference_alpha_bar(top)) * x0) / math.sqrt(1 - reference_alpha_bar(top))
    a0 = reference_alpha_bar(0)
    torch.testing.assert_close(sample, math.sqrt(a0) * x0 + math.sqrt(1 - a0) * eps, rtol=1e-4, atol=1e-4)


def test_ddim_stochastic_with_the_oracle_still_recovers_x0():
    x0 = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(3))
    sample = ddim_sample(Oracle(x0), tuple(x0.shape), steps=20, generator=torch.Generator().manual_seed(4), eta=1.0)
    assert (sample - x0).abs().mean() < 0.05


def test_same_seed_gives_bitwise_equal_samples():
    torch.manual_seed(0)
    model = build_unet(UNET_PRESETS["tiny"]).eval()
    with torch.no_grad():  # lift the zero-initialised output so the samples depend on the network
        model.out[-1].weight.normal_(0.0, 0.05)

    def run(seed: int, eta: float) -> torch.Tensor:
        return ddim_sample(model, (2, 4, 4, 4), steps=5, generator=torch.Generator().manual_seed(seed), eta=eta)

    for eta in (0.0, 1.0):
        assert torch.equal(run(7, eta), run(7, eta))
        assert not torch.equal(run(7, eta), run(8, eta))
    assert not torch.equal(run(7, 0.0), run(7, 1.0))


def test_loss_is_l1_or_l2_of_the_noise():
    x0, noise = torch.randn(2, 4, 4, 4), torch.randn(2, 4, 4, 4)
    t = torch.tensor([3, 700])
    zero = lambda x, t: torch.zeros_like(x)  # noqa: E731 -- an eps model that predicts nothing
    assert diffusion_loss(zero, x0, t, noise).item() == pytest.approx(noise.abs().mean().item())
    l2 = ScheduleArgs(loss="l2")
    assert diffusion_loss(zero, x0, t, noise, l2).item() == pytest.approx(noise.square().mean().item())
    assert diffusion_loss(Oracle(x0), x0, t, noise).item() == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(UnknownLossError):
        diffusion_loss(zero, x0, t, noise, ScheduleArgs(loss="huber"))  # type: ignore[arg-type]


def test_tiny_unet_loss_falls_on_a_fixed_latent_set():
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(16, 4, 4, 4, generator=g) * 0.5 + torch.linspace(-1, 1, 4).reshape(1, 4, 1, 1)
    torch.manual_seed(0)
    model = build_unet(UNET_PRESETS["tiny"])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(150):
        idx = torch.randint(0, 16, (8,), generator=g)
        t = torch.randint(0, 1000, (8,), generator=g)
        noise = torch.randn(8, 4, 4, 4, generator=g)
        loss = diffusion_loss(model, latents[idx], t, noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    assert last < first, (first, last)
    print(f"first 20: {first:.4f}  last 20: {last:.4f}")
