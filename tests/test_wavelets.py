"""The Haar DWT: equal to pytorch_wavelets (band order, signs, odd sizes), invertible,
differentiable (gradients equal pytorch_wavelets' and pass gradcheck), and the DWT module's
other-family path."""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from study.models.wavelets import DWT, UnknownWavelet, haar_dwt, haar_idwt

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from pytorch_wavelets import DWTForward, DWTInverse


def reference(x: torch.Tensor, levels: int, wave: str = "haar", mode: str = "zero"):
    return DWTForward(J=levels, wave=wave, mode=mode)(x)


@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (1, 3, 64, 48), (2, 1, 17, 23), (1, 2, 9, 8)])
@pytest.mark.parametrize("levels", [1, 2, 3])
def test_haar_matches_pytorch_wavelets(shape, levels):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(levels))
    yl, yh = haar_dwt(x, levels)
    ref_yl, ref_yh = reference(x, levels)
    assert yl.shape == ref_yl.shape
    torch.testing.assert_close(yl, ref_yl, atol=1e-6, rtol=0)
    assert len(yh) == levels
    for ours, theirs in zip(yh, ref_yh):
        assert ours.shape == theirs.shape
        torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)


def test_band_order_and_signs_on_a_single_cell():
    # a=1 (top-left), b=2 (top-right), c=3 (bottom-left), d=4 (bottom-right)
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    yl, (yh,) = haar_dwt(x, 1)
    assert yl.flatten().tolist() == [5.0]  # (a+b+c+d)/2
    assert yh.flatten().tolist() == [-2.0, -1.0, 0.0]  # (a+b-c-d)/2, (a-b+c-d)/2, (a-b-c+d)/2


@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (1, 3, 40, 24)])
def test_idwt_inverts_dwt(shape):
    x = torch.randn(*shape)
    yl, yh = haar_dwt(x, 3)
    torch.testing.assert_close(haar_idwt(yl, yh), x, atol=1e-6, rtol=0)


def test_idwt_matches_pytorch_wavelets_on_odd_sizes():
    x = torch.randn(1, 2, 21, 15)
    yl, yh = haar_dwt(x, 3)
    ours = haar_idwt(yl, yh)
    theirs = DWTInverse(wave="haar", mode="zero")((yl, yh))
    assert ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)
    torch.testing.assert_close(ours[..., :21, :15], x, atol=1e-6, rtol=0)


@settings(max_examples=25, deadline=None)
@given(h=st.integers(2, 40), w=st.integers(2, 40), levels=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_haar_matches_reference_for_any_size(h, w, levels, seed):
    x = torch.randn(1, 2, h, w, generator=torch.Generator().manual_seed(seed))
    yl, yh = haar_dwt(x, levels)
    ref_yl, ref_yh = reference(x, levels)
    torch.testing.assert_close(yl, ref_yl, atol=1e-6, rtol=0)
    for ours, theirs in zip(yh, ref_yh):
        torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)


def test_gradients_match_pytorch_wavelets():
    x = torch.randn(2, 3, 16, 12, requires_grad=True)
    weights = [torch.randn(2, 3, 2, 2)] + [torch.randn(2, 3, 3, 16 >> (i + 1), 12 >> (i + 1)) for i in range(3)]

    def loss(yl, yh):
        return (yl * weights[0]).sum() + sum((b * w).sum() for b, w in zip(yh, weights[1:]))

    (g_ours,) = torch.autograd.grad(loss(*haar_dwt(x, 3)), x)
    (g_ref,) = torch.autograd.grad(loss(*reference(x, 3)), x)
    torch.testing.assert_close(g_ours, g_ref, atol=1e-5, rtol=0)


def test_gradcheck_forward_inverse_and_second_order():
    x = torch.randn(1, 2, 6, 5, dtype=torch.float64, requires_grad=True)

    def flat_dwt(x):
        yl, yh = haar_dwt(x, 2)
        return (yl, *yh)

    assert torch.autograd.gradcheck(flat_dwt, (x,))
    assert torch.autograd.gradgradcheck(flat_dwt, (x,))
    yl, yh = haar_dwt(x.detach(), 2)
    inputs = (yl.requires_grad_(), *(b.requires_grad_() for b in yh))
    assert torch.autograd.gradcheck(lambda a, b, c: haar_idwt(a, [b, c]), inputs)


def test_module_uses_fast_haar_and_pytorch_wavelets_otherwise():
    x = torch.randn(1, 3, 32, 32)
    haar = DWT(3)
    assert haar.fast_haar
    yl, yh = haar(x)
    torch.testing.assert_close(yl, reference(x, 3)[0], atol=1e-6, rtol=0)
    db2 = DWT(2, wave="db2")
    assert not db2.fast_haar
    yl, yh = db2(x)
    ref_yl, ref_yh = reference(x, 2, wave="db2")
    torch.testing.assert_close(yl, ref_yl, atol=1e-5, rtol=0)
    for ours, theirs in zip(yh, ref_yh):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_pyramid_gives_every_level_and_periodization_halves_sizes():
    x = torch.randn(1, 3, 32, 32)
    pyramid = DWT(3, wave="sym4", mode="periodization").pyramid(x)
    assert [tuple(ll.shape) for ll, _ in pyramid] == [(1, 3, 16, 16), (1, 3, 8, 8), (1, 3, 4, 4)]
    assert [tuple(b.shape) for _, b in pyramid] == [(1, 3, 3, 16, 16), (1, 3, 3, 8, 8), (1, 3, 3, 4, 4)]
    haar = DWT(3).pyramid(x)
    torch.testing.assert_close(haar[1][0], haar_dwt(x, 2)[0])


def test_unknown_wavelet_is_a_named_error():
    with pytest.raises(UnknownWavelet):
        DWT(1, wave="nonsense")
