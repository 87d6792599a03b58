"""Weights fixtures for tests/test_metrics.py and tests/test_evaluate.py (a pytest plugin they
name in ``pytest_plugins``).

The Inception file is generated locally (torch-fidelity's architecture, random init with the
convolutions re-initialised Kaiming, so pool3 features vary with the image; see
study.measure.stand_ins.make_random_inception); the LPIPS backbones are randomly initialised
torchvision AlexNet and VGG16 trunks. All are passed in as custom files ($LITEVAE_INCEPTION_WEIGHTS,
$LITEVAE_ALEXNET_WEIGHTS, $LITEVAE_VGG16_WEIGHTS).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from study.measure import weights as weight_files
from study.measure.stand_ins import make_random_inception


@pytest.fixture(scope="session")
def inception_file(tmp_path_factory) -> Path:
    return make_random_inception(tmp_path_factory.mktemp("weights") / "inception-random.pth", seed=0)


@pytest.fixture(scope="session")
def alexnet_file(tmp_path_factory) -> Path:
    import torchvision

    torch.manual_seed(0)
    features = torchvision.models.alexnet(weights=None).features
    path = tmp_path_factory.mktemp("weights") / "alexnet-random.pth"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    return path


@pytest.fixture(scope="session")
def vgg16_file(tmp_path_factory) -> Path:
    """A randomly initialised torchvision VGG16 trunk (``features.*`` only: the classifier is
    most of VGG16's 138M parameters and LPIPS does not use it)."""
    from torchvision.models import vgg

    torch.manual_seed(0)
    features = vgg.make_layers(vgg.cfgs["D"])
    path = tmp_path_factory.mktemp("weights") / "vgg16-random.pth"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    return path


@pytest.fixture
def no_weights(tmp_path, monkeypatch) -> Path:
    """An empty weights directory and no custom files: nothing can be loaded."""
    folder = tmp_path / "empty-weights"
    folder.mkdir()
    monkeypatch.setenv(weight_files.WEIGHTS_ENV, str(folder))
    for w in weight_files.REGISTRY.values():
        monkeypatch.delenv(w.override_env, raising=False)
    return folder


@pytest.fixture
def test_weights(no_weights, monkeypatch, inception_file, alexnet_file) -> None:
    monkeypatch.setenv(weight_files.REGISTRY["inception"].override_env, str(inception_file))
    monkeypatch.setenv(weight_files.REGISTRY["alexnet"].override_env, str(alexnet_file))


@pytest.fixture
def lpips_weights(test_weights, monkeypatch, vgg16_file) -> None:
    """test_weights, and the VGG16 trunk for LPIPS-VGG."""
    monkeypatch.setenv(weight_files.REGISTRY["vgg16"].override_env, str(vgg16_file))
