"""The metrics on tensors (study/measure/metrics.py): PSNR against its formula, SSIM against
scikit-image, LPIPS against a second lpips.LPIPS built the package's own way, the Frechet distance against scipy's and
torch-fidelity's on the same statistics, the feature statistics against numpy.

Agreement of the whole rFID pipeline with torch_fidelity.calculate_metrics on the same images is
printed by benchmarks/bench_eval.py (relative difference ~2e-6). The evaluation job that uses
these is tested in tests/test_evaluate.py.
"""

from __future__ import annotations

import math

import lpips
import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from skimage.metrics import structural_similarity

from study.measure import metrics as metric_fns
from study.measure import weights as weight_files
from tests.metric_helpers import independent_lpips

pytest_plugins = ["tests.metric_fixtures"]  # the weights fixtures


def _hwc(image: torch.Tensor) -> np.ndarray:
    return image.permute(1, 2, 0).numpy()


# --------------------------------------------------------------------------------------------
# PSNR and SSIM
# --------------------------------------------------------------------------------------------
def test_psnr_equals_the_formula_on_hand_made_images():
    x = torch.zeros(3, 3, 16, 16, dtype=torch.uint8)
    y = x.clone()
    y[0, :, :8, :] = 10  # half the values off by 10: MSE 50
    y[1, 0, 0, 0] = 255  # one value off by 255: MSE 255^2 / 768
    y[2] = x[2]  # identical: +inf
    got = metric_fns.psnr(x, y)
    assert got.dtype == torch.float64 and got.shape == (3,)
    assert got[0].item() == pytest.approx(10 * math.log10(255**2 / 50.0), abs=1e-12)
    assert got[1].item() == pytest.approx(10 * math.log10(768), abs=1e-12)
    assert math.isinf(got[2].item()) and got[2] > 0
    # uint8 wrap-around must not happen: 0 vs 255 is a difference of 255, not 1
    a = torch.full((1, 3, 4, 4), 255, dtype=torch.uint8)
    assert metric_fns.psnr(a, torch.zeros_like(a)).item() == pytest.approx(0.0, abs=1e-12)


def test_psnr_and_ssim_refuse_floats():
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(TypeError):
        metric_fns.psnr(x, x)
    with pytest.raises(TypeError):
        metric_fns.ssim(x, x)


@pytest.mark.parametrize(
    "shape,noise", [((3, 3, 40, 33), 20.0), ((2, 3, 11, 11), 60.0), ((2, 1, 64, 48), 5.0), ((1, 3, 24, 24), 0.0)]
)
def test_ssim_matches_scikit_image(shape, noise):
    g = torch.Generator().manual_seed(sum(shape))
    smooth = F.interpolate(torch.rand(shape[0], shape[1], 5, 5, generator=g), size=shape[2:], mode="bilinear")
    x = (smooth * 255).round().to(torch.uint8)
    y = (
        (x.double() + noise * torch.randn(shape, generator=g, dtype=torch.float64))
        .clamp(0, 255)
        .round()
        .to(torch.uint8)
    )
    got = metric_fns.ssim(x, y)
    for i in range(shape[0]):
        want = structural_similarity(
            x[i].numpy(),
            y[i].numpy(),
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=255,
            channel_axis=0,
        )
        assert abs(got[i].item() - want) < 1e-4, (i, got[i].item(), want)
    if noise == 0:
        assert torch.allclose(got, torch.ones_like(got))
    else:
        assert (got < 0.999).all()


def test_ssim_needs_the_window_to_fit():
    x = torch.zeros(1, 3, 10, 40, dtype=torch.uint8)
    with pytest.raises(ValueError, match="11x11"):
        metric_fns.ssim(x, x)


# --------------------------------------------------------------------------------------------
# Frechet distance and statistics
# --------------------------------------------------------------------------------------------
def _direct_fid(f1: np.ndarray, f2: np.ndarray) -> float:
    """The textbook computation with scipy's matrix square root."""
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_frechet_distance_equals_a_direct_scipy_computation():
    rng = np.random.default_rng(0)
    d = 24
    f1 = rng.normal(size=(400, d)) @ rng.normal(size=(d, d))
    f2 = 0.5 + rng.normal(size=(300, d)) @ rng.normal(size=(d, d)) * 0.8
    mu1, s1, mu2, s2 = f1.mean(0), np.cov(f1, rowvar=False), f2.mean(0), np.cov(f2, rowvar=False)
    ours = metric_fns.frechet_distance(mu1, s1, mu2, s2)
    assert ours == pytest.approx(_direct_fid(f1, f2), rel=1e-9)
    assert ours > 1.0
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    tf = fid_statistics_to_metric({"mu": mu1, "sigma": s1}, {"mu": mu2, "sigma": s2}, False)
    assert ours == pytest.approx(tf["frechet_inception_distance"], rel=1e-9)
    assert abs(metric_fns.frechet_distance(mu1, s1, mu1, s1)) < 1e-9


def test_feature_stats_do_not_depend_on_batching():
    rng = np.random.default_rng(1)
    f = rng.normal(size=(37, 16)) * 3 + 100  # a large offset: a naive sum of squares would lose digits
    want_mu, want_cov = f.mean(0), np.cov(f, rowvar=False)
    for sizes in ([37], [1] * 37, [5, 11, 2, 19], [36, 1]):
        stats, start = metric_fns.FeatureStats(), 0
        for s in sizes:
            stats.update(torch.from_numpy(f[start : start + s]))
            start += s
        np.testing.assert_allclose(stats.mean(), want_mu, rtol=0, atol=1e-10)
        np.testing.assert_allclose(stats.cov(), want_cov, rtol=0, atol=1e-10)


def test_lpips_distance_is_zero_on_identical_images_and_grows_with_the_change(alexnet_file, monkeypatch):
    monkeypatch.setenv(weight_files.REGISTRY["alexnet"].override_env, str(alexnet_file))
    model = weight_files.load_lpips("alex", "cpu")
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(3, 3, 32, 32, generator=g) * 255).round().to(torch.uint8)
    noise = torch.randn(x.shape, generator=g)
    near = (x.double() + 4 * noise).clamp(0, 255).round().to(torch.uint8)
    far = (x.double() + 40 * noise).clamp(0, 255).round().to(torch.uint8)
    same = metric_fns.lpips_distance(model, x, x)
    assert same.dtype == torch.float64 and same.shape == (3,)
    assert same.abs().max() < 1e-6
    d_near, d_far = metric_fns.lpips_distance(model, x, near), metric_fns.lpips_distance(model, x, far)
    assert (d_near > 1e-6).all() and (d_far > d_near).all()
    # a second lpips.LPIPS built the package's own way from the same weight file (not our loader,
    # not the same object), fed the package's own [-1, 1] conversion (lpips.im2tensor)
    reference = independent_lpips("alex", alexnet_file)
    assert reference is not model
    with torch.no_grad():
        want = torch.cat([reference(lpips.im2tensor(_hwc(x[i])), lpips.im2tensor(_hwc(far[i]))) for i in range(3)])
    torch.testing.assert_close(d_far, want.flatten().double(), rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError):
        metric_fns.lpips_distance(model, x.float(), x.float())
