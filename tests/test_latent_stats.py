"""Latent statistics of Table 6 (study/measure/latent_stats.py): the RBF MMD against a direct numpy
computation, its noise for Gaussian "latents", its growth with a mean shift and a scale change, and
the per-channel statistics with the diffusion scale factor."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from study.measure import latent_stats

# Latents of a realistic dimension for the Table 6 bandwidths: 12 x 8 x 8 = 768, a typical distance
# between two N(0, I) vectors of sqrt(2 * 768) ~ 39, inside the 25..500 range.
SHAPE = (12, 8, 8)
PROTOCOL = dict(repeats=10, samples_per_repeat=300, seed=0)


def _gaussian(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, *SHAPE, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _numpy_mmd2(x: np.ndarray, y: np.ndarray, h: float, unbiased: bool) -> float:
    """Gretton et al. (2012) by explicit loops, k(a, b) = exp(-||a - b||^2 / (2 h^2))."""

    def k(a, b):
        return math.exp(-float(np.sum((a - b) ** 2)) / (2.0 * h * h))

    m, n = len(x), len(y)
    sxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if not (unbiased and i == j))
    syy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if not (unbiased and i == j))
    sxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n))
    if unbiased:
        return sxx / (m * (m - 1)) + syy / (n * (n - 1)) - 2.0 * sxy / (m * n)
    return sxx / m**2 + syy / n**2 - 2.0 * sxy / (m * n)


@pytest.mark.parametrize("unbiased", [True, False])
def test_mmd_equals_a_direct_numpy_computation(unbiased):
    rng = np.random.default_rng(0)
    x = rng.normal(0.3, 1.2, size=(6, 40))
    y = rng.normal(0.0, 1.0, size=(7, 40))
    bandwidths = (2.0, 5.0, *latent_stats.TABLE6_BANDWIDTHS)
    ours = latent_stats.mmd_rbf(torch.from_numpy(x), torch.from_numpy(y), bandwidths, unbiased=unbiased)
    assert list(ours) == list(bandwidths)
    for h in bandwidths:
        assert ours[h] == pytest.approx(_numpy_mmd2(x, y, h, unbiased), rel=1e-9, abs=1e-15), h
    # the two estimators differ by the diagonal terms: not the same number
    other = latent_stats.mmd_rbf(torch.from_numpy(x), torch.from_numpy(y), (5.0,), unbiased=not unbiased)
    assert other[5.0] != pytest.approx(ours[5.0], rel=1e-3)


def test_mmd_flattens_each_latent_and_checks_dimensions():
    x, y = _gaussian(5, 1), _gaussian(6, 2)
    assert latent_stats.mmd_rbf(x, y, (50.0,)) == latent_stats.mmd_rbf(x.flatten(1), y.flatten(1), (50.0,))
    with pytest.raises(latent_stats.LatentStatsError, match="dimension"):
        latent_stats.mmd_rbf(x, y[:, :1], (50.0,))
    with pytest.raises(latent_stats.LatentStatsError, match="2 samples"):
        latent_stats.mmd_rbf(x[:1], y, (50.0,))


def test_gaussian_latents_give_mmd_within_the_estimators_measured_noise():
    z = _gaussian(600, 1)
    r = latent_stats.latent_mmd(z, **PROTOCOL)
    assert (r.repeats, r.samples_per_repeat, r.dimension, r.unbiased) == (10, 300, 768, True)
    assert list(r.mean) == list(latent_stats.TABLE6_BANDWIDTHS)
    for h in latent_stats.TABLE6_BANDWIDTHS:
        noise = r.std[h] / math.sqrt(r.repeats)  # standard error of the mean over repeats
        assert r.std[h] > 0 and abs(r.mean[h]) < 3 * noise, (h, r.mean[h], r.std[h])
    # the biased estimator is not centred at 0: its positive bias is many times the noise at h=25
    b = latent_stats.latent_mmd(z, **PROTOCOL, unbiased=False)
    assert b.mean[25.0] > 10 * r.std[25.0]


def test_mmd_grows_with_a_mean_shift():
    z = _gaussian(600, 1)
    noise = latent_stats.latent_mmd(z, **PROTOCOL).std
    previous = {h: 0.0 for h in latent_stats.TABLE6_BANDWIDTHS}
    for shift in (0.05, 0.1, 0.2):
        r = latent_stats.latent_mmd(z + shift, **PROTOCOL)
        for h in latent_stats.TABLE6_BANDWIDTHS:
            assert r.mean[h] > previous[h] and r.mean[h] > 5 * noise[h], (shift, h)
        previous = r.mean


def test_mmd_grows_with_a_scale_change():
    z = _gaussian(600, 1)
    noise = latent_stats.latent_mmd(z, **PROTOCOL).std
    previous = {h: 0.0 for h in latent_stats.TABLE6_BANDWIDTHS}
    for scale in (1.25, 1.5, 2.0):
        r = latent_stats.latent_mmd(z * scale, **PROTOCOL)
        for h in latent_stats.TABLE6_BANDWIDTHS:
            assert r.mean[h] > previous[h], (scale, h)
        previous = r.mean
    assert all(previous[h] > 10 * noise[h] for h in latent_stats.TABLE6_BANDWIDTHS)
    # shrinking is detected too, at the bandwidths near the latents' typical distance
    small = latent_stats.latent_mmd(z * 0.6, **PROTOCOL)
    assert all(small.mean[h] > 10 * noise[h] for h in (25.0, 50.0, 100.0))


def test_latent_mmd_is_seeded_and_uses_all_latents_when_there_are_few():
    z = _gaussian(40, 3)
    a, b = latent_stats.latent_mmd(z, **PROTOCOL), latent_stats.latent_mmd(z, **PROTOCOL)
    assert a == b and a.samples_per_repeat == 40
    assert latent_stats.latent_mmd(z, repeats=10, samples_per_repeat=300, seed=1) != a
    with pytest.raises(latent_stats.LatentStatsError, match="repeats"):
        latent_stats.latent_mmd(z, repeats=1)


def test_channel_stats_and_scale_factor_equal_numpy():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(5, 3, 4, 4)) * np.array([1.0, 2.0, 0.5]).reshape(1, 3, 1, 1)
    z += np.array([0.0, 1.0, -3.0]).reshape(1, 3, 1, 1)
    st = latent_stats.channel_stats(torch.from_numpy(z).float())
    z32 = z.astype(np.float32).astype(np.float64)
    for c in range(3):
        assert st.mean[c] == pytest.approx(z32[:, c].mean(), rel=1e-12)
        assert st.std[c] == pytest.approx(z32[:, c].std(ddof=1), rel=1e-12)
    assert st.std_all == pytest.approx(z32.std(ddof=1), rel=1e-12)
    assert st.scale_factor == pytest.approx(1.0 / z32.std(ddof=1), rel=1e-12)
    with pytest.raises(latent_stats.LatentStatsError):
        latent_stats.channel_stats(torch.zeros(2, 3, 4, 4))
    with pytest.raises(latent_stats.LatentStatsError):
        latent_stats.channel_stats(torch.zeros(2, 12))
