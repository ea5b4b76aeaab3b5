"""Convolutional blocks of the AsymUNetMCT: a multi-scale position embedding, frame convolutions,
channel norm, and attention over every (f, t) position of a volume.

Layout ``[B, C, F, T]`` throughout (see :mod:`ftlib.layers`).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ftlib.layers.attention import fused_attention, heads_for
from ftlib.layers.conv import FrameEncoder
from ftlib.layers.multichannel import ChannelMix, MultichannelLinear
from ftlib.layers.transformer import FeedForward, sinusoid


def sinusoidal_position(num_bins: int, num_frames: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``[F, T]`` position table: the :func:`sinusoid` features of every frame along F, sines and
    cosines of one frequency interleaved (bin 2k: sine, bin 2k + 1: cosine of frequency k)."""
    table = sinusoid(torch.arange(num_frames, device=device), num_bins)  # [T, F]: sines, then cosines
    return table.view(num_frames, 2, num_bins // 2).transpose(1, 2).reshape(num_frames, num_bins).T.to(dtype)


class ChannelNorm(nn.Module):
    """LayerNorm over the channel axis of ``[B, C, F, T]`` at every (f, t)."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.movedim(1, -1)).movedim(-1, 1)


class FrameConv(nn.Module):
    """Symmetric ``k x k`` convolution over (frequency, frames), then a per-channel linear over F.

    ``depthwise=True`` makes it separable (one filter per channel; the linear mixes the bins).
    ``[B, C, F, T] -> [B, C, F, T]``.
    """

    def __init__(self, channels: int, features: int, kernel: int = 3, depthwise: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=channels if depthwise else 1)
        self.linear = MultichannelLinear(channels, channels, features, features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.conv(x))


class ConvolutionalEmbedding(nn.Module):
    """Learned position channel ``[B, C, F, T] -> [B, 1, F, T]``.

    A sinusoid channel is appended to the input; a residual encoder with symmetric stride (2, 2)
    runs over ``scales`` scales, a ``kernel x kernel`` extractor reads one channel at each scale,
    and the channels, upsampled (bilinear) back to ``[F, T]``, are merged into one.
    """

    def __init__(self, in_channels: int, num_bins: int, channels: int = 8, scales: int = 4, kernel: int = 11,
                 activation: str = "relu2"):
        super().__init__()
        bins = [math.ceil(num_bins / 2 ** i) for i in range(scales)]
        self.encoders = nn.ModuleList(
            FrameEncoder(in_channels + 1 if i == 0 else channels, channels, bins[max(i - 1, 0)],
                         stride=(2, 2) if i else (1, 1), activation=activation) for i in range(scales))
        self.extractors = nn.ModuleList(nn.Conv2d(channels, 1, kernel, padding=kernel // 2) for _ in range(scales))
        self.merge = ChannelMix(scales, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, f, t = x.shape
        h = torch.cat([x, sinusoidal_position(f, t, x.device, x.dtype).expand(b, 1, f, t)], dim=1)
        maps = []
        for encoder, extract in zip(self.encoders, self.extractors):
            h = encoder(h)
            maps.append(F.interpolate(extract(h), size=(f, t), mode="bilinear", align_corners=True))
        return self.merge(torch.cat(maps, dim=1))


class ConvolutionalMultiheadAttention(nn.Module):
    """Attention over all ``F * T`` positions of a volume; heads split the channels.

    Args:
        channels: C (the embedding of a position).
        num_heads: heads wanted (fewer when C is narrow, see :func:`heads_for`).
        kernel: size of the ``k x k`` q/k/v/o convolutions.
        scale: ``"head"`` (1/sqrt(head_dim)) or ``"features"`` (1/sqrt(C), the seed's).
        dropout: dropout on the attention weights (training only; on CPU, above 0, PyTorch runs
            its unfused math path).

    The fused ``scaled_dot_product_attention`` runs unless ``force_explicit`` is set (tests).
    Cost grows with ``(F * T)^2``: use it at the bottleneck only.
    """

    def __init__(self, channels: int, num_heads: int = 8, kernel: int = 3, scale: str = "head", dropout: float = 0.0):
        super().__init__()
        self.num_heads = heads_for(channels, num_heads, min_head_dim=8)
        self.scale = 1 / math.sqrt(channels // self.num_heads if scale == "head" else channels)
        self.dropout = dropout
        conv = lambda: nn.Conv2d(channels, channels, kernel, padding=kernel // 2)
        self.q, self.k, self.v, self.o = conv(), conv(), conv(), conv()
        self.force_explicit = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, C, F, T] -> [B, C, F, T]``."""
        q, k, v = (rearrange(p(x), "b (h d) f t -> b h (f t) d", h=self.num_heads) for p in (self.q, self.k, self.v))
        dropout = self.dropout if self.training else 0.0
        if self.force_explicit:
            weights = (torch.matmul(q, k.transpose(-1, -2)) * self.scale).softmax(dim=-1)
            out = torch.matmul(F.dropout(weights, dropout, self.training), v)
        else:
            out = fused_attention(q, k, v, self.scale, dropout)
        return self.o(rearrange(out, "b h (f t) d -> b (h d) f t", f=x.shape[2]))


class ConvolutionalTransformerEncoder(nn.Module):
    """Pre-norm transformer layer on a volume: ``x + attn(norm(x))``, then ``+ ffn(norm(.))``.

    The feed-forward is convolutional (3x3, ``expansion`` times the channels). Unlike the seed, the
    feed-forward residual continues from the attention sub-layer's sum, not from the block input.
    ``[B, C, F, T] -> [B, C, F, T]``.
    """

    def __init__(self, channels: int, num_heads: int = 8, expansion: float = 4.0, activation: str = "relu2",
                 dropout: float = 0.0, scale: str = "head", kernel: int = 3, attention_dropout: float = 0.0):
        super().__init__()
        self.norm_attn = ChannelNorm(channels)
        self.attn = ConvolutionalMultiheadAttention(channels, num_heads, kernel, scale, attention_dropout)
        self.norm_ffn = ChannelNorm(channels)
        self.ffn = FeedForward(channels, 1, expansion, activation, dropout, kind="conv")
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm_attn(x)))
        return x + self.drop(self.ffn(self.norm_ffn(x)))
