"""The 2D discrete wavelet transform that feeds the LiteVAE encoder (Sec. 3, Fig. 2): a fast
multi-level Haar path equal to ``pytorch_wavelets.DWTForward(wave='haar', mode='zero')``,
differentiable to any order; other families go through pytorch_wavelets. The butterfly and its
band order: docs/models.md, "The Haar transform".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class UnknownWavelet(ValueError):
    """A wavelet family or padding mode that neither the Haar path nor PyWavelets knows."""


# --------------------------------------------------------------------------------------------
# one Haar step: analysis (image -> LL, details) and synthesis (LL, details -> image)
# --------------------------------------------------------------------------------------------
def _haar_analysis(x: Tensor) -> tuple[Tensor, Tensor]:
    """One Haar step of an even-sized (N, C, H, W) map: (LL (N,C,H/2,W/2), B (N,C,3,H/2,W/2))."""
    n, c, h, w = x.shape
    r0, r1 = x[..., 0::2, :], x[..., 1::2, :]  # even rows (a, b), odd rows (c, d)
    s = torch.lerp(r0, r1, 0.5)  # (r0 + r1) / 2: (a+c)/2, (b+d)/2
    t = r0 - s  # (r0 - r1) / 2: (a-c)/2, (b-d)/2
    s0, s1, t0, t1 = s[..., 0::2], s[..., 1::2], t[..., 0::2], t[..., 1::2]
    ll = s0 + s1
    bands = x.new_empty(n, c, 3, h // 2, w // 2)
    torch.add(t0, t1, out=bands[:, :, 0])
    torch.sub(s0, s1, out=bands[:, :, 1])
    torch.sub(t0, t1, out=bands[:, :, 2])
    return ll, bands


def _haar_synthesis(ll: Tensor, bands: Tensor) -> Tensor:
    """The inverse of ``_haar_analysis``: (N, C, h, w) and (N, C, 3, h, w) -> (N, C, 2h, 2w)."""
    n, c, h, w = ll.shape
    b0, b1, b2 = bands.unbind(2)
    p = torch.lerp(ll, b0, 0.5)  # (LL + B0) / 2
    q = ll - p  # (LL - B0) / 2
    u = torch.lerp(b1, b2, 0.5)  # (B1 + B2) / 2
    v = b1 - u  # (B1 - B2) / 2
    out = ll.new_empty(n, c, 2 * h, 2 * w)
    cells = out.view(n, c, h, 2, w, 2)
    torch.add(p, u, out=cells[:, :, :, 0, :, 0])  # a
    torch.sub(p, u, out=cells[:, :, :, 0, :, 1])  # b
    torch.add(q, v, out=cells[:, :, :, 1, :, 0])  # c
    torch.sub(q, v, out=cells[:, :, :, 1, :, 1])  # d
    return out


class _HaarAnalysis(torch.autograd.Function):
    """One Haar step; its backward is the synthesis step (the transform is orthonormal)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        return _haar_analysis(x)

    @staticmethod
    def backward(ctx, grad_ll: Tensor, grad_bands: Tensor) -> Tensor:  # type: ignore[override]
        return _HaarSynthesis.apply(grad_ll, grad_bands)


class _HaarSynthesis(torch.autograd.Function):
    """One inverse Haar step; its backward is the analysis step."""

    @staticmethod
    def forward(ctx, ll: Tensor, bands: Tensor) -> Tensor:  # type: ignore[override]
        return _haar_synthesis(ll, bands)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        return _HaarAnalysis.apply(grad)


def haar_step(x: Tensor) -> tuple[Tensor, Tensor]:
    """One differentiable Haar step; an odd side is zero-padded at its end (mode 'zero')."""
    pad_h, pad_w = x.shape[-2] % 2, x.shape[-1] % 2
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h))
    return _HaarAnalysis.apply(x)


# --------------------------------------------------------------------------------------------
# multi-level Haar transform in pytorch_wavelets' format
# --------------------------------------------------------------------------------------------
def haar_dwt(x: Tensor, levels: int) -> tuple[Tensor, list[Tensor]]:
    """``levels`` Haar steps: (yl, yh) as ``DWTForward(J=levels, wave='haar', mode='zero')``.

    yl is the last level's approximation (N, C, H/2^L, W/2^L); yh[l] holds level l+1's three
    detail bands, (N, C, 3, H/2^(l+1), W/2^(l+1)).
    """
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    yh = []
    for _ in range(levels):
        x, bands = haar_step(x)
        yh.append(bands)
    return x, yh


def haar_idwt(yl: Tensor, yh: list[Tensor]) -> Tensor:
    """The inverse of ``haar_dwt`` (as ``DWTInverse(wave='haar', mode='zero')``).

    Where a level's input was odd, the next-finer approximation comes out one row or column
    longer than that level's detail bands; it is cropped, as pytorch_wavelets does.
    """
    ll = yl
    for bands in reversed(yh):
        ll = ll[..., : bands.shape[-2], : bands.shape[-1]]
        ll = _HaarSynthesis.apply(ll, bands)
    return ll


# --------------------------------------------------------------------------------------------
# the module: Haar fast path, any other family through pytorch_wavelets
# --------------------------------------------------------------------------------------------
class DWT(nn.Module):
    """A fixed ``levels``-level 2D DWT. ``forward`` returns (yl, yh) like pytorch_wavelets;
    ``pyramid`` returns every level's (approximation, detail bands), which the encoder needs.

    ``wave == "haar"`` with mode "zero" (or "periodization", identical on even sizes) uses the
    tensor-op path above; any other PyWavelets family uses pytorch_wavelets with ``mode``.
    The encoder asks for "periodization" for non-Haar families so that each level exactly
    halves the size (mode "zero" grows it by the filter length).
    """

    def __init__(self, levels: int, wave: str = "haar", mode: str = "zero"):
        super().__init__()
        if levels < 1:
            raise ValueError(f"levels must be >= 1, got {levels}")
        self.levels, self.wave, self.mode = levels, wave, mode
        self.fast_haar = wave == "haar" and mode in ("zero", "periodization")
        self.step = None if self.fast_haar else _pytorch_wavelets_step(wave, mode)

    def pyramid(self, x: Tensor) -> list[tuple[Tensor, Tensor]]:
        """[(LL_l, bands_l) for l = 1..levels]: LL_l is (N,C,h_l,w_l), bands_l (N,C,3,h_l,w_l)."""
        out = []
        for _ in range(self.levels):
            if self.step is None:  # the Haar fast path
                if self.mode == "periodization" and (x.shape[-2] % 2 or x.shape[-1] % 2):
                    raise UnknownWavelet("the Haar fast path supports periodization on even sizes only")
                x, bands = haar_step(x)
            else:
                x, (bands,) = self.step(x)
            out.append((x, bands))
        return out

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        pyramid = self.pyramid(x)
        return pyramid[-1][0], [bands for _, bands in pyramid]

    def extra_repr(self) -> str:
        return f"levels={self.levels}, wave={self.wave!r}, mode={self.mode!r}"


def _pytorch_wavelets_step(wave: str, mode: str) -> nn.Module:
    """A one-level pytorch_wavelets transform (imported lazily: it drags in pkg_resources)."""
    import warnings

    import pywt

    if wave not in pywt.wavelist(kind="discrete"):
        raise UnknownWavelet(f"unknown discrete wavelet {wave!r} (see pywt.wavelist(kind='discrete'))")
    if mode not in ("zero", "symmetric", "periodization", "reflect", "periodic"):
        raise UnknownWavelet(f"unknown padding mode {mode!r}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        from pytorch_wavelets import DWTForward
    return DWTForward(J=1, wave=wave, mode=mode)
