"""The three discriminators of Table 10: selection, output shapes at 32x32 and 64x64, backward,
documented sizes, minibatch standard deviation."""

from __future__ import annotations

import pytest
import torch

from study.models.discriminators import (
    PatchGAN,
    StyleGANDiscriminator,
    UNetDiscriminator,
    UnknownDiscriminator,
    build_discriminator,
    minibatch_stddev,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_build_selects_each_kind():
    assert build_discriminator("none") is None
    assert isinstance(build_discriminator("patchgan"), PatchGAN)
    assert isinstance(build_discriminator("stylegan"), StyleGANDiscriminator)
    assert isinstance(build_discriminator("unet"), UNetDiscriminator)
    with pytest.raises(UnknownDiscriminator):
        build_discriminator("patch-gan")


def expected_shapes(kind: str, n: int, size: int) -> list[tuple[int, ...]]:
    if kind == "patchgan":  # three stride-2 4x4 convs, then two stride-1 4x4 convs
        return [(n, 1, size // 8 - 2, size // 8 - 2)]
    if kind == "stylegan":
        return [(n, 1)]
    return [(n, 1), (n, 1, size, size)]


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("kind", ["patchgan", "stylegan", "unet"])
def test_logit_shapes_and_backward(kind, size):
    torch.manual_seed(0)
    disc = build_discriminator(kind)
    x = (torch.rand(4, 3, size, size) * 2 - 1).requires_grad_()
    logits = disc(x)
    assert isinstance(logits, list)
    assert [tuple(t.shape) for t in logits] == expected_shapes(kind, 4, size)
    sum(t.mean() for t in logits).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in disc.parameters() if p.requires_grad)


@pytest.mark.parametrize("kind,params", [("patchgan", 2_765_633), ("stylegan", 5_973_313), ("unet", 7_883_522)])
def test_documented_sizes(kind, params):
    with torch.device("meta"):
        disc = build_discriminator(kind)
    assert sum(p.numel() for p in disc.parameters()) == params


def test_minibatch_stddev_appends_the_group_spread():
    x = torch.zeros(4, 2, 3, 3)
    x[1] = 2.0  # one group of 4: per-feature std is sqrt(0.75)
    y = minibatch_stddev(x, group_size=4)
    assert y.shape == (4, 3, 3, 3)
    torch.testing.assert_close(y[:, 2], torch.full((4, 3, 3), 0.75**0.5))
    # batch 6 with group 4: the largest divisor of 6 not above 4 is 3
    assert minibatch_stddev(torch.randn(6, 2, 3, 3)).shape == (6, 3, 3, 3)
    # identical samples have no spread
    same = minibatch_stddev(torch.ones(2, 1, 2, 2))
    assert same[:, 1].max() < 1e-3
