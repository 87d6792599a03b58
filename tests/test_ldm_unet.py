"""The LDM UNet (study/models/ldm_unet.py): output shapes for both presets and both latent widths
over the latent sizes the harness uses (4x4 to 32x32), the KL-f8 preset's parameter count equal to
LDM's own UNetModel's for the same config, the zero-initialised output, and that the network reads
both x_t and t once its zeros are lifted."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from study.models.ldm_unet import UNET_PRESETS, UNetArgs, UNetShapeError, build_unet, timestep_embedding

pytestmark = pytest.mark.usefixtures("one_thread")

# Counted with LDM's own code, not this module: CompVis/latent-diffusion's
# ldm/modules/diffusionmodules/openaimodel.py UNetModel (commit a506df5) built on the meta device with
# configs/latent-diffusion/lsun_churches-ldm-kl-8.yaml's unet_config, in/out channels 4 and 12 (LDM's
# paper lists its LSUN-Churches LDM-8 as 294M).
LDM_KL8_PARAMETERS = {4: 294_966_916, 12: 294_994_572}


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def preset(name: str, latent_channels: int) -> UNetArgs:
    return dataclasses.replace(UNET_PRESETS[name], in_channels=latent_channels, out_channels=latent_channels)


@pytest.fixture(scope="module", params=[4, 12])
def ldm_kl8(request) -> tuple[int, nn.Module]:
    torch.manual_seed(0)
    return request.param, build_unet(preset("ldm-kl8", request.param)).eval()


def test_defaults_are_the_ldm_kl8_config():
    a = UNetArgs()
    assert UNET_PRESETS["ldm-kl8"] == a
    assert (a.model_channels, a.channel_mult, a.num_res_blocks) == (192, (1, 2, 2, 4, 4), 2)
    assert (a.attention_resolutions, a.num_heads, a.use_scale_shift_norm, a.resblock_updown) == (
        (1, 2, 4, 8),
        8,
        True,
        True,
    )


@pytest.mark.parametrize("channels", [4, 12])
def test_ldm_kl8_parameter_count_pinned(channels):
    with torch.device("meta"):
        model = build_unet(preset("ldm-kl8", channels))
    assert count(model) == LDM_KL8_PARAMETERS[channels]
    # only the input and output convolutions depend on the latent's width: 3x3 convs, 192 channels
    assert LDM_KL8_PARAMETERS[12] - LDM_KL8_PARAMETERS[4] == 8 * (9 * 192) * 2 + 8


@pytest.mark.parametrize("size", [4, 8, 32])
def test_ldm_kl8_shapes_and_zero_output(ldm_kl8, size):
    channels, model = ldm_kl8
    if size == 32 and channels == 12:
        pytest.skip("32x32 runs at 4 channels; the 12-channel net differs only in its first and last conv")
    x = torch.randn(2, channels, size, size)
    with torch.no_grad():
        eps = model(x, torch.tensor([0, 999]))
    assert eps.shape == x.shape
    assert torch.equal(eps, torch.zeros_like(eps))  # zero-initialised output convolution


@pytest.mark.parametrize("channels", [4, 12])
@pytest.mark.parametrize("size", [4, 8, 16])
def test_tiny_shapes_and_zero_output(channels, size):
    model = build_unet(preset("tiny", channels))
    x = torch.randn(3, channels, size, size)
    eps = model(x, torch.tensor([1, 500, 999]))
    assert eps.shape == x.shape
    assert torch.equal(eps, torch.zeros_like(eps))


def test_tiny_is_small_and_has_attention_at_its_lowest_level():
    model = build_unet(UNET_PRESETS["tiny"])
    assert count(model) == 828_068
    names = [n for n, m in model.named_modules() if type(m).__name__ == "AttentionBlock"]
    # ds 2 only: the level-1 input block, the middle, and the level-1 output blocks
    assert names == ["input_blocks.3.1", "middle_block.1", "output_blocks.0.1", "output_blocks.1.1"]


def lift_zeros(model: nn.Module) -> nn.Module:
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.normal_(0.0, 0.05)
    return model


@pytest.mark.parametrize("updown", [True, False])
def test_output_depends_on_x_and_t(updown):
    args = dataclasses.replace(UNET_PRESETS["tiny"], resblock_updown=updown, use_scale_shift_norm=updown)
    model = lift_zeros(build_unet(args)).eval()
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        base = model(x, torch.tensor([10, 10]))
        other_t = model(x, torch.tensor([900, 900]))
        other_x = model(x + 1.0, torch.tensor([10, 10]))
        scalar_t = model(x, torch.tensor(10))
    assert base.abs().mean() > 1e-3
    assert (base - other_t).abs().mean() > 1e-4
    assert (base - other_x).abs().mean() > 1e-4
    assert torch.equal(base, scalar_t)


def test_batch_elements_are_independent():
    model = lift_zeros(build_unet(UNET_PRESETS["tiny"])).eval()
    x, t = torch.randn(3, 4, 4, 4), torch.tensor([5, 300, 900])
    with torch.no_grad():
        together = model(x, t)
        alone = torch.cat([model(x[i : i + 1], t[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)


def test_timestep_embedding_is_cos_then_sin():
    t = torch.tensor([0, 7])
    emb = timestep_embedding(t, 8)
    freqs = 10000.0 ** (-torch.arange(4) / 4)
    expected = torch.cat([torch.cos(t[:, None] * freqs), torch.sin(t[:, None] * freqs)], dim=1)
    torch.testing.assert_close(emb, expected)
    assert timestep_embedding(t, 9).shape == (2, 9)


def test_heads_must_divide_the_width():
    with pytest.raises(UNetShapeError, match="attention heads"):
        build_unet(dataclasses.replace(UNET_PRESETS["tiny"], num_heads=5))


def test_bf16_runs_with_fp32_normalisation():
    fp32 = lift_zeros(build_unet(UNET_PRESETS["tiny"])).eval()
    bf16 = build_unet(UNET_PRESETS["tiny"])
    bf16.load_state_dict(fp32.state_dict())
    bf16 = bf16.to(torch.bfloat16).eval()
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([3, 600])
    with torch.no_grad():
        reference, cast = fp32(x, t), bf16(x.bfloat16(), t)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast = fp32(x, t)
    assert cast.dtype == torch.bfloat16 and autocast.dtype == torch.bfloat16
    scale = reference.abs().mean()
    assert (cast.float() - reference).abs().mean() < 0.05 * scale
    assert (autocast.float() - reference).abs().mean() < 0.05 * scale
