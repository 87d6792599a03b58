"""NAFNet as LiteVAE's feature extractor (Table 18): the block's layer shapes and parameter
formula, its parts against independent formulas, the extractor's interface, and its parameter
count per preset pinned beside the UNet extractor's (counted with study.models.litevae)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from study.models.litevae import FeatureUNet
from study.models.nafnet import (
    NAFNET_FOR_UNET,
    LayerNorm2d,
    NAFBlock,
    NAFNetExtractor,
    SimpleGate,
    SimplifiedChannelAttention,
    UnknownNAFNetShape,
    nafnet_extractor,
)
from study.models.registry import litevae_widths

pytestmark = pytest.mark.usefixtures("one_thread")


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --------------------------------------------------------------------------------------------
# the block
# --------------------------------------------------------------------------------------------
def test_nafblock_layer_shapes():
    c = 8
    shapes = {name: tuple(p.shape) for name, p in NAFBlock(c).named_parameters()}
    assert shapes == {
        "norm1.weight": (c,),
        "norm1.bias": (c,),
        "conv1.weight": (2 * c, c, 1, 1),
        "conv1.bias": (2 * c,),
        "dwconv.weight": (2 * c, 1, 3, 3),
        "dwconv.bias": (2 * c,),
        "sca.conv.weight": (c, c, 1, 1),
        "sca.conv.bias": (c,),
        "conv2.weight": (c, c, 1, 1),
        "conv2.bias": (c,),
        "norm2.weight": (c,),
        "norm2.bias": (c,),
        "conv3.weight": (2 * c, c, 1, 1),
        "conv3.bias": (2 * c,),
        "conv4.weight": (c, c, 1, 1),
        "conv4.bias": (c,),
        "beta": (1, c, 1, 1),
        "gamma": (1, c, 1, 1),
    }


@pytest.mark.parametrize("c", [8, 48, 128])
def test_nafblock_has_7c2_plus_33c_parameters(c):
    with torch.device("meta"):
        assert count(NAFBlock(c)) == 7 * c * c + 33 * c


def test_nafblock_starts_as_the_identity_and_keeps_its_shape():
    torch.manual_seed(0)
    block = NAFBlock(8)
    x = torch.randn(2, 8, 5, 7)
    assert torch.equal(block(x), x)  # beta = gamma = 0 at init
    with torch.no_grad():
        block.beta.fill_(0.5)
        block.gamma.fill_(0.5)
    y = block(x)
    assert y.shape == x.shape and not torch.allclose(y, x)


def test_nafblock_forward_matches_the_written_out_equations():
    torch.manual_seed(1)
    b = NAFBlock(4)
    with torch.no_grad():
        b.beta.normal_()
        b.gamma.normal_()
    x = torch.randn(2, 4, 6, 6)

    def ln(t, norm):
        return F.layer_norm(t.permute(0, 2, 3, 1), (4,), norm.weight, norm.bias, 1e-6).permute(0, 3, 1, 2)

    h = F.conv2d(ln(x, b.norm1), b.conv1.weight, b.conv1.bias)
    h = F.conv2d(h, b.dwconv.weight, b.dwconv.bias, padding=1, groups=8)
    h = h[:, :4] * h[:, 4:]
    h = h * F.conv2d(h.mean((2, 3), keepdim=True), b.sca.conv.weight, b.sca.conv.bias)
    y = x + b.beta * F.conv2d(h, b.conv2.weight, b.conv2.bias)
    h = F.conv2d(ln(y, b.norm2), b.conv3.weight, b.conv3.bias)
    z = y + b.gamma * F.conv2d(h[:, :4] * h[:, 4:], b.conv4.weight, b.conv4.bias)
    torch.testing.assert_close(b(x), z, rtol=1e-5, atol=1e-5)


def test_layernorm2d_normalises_each_pixel_over_channels():
    torch.manual_seed(2)
    norm = LayerNorm2d(6)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = torch.randn(3, 6, 4, 5) * 3 + 1
    ref = F.layer_norm(x.permute(0, 2, 3, 1), (6,), norm.weight, norm.bias, 1e-6).permute(0, 3, 1, 2)
    torch.testing.assert_close(norm(x), ref, rtol=1e-5, atol=1e-5)


def test_simple_gate_and_channel_attention():
    x = torch.arange(2 * 4 * 3 * 3, dtype=torch.float32).view(2, 4, 3, 3)
    assert torch.equal(SimpleGate()(x), x[:, :2] * x[:, 2:])
    sca = SimplifiedChannelAttention(4)
    pooled = x.mean(dim=(2, 3))  # (2, 4)
    weights = pooled @ sca.conv.weight.view(4, 4).T + sca.conv.bias
    torch.testing.assert_close(sca(x), x * weights.view(2, 4, 1, 1))


# --------------------------------------------------------------------------------------------
# the extractor
# --------------------------------------------------------------------------------------------
def test_extractor_keeps_the_resolution_and_trains():
    torch.manual_seed(3)
    f = NAFNetExtractor(12, 12, width=16, num_blocks=2)
    x = torch.randn(2, 12, 16, 8)
    y = f(x)
    assert y.shape == (2, 12, 16, 8)
    y.square().mean().backward()
    # at init only beta/gamma and the outer convs see a gradient (the branches are scaled by 0)
    assert all(
        p.grad is not None and p.grad.abs().sum() > 0
        for n, p in f.named_parameters()
        if n.endswith(("beta", "gamma")) or "conv_" in n
    )
    with torch.no_grad():
        for block in f.blocks:
            block.beta.fill_(1.0)
            block.gamma.fill_(1.0)
    f.zero_grad()
    f(x).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in f.parameters())


# the UNet F_l of each preset (study.models.litevae, 2 residual blocks per multiplier, the
# pseudocode's plain conv head: the GroupNorm head adds 2C) and our NAFNet for it; M and L share
# one extractor configuration
UNET_EXTRACTOR_PARAMS = {"S": 258_204, "B": 1_686_220, "M": 10_352_716, "L": 10_352_716}
NAFNET_EXTRACTOR_PARAMS = {"S": 258_396, "B": 1_692_556, "M": 10_252_492, "L": 10_252_492}


@pytest.mark.parametrize("preset", ["S", "B", "M", "L"])
def test_extractor_parameter_counts_are_pinned_and_close_to_the_unet(preset):
    p = litevae_widths(preset)
    with torch.device("meta"):
        unet = count(FeatureUNet(12, 12, p.extractor_channels, p.extractor_mult))
        naf = count(nafnet_extractor(p.extractor_channels, p.extractor_mult))
    assert unet == UNET_EXTRACTOR_PARAMS[preset]
    assert naf == NAFNET_EXTRACTOR_PARAMS[preset]
    shape = NAFNET_FOR_UNET[(p.extractor_channels, p.extractor_mult)]
    w = shape.width
    assert naf == shape.num_blocks * (7 * w * w + 33 * w) + 217 * w + 12
    assert abs(naf / unet - 1) < 0.01


def test_unknown_unet_shape_is_a_named_error():
    with pytest.raises(UnknownNAFNetShape, match=r"24 channels and multipliers \(1, 2\); known: 16, \(1, 2, 2\)"):
        nafnet_extractor(24, (1, 2))
