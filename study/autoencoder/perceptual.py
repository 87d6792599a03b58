"""The ESRGAN perceptual loss (Table 14, ``loss.perceptual: esrgan`` instead of LPIPS): the L1
distance of VGG19 conv5_4 features taken before the activation, on frozen ImageNet weights from
the weights cache. Input mapping, reduction and weight: docs/models.md, "The ESRGAN perceptual
loss in detail".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from study.measure import weights as weight_files

# torchvision's VGG19 ``features`` indices: conv5_4 is module 34, its ReLU 35. Keeping 0..34 ends on
# the convolution's output, before the activation (ESRGAN Sec. 3.3).
CONV5_4 = 34

# The ImageNet statistics the torchvision VGG19 weights were trained with (RGB).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PerceptualLossError(ValueError):
    """A state dict that is not a torchvision VGG19 (missing or mis-shaped ``features.*`` tensors)."""


class ESRGANPerceptual(nn.Module):
    """L1 between VGG19 conv5_4 pre-activation features of two [-1, 1] image batches."""

    mean: Tensor
    std: Tensor

    def __init__(self, features: nn.Sequential):
        super().__init__()
        self.features = features
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> ESRGANPerceptual:
        """Always eval: the loss network never changes mode with the model it supervises."""
        return super().train(False)

    def phi(self, x: Tensor) -> Tensor:
        """conv5_4 features (before ReLU) of a [-1, 1] RGB batch."""
        x01 = (x + 1.0) / 2.0
        return self.features((x01 - self.mean.to(x01.dtype)) / self.std.to(x01.dtype))

    def forward(self, x: Tensor, x_hat: Tensor) -> Tensor:
        with torch.no_grad():
            target = self.phi(x)
        return (self.phi(x_hat) - target).abs().mean()


def vgg19_features_to_conv5_4() -> nn.Sequential:
    """The VGG19 ``features`` trunk up to conv5_4 with random weights (no download), built by
    torchvision's own VGG layer builder (configuration "E" is VGG19) without the 120 M-parameter
    classifier, which the loss never uses."""
    from torchvision.models.vgg import cfgs, make_layers

    return nn.Sequential(*list(make_layers(cfgs["E"], batch_norm=False).children())[: CONV5_4 + 1])


def esrgan_from_state(state: dict[str, Any]) -> ESRGANPerceptual:
    """Build the loss from a torchvision VGG19 state dict (only ``features.0`` .. ``features.34``
    are used; the classifier is ignored)."""
    features = vgg19_features_to_conv5_4()
    wanted = features.state_dict()
    picked = {}
    for key, tensor in wanted.items():
        source = state.get(f"features.{key}")
        if source is None or tuple(source.shape) != tuple(tensor.shape):
            raise PerceptualLossError(
                f"not a torchvision VGG19 state dict: features.{key} is "
                f"{'missing' if source is None else tuple(source.shape)}, expected {tuple(tensor.shape)}"
            )
        picked[key] = source
    features.load_state_dict(picked, strict=True)
    return ESRGANPerceptual(features)


def load_esrgan_vgg(device: Any = "cpu", directory: str | Path | None = None) -> ESRGANPerceptual:
    """The ESRGAN loss with VGG19 from the weights cache (or ``$LITEVAE_VGG19_WEIGHTS``), frozen,
    on ``device``. Raises ``MissingWeightsError`` (or ``CorruptWeightsError``) naming the file, the
    directory and ``python run_study.py weights fetch``: call it before the first training step."""
    resolved = weight_files.resolve("vgg19", directory)
    state = torch.load(resolved.path, map_location="cpu", weights_only=True)
    return esrgan_from_state(state).to(device)


def esrgan_perceptual_loss(model: ESRGANPerceptual, x: Tensor, x_hat: Tensor) -> Tensor:
    """Mean over N, C, h, w of |phi(x) - phi(x_hat)| (the losses module's convention)."""
    return model(x, x_hat)
