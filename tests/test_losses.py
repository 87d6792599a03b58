"""Each loss against a value computed by hand on a tiny tensor, the adaptive weight, the combined
objectives and the LPIPS weights check."""

from __future__ import annotations

import math
import warnings
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from study.autoencoder import losses
from study.config import LossConfig


def t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def approx(value: float, rel: float = 1e-6):
    return pytest.approx(value, rel=rel, abs=1e-7)


# --------------------------------------------------------------------------------------------
# reconstruction and KL
# --------------------------------------------------------------------------------------------
def test_l1_is_the_mean_absolute_difference():
    x = t([[[[1.0, -1.0], [0.5, 0.0]]]])
    assert losses.l1_loss(x, torch.zeros_like(x)).item() == approx((1 + 1 + 0.5 + 0) / 4)


def test_lpips_loss_averages_the_per_image_distances_over_the_batch():
    seen = []

    def fake_lpips(a, b):
        seen.append((a, b))
        return t([0.2, 0.4]).view(2, 1, 1, 1)

    x, x_hat = torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4)
    assert losses.lpips_loss(fake_lpips, x, x_hat).item() == approx(0.3)
    assert seen[0][0] is x and seen[0][1] is x_hat


def test_lpips_loss_with_the_real_network_is_zero_on_identical_images_and_differentiable():
    import lpips

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval()  # random backbone: plumbing
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 64, 64, generator=gen) * 2 - 1
    x_hat = (x + 0.3 * torch.randn(2, 3, 64, 64, generator=gen)).requires_grad_()
    assert losses.lpips_loss(model, x, x.clone()).item() == approx(0.0)
    loss = losses.lpips_loss(model, x, x_hat)
    loss.backward()
    assert loss.item() > 0 and x_hat.grad.abs().sum() > 0


def posterior(mean, logvar):
    return SimpleNamespace(mean=t(mean), logvar=t(logvar))


def test_kl_sums_over_the_latent_and_averages_over_the_batch():
    # sample 0: values (mean 1, logvar 0) -> 1/2 and (mean 0, logvar ln 2) -> (1 - ln 2)/2;
    # sample 1: the prior itself -> 0.
    p = posterior([[[[1.0]], [[0.0]]], [[[0.0]], [[0.0]]]], [[[[0.0]], [[math.log(2)]]], [[[0.0]], [[0.0]]]])
    per_sample = 0.5 + (1 - math.log(2)) / 2
    assert losses.gaussian_kl(p.mean, p.logvar).tolist() == [approx(per_sample), approx(0.0)]
    assert losses.kl_loss(p).item() == approx(per_sample / 2)
    assert losses.kl_loss(p, image_numel=12).item() == approx(per_sample / 2 / 12)


# --------------------------------------------------------------------------------------------
# high-frequency losses (Table 9)
# --------------------------------------------------------------------------------------------
def test_charbonnier_by_hand():
    # sqrt(0 + 3^2) = 3 and sqrt(4^2 + 3^2) = 5
    assert losses.charbonnier(t([0.0, 4.0]), t([0.0, 0.0]), eps=3.0).item() == approx(4.0)


def test_wavelet_loss_by_hand_on_one_haar_cell():
    # a, b, c, d = 1, 2, 3, 4: details (a+b-c-d)/2 = -2, (a-b+c-d)/2 = -1, (a-b-c+d)/2 = 0,
    # divided by 2 as in the paper's pseudocode: -1, -0.5, 0
    x = t([[[[1.0, 2.0], [3.0, 4.0]]]])
    assert losses.wavelet_loss(x, torch.zeros_like(x), eps=0.0).item() == approx((1 + 0.5 + 0) / 3)
    eps = 0.5
    expected = (math.sqrt(1 + eps**2) + math.sqrt(0.25 + eps**2) + eps) / 3
    assert losses.wavelet_loss(x, torch.zeros_like(x), eps=eps).item() == approx(expected)


def test_wavelet_loss_sees_only_the_level_1_details():
    # A difference constant on every 2x2 cell has no level-1 detail: only eps remains, though L1 is not 0.
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 8, 8, generator=gen)
    cells = torch.randn(2, 3, 4, 4, generator=gen).repeat_interleave(2, -1).repeat_interleave(2, -2)
    assert losses.wavelet_loss(x, x + cells, eps=1e-3).item() == approx(1e-3, rel=1e-4)
    assert losses.l1_loss(x, x + cells).item() > 0.1


def test_wavelet_loss_equals_charbonnier_on_pytorch_wavelets_bands():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pytorch_wavelets import DWTForward
    gen = torch.Generator().manual_seed(2)
    x, x_hat = torch.randn(2, 3, 8, 8, generator=gen), torch.randn(2, 3, 8, 8, generator=gen)
    dwt = DWTForward(J=1, wave="haar", mode="zero")
    expected = losses.charbonnier(dwt(x)[1][0] / 2, dwt(x_hat)[1][0] / 2, eps=1e-3)
    assert losses.wavelet_loss(x, x_hat, eps=1e-3).item() == approx(expected.item(), rel=1e-5)


def test_gaussian_kernel_by_hand():
    k = losses.gaussian_kernel(3, 1.0)
    e = math.exp(-0.5)
    g = [e / (1 + 2 * e), 1 / (1 + 2 * e), e / (1 + 2 * e)]
    assert k.shape == (3, 3) and k.sum().item() == approx(1.0)
    assert k[1, 1].item() == approx(g[1] ** 2) and k[0, 2].item() == approx(g[0] * g[2])
    with pytest.raises(losses.LossError):
        losses.gaussian_kernel(4, 1.0)


def test_gaussian_highpass_loss_of_an_impulse_by_hand():
    # d = an impulse in the middle of 5x5: its high pass is 1 - g00 at the centre and -g_ij on the
    # 8 neighbours (which sum to 1 - g00), nothing reflected at the border. Mean over 25 values.
    x = torch.zeros(1, 1, 5, 5)
    x_hat = x.clone()
    x_hat[0, 0, 2, 2] = 1.0
    g00 = (1 / (1 + 2 * math.exp(-0.5))) ** 2
    assert losses.gaussian_highpass_loss(x, x_hat, kernel=3, sigma=1.0).item() == approx(2 * (1 - g00) / 25)


def test_gaussian_highpass_loss_ignores_a_constant_offset():
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    assert losses.gaussian_highpass_loss(x, x + 0.4, kernel=5, sigma=1.0).item() == approx(0.0, rel=1e-5)
    assert losses.gaussian_highpass_loss(x, 1.5 * x, kernel=5, sigma=1.0).item() > 0.01


# --------------------------------------------------------------------------------------------
# adversarial losses
# --------------------------------------------------------------------------------------------
REAL = [t([[2.0], [0.5]]), t([[[[1.0, -1.0]]]])]  # per image (2, 1), per pixel (1, 1, 1, 2)
FAKE = [t([[-0.5], [1.0]]), t([[[[-1.0, -3.0]]]])]


def test_hinge_discriminator_loss_by_hand():
    # per image: relu(1 - real) = 0, .5 -> .25; relu(1 + fake) = .5, 2 -> 1.25; (0.25 + 1.25)/2 = 0.75
    assert losses.hinge_d_loss(REAL[0], FAKE[0]).item() == approx(0.75)
    # per pixel: relu(1 - real) = 0, 2 -> 1; relu(1 + fake) = 0, 0 -> 0; (1 + 0)/2 = 0.5
    assert losses.hinge_d_loss(REAL[1:], FAKE[1:]).item() == approx(0.5)
    assert losses.hinge_d_loss(REAL, FAKE).item() == approx((0.75 + 0.5) / 2)


def test_logistic_losses_by_hand():
    ln3 = t([[math.log(3.0)]])
    # softplus(-ln 3) = ln(4/3), softplus(ln 3) = ln 4
    assert losses.logistic_d_loss([ln3], [ln3]).item() == approx((math.log(4 / 3) + math.log(4)) / 2)
    assert losses.generator_loss([ln3], "logistic").item() == approx(math.log(4 / 3))
    assert losses.logistic_d_loss(torch.zeros(3, 1), torch.zeros(3, 1)).item() == approx(math.log(2))


def test_hinge_generator_loss_by_hand():
    # -mean(fake): 0.25 - 0.5 = -0.25 per image, 2 per pixel; averaged over the list
    assert losses.generator_loss(FAKE[0], "hinge").item() == approx(-0.25)
    assert losses.generator_loss(FAKE, "hinge").item() == approx((-0.25 + 2.0) / 2)
    with pytest.raises(losses.LossError, match="bogus"):
        losses.generator_loss(FAKE, "bogus")


def test_adaptive_weight_is_the_gradient_norm_ratio_at_the_last_layer():
    w = torch.nn.Parameter(t([1.0, 2.0]))
    rec = 3 * w.sum()  # gradient (3, 3): norm 3 sqrt 2
    g = -4 * w[0]  # gradient (-4, 0): norm 4
    weight = losses.adaptive_weight(rec, g, w)
    assert weight.item() == approx(3 * math.sqrt(2) / (4 + 1e-4))
    assert not weight.requires_grad and w.grad is None  # detached, nothing accumulated
    (rec + weight * g).backward()  # the graph was retained
    assert w.grad.tolist() == [approx(3 - 4 * weight.item()), approx(3.0)]


def test_adaptive_weight_is_clamped_and_zero_without_gradients():
    w = torch.nn.Parameter(t([1.0, 2.0]))
    tiny = 1e-9 * w.sum()
    assert losses.adaptive_weight(3 * w.sum(), tiny, w).item() == approx(1e4)  # 42426 -> 1e4
    assert losses.adaptive_weight(3 * w.sum(), tiny, w, max_weight=10.0).item() == approx(10.0)
    with torch.no_grad():
        assert losses.adaptive_weight(3 * w.sum(), -4 * w[0], w).item() == 0.0


def test_adversarial_factor_switches_on_at_the_start_step():
    assert [losses.adversarial_factor(s, 5) for s in (0, 4, 5, 6)] == [0.0, 0.0, 1.0, 1.0]


# --------------------------------------------------------------------------------------------
# the combined objectives
# --------------------------------------------------------------------------------------------
def _batch(seed: int = 4):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 3, 8, 8, generator=gen) * 2 - 1
    scale = torch.nn.Parameter(torch.ones(1))  # stands in for the decoder's last layer
    x_hat = scale * (x + 0.2 * torch.randn(2, 3, 8, 8, generator=gen))
    post = SimpleNamespace(
        mean=torch.randn(2, 4, 1, 1, generator=gen), logvar=0.1 * torch.randn(2, 4, 1, 1, generator=gen)
    )
    return x, x_hat, post, scale


def test_autoencoder_loss_is_the_weighted_sum_of_its_terms_and_starts_the_gan_on_time():
    cfg = replace(LossConfig(), lpips_weight=0.0, discriminator_start=10)
    x, x_hat, post, _ = _batch()
    fake = [x_hat.mean(dim=(1, 2, 3)).unsqueeze(1), x_hat[:, :1]]
    rec = (
        losses.l1_loss(x, x_hat)
        + 0.1 * losses.wavelet_loss(x, x_hat, 1e-3)
        + 0.1 * losses.gaussian_highpass_loss(x, x_hat, 5, 1.0)
    )
    kl = losses.kl_loss(post, 3 * 8 * 8)
    g = losses.generator_loss(fake, "hinge")

    before, terms = losses.autoencoder_loss(cfg, x, x_hat, post, step=9, fake_logits=fake)
    assert before.item() == approx(rec.item() + 1e-6 * kl.item(), rel=1e-5)
    assert set(terms) == {"l1", "wavelet", "gaussian", "kl", "rec", "generator"}
    assert terms["generator"].item() == approx(g.item()) and not terms["rec"].requires_grad

    after, terms = losses.autoencoder_loss(cfg, x, x_hat, post, step=10, fake_logits=fake)
    assert after.item() == approx(rec.item() + 1e-6 * kl.item() + 0.5 * g.item(), rel=1e-5)
    assert terms["adversarial_weight"].item() == approx(0.5)
    after.backward()  # one graph through every term


def test_autoencoder_loss_adaptive_mode_uses_the_gradient_ratio():
    cfg = replace(
        LossConfig(),
        lpips_weight=0.0,
        wavelet_weight=0.0,
        gaussian_weight=0.0,
        adversarial_weight_mode="adaptive",
        discriminator_start=0,
    )
    x, x_hat, post, scale = _batch()
    fake = [x_hat.mean(dim=(1, 2, 3)).unsqueeze(1)]
    expected = 0.5 * losses.adaptive_weight(losses.l1_loss(x, x_hat), losses.generator_loss(fake, "hinge"), scale)
    total, terms = losses.autoencoder_loss(cfg, x, x_hat, post, step=0, fake_logits=fake, last_layer=scale)
    assert terms["adversarial_weight"].item() == approx(expected.item(), rel=1e-5)
    assert total.item() == approx(
        terms["l1"].item() + 1e-6 * terms["kl"].item() + expected.item() * terms["generator"].item(), rel=1e-5
    )
    with pytest.raises(losses.LossError, match="last layer"):
        losses.autoencoder_loss(cfg, x, x_hat, post, step=0, fake_logits=fake)


def test_the_adaptive_weight_compares_l1_and_lpips_only_as_ldm():
    """LDM's calculate_adaptive_weight(nll_loss, g_loss, last_layer): nll_loss is L1 + LPIPS, so the
    Table 9 high-frequency terms (on by default) change the total but not the ratio; ``all`` is
    the old rule, the ratio on every reconstruction term."""
    cfg = replace(LossConfig(), adversarial_weight_mode="adaptive", discriminator_start=0)
    x, x_hat, post, scale = _batch()
    fake = [x_hat.mean(dim=(1, 2, 3)).unsqueeze(1)]

    def lpips_model(a, b):  # differentiable in x_hat, one value per image
        return (a - b).square().mean(dim=(1, 2, 3), keepdim=True)

    g = losses.generator_loss(fake, "hinge")
    l1, lp = losses.l1_loss(x, x_hat), lpips_model(x, x_hat).mean()
    high = 0.1 * losses.wavelet_loss(x, x_hat, 1e-3) + 0.1 * losses.gaussian_highpass_loss(x, x_hat, 5, 1.0)
    nll_only = 0.5 * losses.adaptive_weight(l1 + lp, g, scale)
    every_term = 0.5 * losses.adaptive_weight(l1 + lp + high, g, scale)
    assert nll_only.item() != approx(every_term.item(), rel=1e-3)  # the two rules differ here

    _, terms = losses.autoencoder_loss(
        cfg, x, x_hat, post, step=0, fake_logits=fake, lpips_model=lpips_model, last_layer=scale
    )
    assert terms["adversarial_weight"].item() == approx(nll_only.item(), rel=1e-5)
    assert terms["rec"].item() == approx((l1 + lp + high).item(), rel=1e-5)
    _, old = losses.autoencoder_loss(
        replace(cfg, adaptive_weight_terms="all"),
        x, x_hat, post, step=0, fake_logits=fake, lpips_model=lpips_model, last_layer=scale,
    )  # fmt: skip
    assert old["adversarial_weight"].item() == approx(every_term.item(), rel=1e-5)


def test_autoencoder_loss_needs_an_lpips_model_only_for_a_nonzero_weight():
    x, x_hat, post, _ = _batch()
    with pytest.raises(losses.LossError, match="load_lpips"):
        losses.autoencoder_loss(LossConfig(), x, x_hat, post, step=0)
    total, terms = losses.autoencoder_loss(
        LossConfig(), x, x_hat, post, step=0, lpips_model=lambda a, b: torch.full((2, 1, 1, 1), 0.25)
    )
    assert terms["lpips"].item() == approx(0.25)
    no_lpips, _ = losses.autoencoder_loss(replace(LossConfig(), lpips_weight=0.0), x, x_hat, post, step=0)
    assert total.item() == approx(no_lpips.item() + 0.25, rel=1e-5)


def test_discriminator_loss_picks_the_configured_kind_and_factor():
    hinge, logistic = LossConfig(discriminator_start=5), LossConfig(adversarial_loss="logistic")
    assert losses.discriminator_loss(hinge, REAL, FAKE).item() == approx(0.625)
    assert losses.discriminator_loss(hinge, REAL, FAKE, step=4).item() == 0.0
    zeros = [torch.zeros(2, 1)]
    assert losses.discriminator_loss(logistic, zeros, zeros).item() == approx(math.log(2))
    with pytest.raises(losses.LossError):
        losses.discriminator_loss(LossConfig(discriminator="none"), REAL, FAKE)


# --------------------------------------------------------------------------------------------
# LPIPS weights: a clear error before training, not a download
# --------------------------------------------------------------------------------------------
def test_missing_lpips_weights_name_the_file_the_directory_and_the_command(tmp_path, monkeypatch):
    from study.measure.weights import MissingWeightsError, load_lpips, weights_dir

    monkeypatch.setenv("LITEVAE_WEIGHTS_DIR", str(tmp_path))
    assert weights_dir() == tmp_path
    with pytest.raises(MissingWeightsError) as err:
        load_lpips("vgg", "cpu")
    message = str(err.value)
    assert "vgg16-397923af.pth" in message and str(tmp_path) in message
    assert "python run_study.py weights fetch" in message
