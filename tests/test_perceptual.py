"""The ESRGAN perceptual loss (study/autoencoder/perceptual.py, Table 14) and its VGG19 weights entry.

The VGG19 is torchvision's architecture with random weights, saved by the test as the custom
weights file ($LITEVAE_VGG19_WEIGHTS, the same mechanism as the random Inception of the metric
tests): the real loader, the real network, no download."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from study.autoencoder import perceptual
from study.measure import weights as weight_files


@pytest.fixture
def wdir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "weights"
    monkeypatch.setenv(weight_files.WEIGHTS_ENV, str(folder))
    for w in weight_files.REGISTRY.values():
        monkeypatch.delenv(w.override_env, raising=False)
    return folder


@pytest.fixture(scope="module")
def random_vgg19() -> torch.nn.Module:
    """torchvision's VGG19 with random weights, in eval mode."""
    from torchvision.models import vgg19

    torch.manual_seed(0)
    return vgg19(weights=None).eval()


@pytest.fixture(scope="module")
def vgg19_state(random_vgg19) -> dict[str, torch.Tensor]:
    """Its ``features.*`` tensors (the classifier, 480 MB, is never read by the loss)."""
    return {k: v for k, v in random_vgg19.state_dict().items() if k.startswith("features.")}


@pytest.fixture
def staged(wdir, tmp_path, monkeypatch, vgg19_state) -> Path:
    path = tmp_path / "vgg19-random.pth"
    torch.save(vgg19_state, path)
    monkeypatch.setenv(weight_files.REGISTRY["vgg19"].override_env, str(path))
    return path


def _images(seed: int, n: int = 2, size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1


def test_loss_is_zero_for_identical_images_positive_otherwise_with_gradients(staged):
    model = perceptual.load_esrgan_vgg("cpu")
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    x, y = _images(0), _images(1)
    assert perceptual.esrgan_perceptual_loss(model, x, x.clone()).item() == 0.0
    x_hat = y.clone().requires_grad_(True)
    loss = perceptual.esrgan_perceptual_loss(model, x, x_hat)
    assert loss.item() > 0
    loss.backward()
    assert x_hat.grad is not None and x_hat.grad.abs().sum() > 0
    model.train()  # the loss network stays in eval mode whatever the trainer does
    assert not model.training


def test_features_are_torchvision_conv5_4_before_its_relu(staged, random_vgg19):
    """phi equals the output of torchvision's conv5_4 (features[34]) inside the full VGG19's
    forward on ImageNet-normalised [0, 1] images, and keeps negative values (no activation)."""
    full = random_vgg19
    captured = {}
    hook = full.features[perceptual.CONV5_4].register_forward_hook(lambda m, i, o: captured.update(out=o.clone()))
    assert isinstance(full.features[perceptual.CONV5_4], torch.nn.Conv2d)
    assert isinstance(full.features[perceptual.CONV5_4 + 1], torch.nn.ReLU)

    x = _images(2)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        full(((x + 1) / 2 - mean) / std)
        ours = perceptual.load_esrgan_vgg("cpu").phi(x)
    hook.remove()
    assert ours.shape == (2, 512, 2, 2)
    torch.testing.assert_close(ours, captured["out"], rtol=1e-5, atol=1e-6)
    assert (ours < 0).any()


def test_missing_weights_fail_naming_the_file_and_the_fetch_command(wdir):
    with pytest.raises(weight_files.MissingWeightsError) as e:
        perceptual.load_esrgan_vgg("cpu")
    msg = str(e.value)
    assert "vgg19-dcbb9e9d.pth" in msg and str(wdir) in msg
    assert "python run_study.py weights fetch" in msg


def test_a_state_dict_that_is_not_vgg19_is_refused(vgg19_state):
    broken = dict(vgg19_state)
    del broken["features.34.weight"]
    with pytest.raises(perceptual.PerceptualLossError, match="features.34.weight"):
        perceptual.esrgan_from_state(broken)


def test_a_prefix_pin_accepts_the_matching_file_and_flags_another(wdir, tmp_path, monkeypatch):
    """vgg19's entry pins torch hub's 8-digit prefix; check/resolve verify that prefix."""
    good = b"vgg19 stand-in"
    digest = hashlib.sha256(good).hexdigest()
    entry = weight_files.WeightFile("vgg19", f"vgg19-{digest[:8]}.pth", "file:///nowhere", digest[:8], len(good), "t")
    monkeypatch.setattr(weight_files, "REGISTRY", {"vgg19": entry})
    assert entry.matches(digest) and not entry.matches(hashlib.sha256(b"other").hexdigest())
    wdir.mkdir()
    (wdir / entry.filename).write_bytes(good)
    assert [r.state for r in weight_files.check()] == ["present"]
    assert weight_files.resolve("vgg19").path == wdir / entry.filename
    (wdir / entry.filename).write_bytes(b"torn")
    assert [r.state for r in weight_files.check()] == ["corrupt"]
    with pytest.raises(weight_files.CorruptWeightsError):
        weight_files.resolve("vgg19")
