"""The LDL artifact map and loss (study/autoencoder/ldl.py, Table 15) against a hand computation with
explicit loops in numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from study.autoencoder import ldl


def _reflect(i: int, n: int) -> int:
    """Reflect padding without repeating the edge (numpy 'reflect', torch 'reflect')."""
    if i < 0:
        return -i
    if i >= n:
        return 2 * (n - 1) - i
    return i


def _variance(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return sum((v - mean) ** 2 for v in values) / (len(values) - 1)


def _hand_map(x: np.ndarray, x_hat: np.ndarray, x_ema: np.ndarray, window: int = 7, alpha: float = 5.0) -> np.ndarray:
    """One image (C x H x W, values in [-1, 1]) by explicit loops: residuals of the [0, 1] images
    summed over channels, 7x7 unbiased local variance with reflect padding, times the image's
    unbiased variance to the power 1/alpha, zero where the current residual is below the EMA's."""
    c, h, w = x.shape
    r = np.zeros((h, w))
    r_ema = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            for k in range(c):
                r[i, j] += abs((x[k, i, j] + 1) / 2 - (x_hat[k, i, j] + 1) / 2)
                r_ema[i, j] += abs((x[k, i, j] + 1) / 2 - (x_ema[k, i, j] + 1) / 2)
    delta = _variance([r[i, j] for i in range(h) for j in range(w)]) ** (1 / alpha)
    pad = (window - 1) // 2
    out = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            window_values = [
                r[_reflect(i + di, h), _reflect(j + dj, w)]
                for di in range(-pad, pad + 1)
                for dj in range(-pad, pad + 1)
            ]
            out[i, j] = 0.0 if r[i, j] < r_ema[i, j] else delta * _variance(window_values)
    return out


def _images(c: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, c, 8, 8, generator=g) * 2 - 1
    x_hat = (x + 0.3 * torch.randn(1, c, 8, 8, generator=g)).clamp(-1, 1)
    x_ema = (x + 0.3 * torch.randn(1, c, 8, 8, generator=g)).clamp(-1, 1)
    return x, x_hat, x_ema


@pytest.mark.parametrize("channels", [1, 3])
def test_artifact_map_equals_a_hand_computation(channels):
    x, x_hat, x_ema = _images(channels, seed=channels)
    ours = ldl.artifact_map(x, x_hat, x_ema)
    assert ours.shape == (1, 1, 8, 8) and not ours.requires_grad
    hand = _hand_map(x[0].double().numpy(), x_hat[0].double().numpy(), x_ema[0].double().numpy())
    np.testing.assert_allclose(ours[0, 0].double().numpy(), hand, rtol=1e-5, atol=1e-8)
    # the EMA refinement bites: some pixels are zeroed, others are not
    assert (hand == 0).any() and (hand > 0).any()


def test_local_variance_with_reflect_padding_on_a_ramp():
    """A linear ramp along W: inside, a 7x7 window holds 7 rows of j-3..j+3 (squared deviations
    7 x 28 over 49 - 1); at the border reflect padding repeats interior values."""
    r = torch.arange(8.0).repeat(8, 1).view(1, 1, 8, 8)
    v = ldl.local_variance(r)
    assert v[0, 0, 4, 3].item() == pytest.approx(7 * 28 / 48)
    window = [abs(j) for j in range(-3, 4)] * 7  # reflected columns at j = 0: 3 2 1 0 1 2 3
    assert v[0, 0, 4, 0].item() == pytest.approx(_variance(window))
    with pytest.raises(ldl.LDLError):
        ldl.local_variance(torch.zeros(1, 1, 3, 3))


def test_map_is_zero_where_the_ema_is_worse_and_full_where_it_is_perfect():
    x, x_hat, _ = _images(3, seed=5)
    worse = x_hat + 0.5 * torch.sign(x_hat - x)  # further from x at every pixel
    assert ldl.artifact_map(x, x_hat, worse).abs().max() == 0
    perfect = ldl.artifact_map(x, x_hat, x)  # R_ema = 0: no pixel is refined away
    assert torch.equal(perfect, ldl.artifact_map(x, x_hat, x_hat))  # R == R_ema: kept (strict <)
    assert (perfect > 0).all()


def test_ldl_loss_is_the_l1_of_the_weighted_images_with_the_map_detached():
    x, x_hat, x_ema = _images(3, seed=7)
    x_hat = x_hat.requires_grad_(True)
    loss = ldl.ldl_loss(x, x_hat, x_ema)
    hand = _hand_map(x[0].double().numpy(), x_hat[0].detach().double().numpy(), x_ema[0].double().numpy())
    expected = np.mean(np.abs(hand[None] * x[0].double().numpy() - hand[None] * x_hat[0].detach().double().numpy()))
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    m = ldl.artifact_map(x, x_hat.detach(), x_ema)
    grad = -m * torch.sign(m * x - m * x_hat.detach()) / x.numel()
    torch.testing.assert_close(x_hat.grad, grad.expand_as(x), rtol=1e-5, atol=1e-12)
    assert ldl.ldl_loss(x, x, x_ema).item() == 0.0
    with pytest.raises(ldl.LDLError):
        ldl.ldl_loss(x, x_hat, x_ema[:, :1])
