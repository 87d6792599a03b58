"""Shared by tests/test_metrics.py and tests/test_evaluate.py: smooth random images and a
stand-in autoencoder, and an LPIPS model built independently of ours (the weights fixtures are
tests/metric_fixtures.py).

The autoencoder is a stand-in with the real interface (encode -> posterior with mode()/sample(),
decode) whose reconstruction is the input plus a deterministic, batch-independent perturbation of
a chosen size: what is under test is the metric pipeline, not a model.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from study import config

N_IMAGES = 8
RES = 32


class Images(Dataset):
    """Smooth random colour images (bicubic upsampling of 4x4 noise), float in [-1, 1]."""

    def __init__(self, n: int = N_IMAGES, seed: int = 0, res: int = RES):
        g = torch.Generator().manual_seed(seed)
        low = torch.rand(n, 3, 4, 4, generator=g)
        self.x = F.interpolate(low, size=res, mode="bicubic", align_corners=False).clamp(0, 1) * 2 - 1

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.x[i]


class Posterior:
    def __init__(self, z: torch.Tensor):
        self.z = z

    def mode(self) -> torch.Tensor:
        return self.z

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.z + 0.1 * torch.randn(self.z.shape, generator=generator, device=self.z.device)


class StandIn(nn.Module):
    """encode: identity posterior; decode: z + sigma * a pseudo-random pattern that is a function
    of each pixel's value and position only (so it does not depend on the batching)."""

    def __init__(self, sigma: float = 0.0):
        super().__init__()
        self.sigma = sigma
        self.scale = nn.Parameter(torch.ones(()))  # a module with a parameter, as a real model

    def encode(self, x: torch.Tensor) -> Posterior:
        return Posterior(x * self.scale)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(z[0].numel(), dtype=z.dtype, device=z.device).view(z.shape[1:])
        return z + self.sigma * torch.sin(4321.0 * z + 1.37 * pos)


def independent_lpips(net: str, path: Path) -> torch.nn.Module:
    """``lpips.LPIPS(net=net)`` built the lpips package's own way (a pretrained backbone cut into
    its slices by the package, linear layers from the package), with torchvision's model loading
    the trunk from ``path`` instead of downloading it: a second model from the same weight files,
    independent of study.measure.weights' own loading."""
    from unittest import mock

    import lpips
    import torchvision
    from torchvision.models import vgg

    trunk = {k.removeprefix("features."): v for k, v in torch.load(path, weights_only=True).items()}

    def alexnet(pretrained: bool = True) -> torch.nn.Module:
        model = torchvision.models.alexnet(weights=None)
        model.features.load_state_dict(trunk, strict=True)
        return model

    def vgg16(pretrained: bool = True) -> SimpleNamespace:
        features = vgg.make_layers(vgg.cfgs["D"])
        features.load_state_dict(trunk, strict=True)
        return SimpleNamespace(features=features)

    with mock.patch.object(lpips.pretrained_networks, "tv", SimpleNamespace(alexnet=alexnet, vgg16=vgg16)):
        return lpips.LPIPS(net=net, verbose=False).eval()


def cfg_for(**eval_overrides) -> config.ExperimentConfig:
    over = {"data.resolution": RES, "eval.num_images": N_IMAGES, "eval.batch_size": N_IMAGES}
    over.update({f"eval.{k}": v for k, v in eval_overrides.items()})
    return config.validate(config.apply_overrides(config.ExperimentConfig(), over))


def run_folder(root: Path, name: str) -> Path:
    folder = root / "runs" / name
    folder.mkdir(parents=True)
    return folder
