"""The ViT feature aggregator of Table 20, an alternative to the aggregation UNet F_agg: a conv
token embedding, a conditional positional encoding and 4 pre-norm transformer blocks, sized to
the paper's 0.84 M. Our configuration: docs/models.md, "The ViT aggregator".
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class TransformerBlock(nn.Module):
    """Pre-norm block: x + MHSA(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 4):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: Tensor) -> Tensor:  # x: (N, T, d)
        n, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(q, k, v)  # (N, heads, T, d/heads)
        x = x + self.proj(attn.transpose(1, 2).reshape(n, t, d))
        return x + self.mlp(self.norm2(x))


class ViTAggregator(nn.Module):
    """(N, in_channels, h, w) -> (N, out_channels, h, w), one token per position."""

    def __init__(
        self, in_channels: int, out_channels: int, dim: int = 128, depth: int = 4, heads: int = 4, mlp_ratio: int = 4
    ):
        super().__init__()
        self.embed = nn.Conv2d(in_channels, dim, 3, padding=1)
        self.position = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.blocks = nn.ModuleList([TransformerBlock(dim, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        x = self.embed(x)
        x = x + self.position(x)
        tokens = x.flatten(2).transpose(1, 2)  # (N, h*w, d)
        for block in self.blocks:
            tokens = block(tokens)
        out = self.head(self.norm(tokens))  # (N, h*w, out)
        return out.transpose(1, 2).reshape(n, -1, h, w)
