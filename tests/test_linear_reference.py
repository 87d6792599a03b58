"""The demo's linear reference (study/evaluation/linear_reference.py): PCA of the latent's size
equals numpy's SVD of the same crops, its PSNR scikit-image's on the same uint8 images; the demo
fits it once per latent size (the report's row: tests/test_report.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio

from study import store
from study.data.datasets import eval_set, train_set
from study.evaluation import linear_reference
from study.measure.metrics import to_uint8
from study.studyfile.grid import expand
from study.studyfile.parse import load_study
from tests.launch_helpers import REPO

CROPS = 300


def _config():
    extra = {"model.latent_channels": 1, "eval.num_images": 8}  # 16 components at 32x32
    return expand(load_study(REPO / "ablations" / "smoke.yaml"), None, extra)[0].config


def test_pca_equals_numpys_svd_and_psnr_scikit_images():
    cfg = _config()
    ref = linear_reference.fit(cfg, CROPS)
    assert ref.components == 16 and ref.eval_images == 8 and ref.train_crops == CROPS
    r = cfg.data.resolution
    train = train_set(cfg.data, r, linear_reference.SEED)
    x = np.stack([train[i].numpy() for i in range(CROPS)]).reshape(CROPS, -1).astype(np.float64)
    mean = x.mean(0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    held = eval_set(cfg.data, r, 8)
    images = np.stack([held[i].numpy() for i in range(8)])
    flat = images.reshape(8, -1) - mean
    recon = (flat @ vt[:16].T @ vt[:16] + mean).reshape(images.shape)
    a, b = to_uint8(torch.from_numpy(images)), to_uint8(torch.from_numpy(recon))
    expected = np.mean([peak_signal_noise_ratio(p.numpy(), q.numpy(), data_range=255) for p, q in zip(a, b)])
    assert abs(ref.psnr - expected) < 1e-6
    assert 0 < ref.ssim < 1


@pytest.mark.parametrize("rows", [12, 50])  # fewer rows than columns (the SVD), more (the covariance)
def test_principal_directions_span_numpys_leading_singular_vectors(rows):
    x = np.random.default_rng(0).normal(size=(rows, 20)) * np.linspace(3, 0.1, 20)
    x -= x.mean(0)
    got = linear_reference.principal_directions(torch.from_numpy(x), 5).numpy()
    vt = np.linalg.svd(x, full_matrices=False)[2][:5]
    assert np.allclose(got @ got.T, vt.T @ vt, atol=1e-8)  # the same projection, whatever the signs


def test_ensure_fits_once_and_keeps_it_for_the_same_latent(tmp_path, monkeypatch):
    cfg = _config()
    calls = []
    real = linear_reference.fit
    monkeypatch.setattr(linear_reference, "fit", lambda c: calls.append(1) or real(c, CROPS))
    first = linear_reference.ensure(tmp_path, "smoke", cfg)
    again = linear_reference.ensure(tmp_path, "smoke", cfg)
    assert first == again and len(calls) == 1  # the same latent, resolution and images: kept
    assert store.read_json(store.linear_reference_path(tmp_path, "smoke"))["components"] == 16
