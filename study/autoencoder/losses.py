"""The training losses of LiteVAE as pure functions: Eq. 1 (L1 + LPIPS + KL + adversarial), the
adaptive weight of Eq. 2 and its constant replacement (Table 8), hinge and logistic GAN losses
(Table 16) and the high-frequency losses of Table 9. Every term is a mean over the values it
compares; why, and how that relates to LDM's weights: docs/models.md, "The loss terms and their
reduction".
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from study.autoencoder.ldl import ldl_loss
from study.config import LossConfig
from study.models.dwt_encoder import Deterministic
from study.models.wavelets import haar_dwt

Logits = Tensor | Sequence[Tensor]


class LossError(ValueError):
    """A loss asked of inputs that cannot give it (a missing LPIPS model, last layer, kind)."""


# --------------------------------------------------------------------------------------------
# reconstruction (Eq. 1)
# --------------------------------------------------------------------------------------------
def l1_loss(x: Tensor, x_hat: Tensor) -> Tensor:
    """Mean over N, C, H, W of |x - x_hat|."""
    return (x_hat - x).abs().mean()


def lpips_loss(lpips_model, x: Tensor, x_hat: Tensor) -> Tensor:
    """Mean over N of the LPIPS distance (``lpips.LPIPS`` returns one value per image, N x 1 x 1 x 1,
    a spatial mean inside each layer). Images in [-1, 1], the lpips package's default range."""
    return lpips_model(x, x_hat).mean()


# --------------------------------------------------------------------------------------------
# KL of the diagonal Gaussian posterior (Eq. 1)
# --------------------------------------------------------------------------------------------
def gaussian_kl(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) summed over all but the batch dimension: shape (N,).

    Per value: (mean^2 + exp(logvar) - 1 - logvar) / 2."""
    per_value = 0.5 * (mean.float() ** 2 + logvar.float().exp() - 1.0 - logvar.float())
    return per_value.flatten(1).sum(1)


def kl_loss(posterior, image_numel: int = 1) -> Tensor:
    """``gaussian_kl(posterior.mean, posterior.logvar)`` averaged over N, divided by
    ``image_numel``: with the image's C*H*W, nats per image value (the module's convention);
    with 1, LDM's nats per image. A fixed DWT latent's point mass (Tables 11, 12) gives 0: its KL
    is dropped, no parameter could change it (study.models.dwt_encoder)."""
    if isinstance(posterior, Deterministic):
        return posterior.kl().float().mean()
    return gaussian_kl(posterior.mean, posterior.logvar).mean() / image_numel


# --------------------------------------------------------------------------------------------
# high-frequency losses (Table 9)
# --------------------------------------------------------------------------------------------
def charbonnier(a: Tensor, b: Tensor, eps: float) -> Tensor:
    """Mean over all values of sqrt((a - b)^2 + eps^2) (it equals eps where a == b)."""
    return torch.sqrt((a - b) ** 2 + eps**2).mean()


def wavelet_loss(x: Tensor, x_hat: Tensor, eps: float) -> Tensor:
    """Charbonnier distance between the level-1 Haar detail bands of x and x_hat, each divided
    by 2 as in the paper's pseudocode (the encoder's 2^l input scaling at l = 1), mean over N, C,
    the 3 bands, H/2, W/2. The DWT is linear, so the bands of x_hat - x are taken once and
    compared with zero: the same value as transforming both."""
    _, (details, *_) = haar_dwt(x_hat - x, 1)
    return charbonnier(details / 2, torch.zeros_like(details), eps)


def gaussian_kernel(size: int, sigma: float) -> Tensor:
    """The normalised size x size Gaussian (an outer product of two 1D Gaussians), float32."""
    if size < 1 or size % 2 == 0 or sigma <= 0:
        raise LossError(f"a Gaussian kernel needs an odd size >= 1 and sigma > 0, got {size}, {sigma}")
    t = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def gaussian_blur(x: Tensor, kernel: int, sigma: float) -> Tensor:
    """G(x): every channel convolved with the Gaussian, reflect-padded so sizes are kept and a
    constant image is left unchanged."""
    c = x.shape[1]
    weight = gaussian_kernel(kernel, sigma).to(x.device, x.dtype).expand(c, 1, kernel, kernel)
    pad = kernel // 2
    return F.conv2d(F.pad(x, (pad, pad, pad, pad), mode="reflect"), weight, groups=c)


def gaussian_highpass_loss(x: Tensor, x_hat: Tensor, kernel: int, sigma: float) -> Tensor:
    """Mean over N, C, H, W of |(x - G x) - (x_hat - G x_hat)|, G a kernel x kernel Gaussian blur.
    G is linear, so this is the high-pass of x_hat - x, computed once."""
    d = x_hat - x
    return (d - gaussian_blur(d, kernel, sigma)).abs().mean()


# --------------------------------------------------------------------------------------------
# adversarial losses (Tables 8, 10, 16)
# --------------------------------------------------------------------------------------------
def _as_list(logits: Logits) -> list[Tensor]:
    return [logits] if isinstance(logits, Tensor) else list(logits)


def _mean_over_list(logits: Logits, per_value) -> Tensor:
    """Mean of per_value(t) over each tensor's values, then the average over the list."""
    tensors = _as_list(logits)
    if not tensors:
        raise LossError("a discriminator returned no logits")
    return sum(per_value(t.float()).mean() for t in tensors) / len(tensors)


def hinge_d_loss(real_logits: Logits, fake_logits: Logits) -> Tensor:
    """(mean relu(1 - real) + mean relu(1 + fake)) / 2, each mean over a tensor's values and then
    averaged over the list (LDM's hinge loss; one list per UNet discriminator output)."""
    return 0.5 * (
        _mean_over_list(real_logits, lambda t: F.relu(1.0 - t))
        + _mean_over_list(fake_logits, lambda t: F.relu(1.0 + t))
    )


def logistic_d_loss(real_logits: Logits, fake_logits: Logits) -> Tensor:
    """(mean softplus(-real) + mean softplus(fake)) / 2: the logistic (non-saturating GAN)
    discriminator loss, reduced as ``hinge_d_loss``."""
    return 0.5 * (_mean_over_list(real_logits, lambda t: F.softplus(-t)) + _mean_over_list(fake_logits, F.softplus))


def generator_loss(fake_logits: Logits, kind: str) -> Tensor:
    """The autoencoder's adversarial loss on its reconstructions' logits: hinge, -mean(fake)
    (LDM); logistic, mean softplus(-fake) (non-saturating). Reduced as ``hinge_d_loss``."""
    if kind == "hinge":
        return _mean_over_list(fake_logits, torch.neg)
    if kind == "logistic":
        return _mean_over_list(fake_logits, lambda t: F.softplus(-t))
    raise LossError(f"unknown adversarial loss {kind!r}; allowed: 'hinge', 'logistic'")


def discriminator_kind_loss(real_logits: Logits, fake_logits: Logits, kind: str) -> Tensor:
    """``hinge_d_loss`` or ``logistic_d_loss`` by name."""
    if kind == "hinge":
        return hinge_d_loss(real_logits, fake_logits)
    if kind == "logistic":
        return logistic_d_loss(real_logits, fake_logits)
    raise LossError(f"unknown adversarial loss {kind!r}; allowed: 'hinge', 'logistic'")


def adaptive_weight(rec_loss: Tensor, g_loss: Tensor, last_layer: Tensor, max_weight: float = 1e4) -> Tensor:
    """Esser et al.'s weight (Eq. 2): ||d rec / d w|| / (||d g / d w|| + 1e-4) at the decoder's last
    layer's weight w, clamped to [0, max_weight] and detached. Gradients are taken with
    ``autograd.grad`` (retaining the graph), so nothing is accumulated in ``.grad``. Under
    ``torch.no_grad`` (validation) there is no gradient to compare and the weight is 0."""
    if not torch.is_grad_enabled():
        return torch.zeros((), device=g_loss.device)
    (rec_grad,) = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)
    (g_grad,) = torch.autograd.grad(g_loss, last_layer, retain_graph=True)
    weight = rec_grad.float().norm() / (g_grad.float().norm() + 1e-4)
    return weight.clamp(0.0, max_weight).detach()


def adversarial_factor(step: int, start: int) -> float:
    """0 before the discriminator's start step, 1 from it on (LDM's ``adopt_weight``; steps count
    from 0, so start 50001 switches it on at the 50002nd step, as LDM's global_step does)."""
    return 1.0 if step >= start else 0.0


# --------------------------------------------------------------------------------------------
# the objectives the trainer minimises
# --------------------------------------------------------------------------------------------
def autoencoder_loss(
    cfg: LossConfig,
    x: Tensor,
    x_hat: Tensor,
    posterior,
    *,
    step: int,
    fake_logits: Logits | None = None,
    lpips_model=None,
    last_layer: Tensor | None = None,
    x_hat_ema: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The autoencoder's loss (Eq. 1 plus Table 9) and its named terms for logging.

    total = rec + kl_weight * kl + factor * lambda * generator, where
    rec = l1_weight * l1 + lpips_weight * lpips + wavelet_weight * wavelet + gaussian_weight * gaussian,
    each term reduced as the module docstring says (so the total is a scalar per image value),
    factor = adversarial_factor(step, discriminator_start), and lambda is
    ``adversarial_weight`` (constant mode, Table 8) or ``adversarial_weight`` times
    ``adaptive_weight(nll, generator, last_layer)`` (adaptive mode, Eq. 2), where nll is
    l1_weight * l1 + lpips_weight * lpips, the terms LDM's ``calculate_adaptive_weight(nll_loss,
    ...)`` compares (``adaptive_weight_terms: l1_lpips``), or the whole rec (``all``, the
    harness's recipe before it followed LDM here). The LDL term is part of rec.

    A term whose weight is 0 is not computed (so LPIPS needs no model then). The adversarial term
    needs ``fake_logits`` (the discriminator on x_hat) and is left out when they are None or the
    config has no discriminator. The dict holds each computed term unweighted and detached, with
    ``rec`` (weighted) and, when the adversarial term is on, ``adversarial_weight`` (lambda * factor).
    """
    terms: dict[str, Tensor] = {}
    with torch.autocast(x.device.type, enabled=False):
        x32, xh32 = x.float(), x_hat.float()
        weighted = []
        nll: list[Tensor] = []  # the terms of LDM's nll_loss: L1 and the perceptual term
        if cfg.l1_weight:
            terms["l1"] = l1_loss(x32, xh32)
            weighted.append(cfg.l1_weight * terms["l1"])
            nll.append(weighted[-1])
        if cfg.wavelet_weight:
            terms["wavelet"] = wavelet_loss(x32, xh32, cfg.charbonnier_eps)
            weighted.append(cfg.wavelet_weight * terms["wavelet"])
        if cfg.gaussian_weight:
            terms["gaussian"] = gaussian_highpass_loss(x32, xh32, cfg.gaussian_kernel, cfg.gaussian_sigma)
            weighted.append(cfg.gaussian_weight * terms["gaussian"])
        terms["kl"] = kl_loss(posterior, x[0].numel())
    if cfg.lpips_weight:  # the perceptual term (Table 14), logged under loss.perceptual's name
        if lpips_model is None:
            raise LossError(
                f"loss.lpips_weight is {cfg.lpips_weight} but no {cfg.perceptual} model was "
                "given (study.measure.weights.load_lpips or study.autoencoder.perceptual.load_esrgan_vgg "
                "builds one; loss.lpips_weight: 0 trains without)"
            )
        terms[cfg.perceptual] = lpips_loss(lpips_model, x, x_hat).float()
        weighted.append(cfg.lpips_weight * terms[cfg.perceptual])
        nll.append(weighted[-1])
    if cfg.ldl_weight:  # Table 15: LDL's artifact loss against the EMA model's reconstruction
        if x_hat_ema is None:
            raise LossError(f"loss.ldl_weight is {cfg.ldl_weight} but no EMA reconstruction was given")
        terms["ldl"] = ldl_loss(x, x_hat, x_hat_ema)
        weighted.append(cfg.ldl_weight * terms["ldl"])
    rec = _sum(weighted, x_hat)
    total = rec + cfg.kl_weight * terms["kl"]

    if fake_logits is not None and cfg.discriminator != "none":
        g = generator_loss(fake_logits, cfg.adversarial_loss)
        terms["generator"] = g
        factor = adversarial_factor(step, cfg.discriminator_start)
        if factor:
            ratio_of = rec if cfg.adaptive_weight_terms == "all" else _sum(nll, x_hat)
            lam = _adversarial_lambda(cfg, ratio_of, g, last_layer)
            total = total + factor * lam * g
            terms["adversarial_weight"] = factor * lam
    terms["rec"] = rec
    return total, {k: v.detach() for k, v in terms.items()}


def _adversarial_lambda(cfg: LossConfig, ratio_of: Tensor, g: Tensor, last_layer: Tensor | None) -> Tensor:
    """lambda: ``adversarial_weight`` (constant mode), or times ``adaptive_weight(ratio_of, g)``
    at the decoder's last layer (adaptive mode)."""
    if cfg.adversarial_weight_mode != "adaptive":
        return torch.tensor(cfg.adversarial_weight, device=g.device)
    if last_layer is None:
        raise LossError(
            "loss.adversarial_weight_mode is 'adaptive' but no decoder last layer was given to take gradients at"
        )
    return cfg.adversarial_weight * adaptive_weight(ratio_of, g, last_layer)


def _sum(weighted: list[Tensor], x_hat: Tensor) -> Tensor:
    """The sum of the weighted terms; with none, a zero that still depends on x_hat."""
    return functools.reduce(operator.add, weighted) if weighted else x_hat.float().sum() * 0.0


def discriminator_loss(cfg: LossConfig, real_logits: Logits, fake_logits: Logits, step: int | None = None) -> Tensor:
    """The discriminator's loss (hinge or logistic, ``cfg.adversarial_loss``), reduced as
    ``hinge_d_loss``; times ``adversarial_factor(step, discriminator_start)`` when ``step`` is
    given (the trainer may instead skip the discriminator's step before its start). Logits of
    detached real images and reconstructions."""
    if cfg.discriminator == "none":
        raise LossError("loss.discriminator is 'none': there is no discriminator loss")
    with torch.autocast(_device_type(real_logits), enabled=False):
        loss = discriminator_kind_loss(real_logits, fake_logits, cfg.adversarial_loss)
    return loss if step is None else adversarial_factor(step, cfg.discriminator_start) * loss


def _device_type(logits: Logits) -> str:
    return _as_list(logits)[0].device.type
