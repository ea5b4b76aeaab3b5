"""Frame transformer blocks: pre-norm layers over the frames of a few extracted channels.

A block *extracts* ``out_channels`` attention maps from its input volume with a channel-mixing
embedding, runs self-attention across frames, then cross-attention to each of its memories (a
U-Net skip connection, the input spectrogram, ...), then a feed-forward network, all per channel,
and returns the maps; U-Nets concatenate them to their input. With no memory it is an encoder
block, with the skip as memory the decoder block of the seed's v4 line.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ftlib.layers.attention import MultichannelMultiheadAttention, heads_for
from ftlib.layers.multichannel import ChannelMix, MultichannelLayerNorm, MultichannelLinear


class SquaredReLU(nn.Module):
    """relu(x)^2, the Primer feed-forward activation (So et al. 2021)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x).square()


class RMSNorm(nn.Module):
    """Root-mean-square norm over the last axis with a learned gain (Zhang & Sennrich 2019), no
    centring and no bias: ``x / rms(x) * weight``, written as the L2-normalised vector times sqrt(D)."""

    def __init__(self, features: int):
        super().__init__()
        self.scale = math.sqrt(features)
        self.weight = nn.Parameter(torch.ones(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1) * self.scale * self.weight


ACTIVATIONS = {"gelu": nn.GELU, "relu2": SquaredReLU, "relu": nn.ReLU}


def sinusoid(position: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features of real-valued positions (timesteps, frames, alignments): ``[...]`` ->
    ``[..., dim]``, the sines of ``dim / 2`` frequencies (periods 1 to ``max_period``), then their cosines."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=position.device) / half)
    angles = position.float()[..., None] * freqs
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class TimestepEmbedding(nn.Module):
    """Diffusion timesteps ``t [B]`` (integers or floats) -> ``[B, features]``: sinusoids of
    ``features`` frequencies (periods 1 to ``max_period``), then a two-layer SiLU MLP."""

    def __init__(self, features: int, max_period: float = 10000.0):
        super().__init__()
        if features < 2 or features % 2:
            raise ValueError(f"timestep embedding features must be even and >= 2, got {features}")
        self.features, self.max_period = features, max_period
        self.mlp = nn.Sequential(nn.Linear(features, features), nn.SiLU(), nn.Linear(features, features))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(sinusoid(t, self.features, self.max_period))


class FeedForward(nn.Module):
    """Per-channel MLP over the frequency axis (``kind="linear"``), or a 3x3 convolutional one over
    (frequency, frames) (``kind="conv"``): ``[B, C, F, T] -> [B, C, F, T]``."""

    def __init__(self, channels: int, features: int, expansion: float = 2.0, activation: str = "gelu",
                 dropout: float = 0.0, kind: str = "linear"):
        super().__init__()
        if kind == "linear":
            hidden = max(1, int(features * expansion))
            layers = [MultichannelLinear(channels, channels, features, hidden), ACTIVATIONS[activation](),
                      nn.Dropout(dropout), MultichannelLinear(channels, channels, hidden, features)]
        elif kind == "conv":
            hidden = max(1, int(channels * expansion))
            layers = [nn.Conv2d(channels, hidden, 3, padding=1), ACTIVATIONS[activation](), nn.Dropout(dropout),
                      nn.Conv2d(hidden, channels, 3, padding=1)]
        else:
            raise ValueError(f"feed-forward kind must be 'linear' or 'conv', got {kind!r}")
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class FrameTransformerBlock(nn.Module):
    """Extract ``out_channels`` maps from ``x [B, C_in, F, T]``; self-attend across frames, then
    cross-attend to each memory ``[B, C_mem_i, F, Tm]``, then feed forward.

    Args:
        in_channels: channels of the input volume.
        out_channels: attention maps the block extracts (and returns).
        features: F, bins of a frame.
        memory_channels: channels of each memory the block cross-attends to, in call order.
        num_heads: heads wanted (fewer at narrow levels, see :func:`heads_for`).
        expansion: feed-forward hidden size relative to F (linear) or to the channels (conv).
        activation: "gelu", "relu2" or "relu".
        ffn: "linear" (per-channel over F) or "conv" (3x3).
        dropout: dropout on the sub-layers' outputs and inside the feed-forward (training only).
        attention_dropout, rotary, attention_scale, qkv_conv, qkv_kernel: see
            :class:`MultichannelMultiheadAttention` (``attention_dropout`` is its ``dropout``).
        flatten: attend over the extracted maps flattened into one ``out_channels * F`` vector per
            frame (the FramePrimer bottleneck) instead of per map.
        time_channels: width of a conditioning vector ``time [B, time_channels]`` (a diffusion
            timestep embedding) projected to one ``[out_channels, F]`` offset added to every frame of
            the extracted maps; 0: none.

    ``forward(x, memories=(), prev_scores=None, return_scores=False, time=None)`` returns
    ``([B, out_channels, F, T], scores)``; ``scores`` are the self-attention pre-softmax scores
    ``[B, out_channels, H, T, T]`` (for residual attention) when requested, else None.
    """

    def __init__(self, in_channels: int, out_channels: int, features: int, memory_channels: Sequence[int] = (),
                 num_heads: int = 4, expansion: float = 2.0, activation: str = "gelu", ffn: str = "linear",
                 dropout: float = 0.0, attention_dropout: float = 0.0, rotary: bool = True,
                 attention_scale: str = "head", qkv_conv: str = "none", qkv_kernel: int = 3, flatten: bool = False,
                 time_channels: int = 0):
        super().__init__()
        self.flatten = flatten
        ch, width = (1, out_channels * features) if flatten else (out_channels, features)
        heads = heads_for(width, num_heads)
        attention = dict(rotary=rotary, scale=attention_scale, dropout=attention_dropout, qkv_conv=qkv_conv,
                         qkv_kernel=qkv_kernel)
        self.embed = ChannelMix(in_channels, out_channels)
        self.time = nn.Linear(time_channels, out_channels * features) if time_channels else None
        self.norm_attn = MultichannelLayerNorm(ch, width)
        self.attn = MultichannelMultiheadAttention(ch, width, heads, **attention)
        self.embed_memory = nn.ModuleList(ChannelMix(c, out_channels) for c in memory_channels)
        self.norm_memory = nn.ModuleList(MultichannelLayerNorm(ch, width) for _ in memory_channels)
        self.norm_cross = nn.ModuleList(MultichannelLayerNorm(ch, width) for _ in memory_channels)
        self.cross = nn.ModuleList(MultichannelMultiheadAttention(ch, width, heads, **attention) for _ in memory_channels)
        self.norm_ffn = MultichannelLayerNorm(ch, width)
        self.ffn = FeedForward(ch, width, expansion, activation, dropout, ffn)
        self.drop = nn.Dropout(dropout)

    def _squeeze(self, h: torch.Tensor) -> torch.Tensor:
        """``[B, M, F, T] -> [B, 1, M * F, T]`` when flattening."""
        return h.flatten(1, 2).unsqueeze(1) if self.flatten else h

    def forward(self, x: torch.Tensor, memories: Sequence[torch.Tensor] = (), prev_scores: torch.Tensor | None = None,
                return_scores: bool = False, time: torch.Tensor | None = None):
        if len(memories) != len(self.cross):
            raise ValueError(f"block expects {len(self.cross)} memories, got {len(memories)}")
        if (time is None) != (self.time is None):
            raise ValueError("pass `time` exactly when the block was built with time_channels > 0")
        h = self.embed(x)
        if self.time is not None:
            h = h + self.time(time).view(x.shape[0], -1, x.shape[2], 1)
        h = self._squeeze(h)
        a, scores = self.attn(self.norm_attn(h), prev_scores=prev_scores, return_scores=return_scores)
        h = h + self.drop(a)
        for memory, embed, norm_m, norm_c, cross in zip(memories, self.embed_memory, self.norm_memory,
                                                         self.norm_cross, self.cross):
            c, _ = cross(norm_c(h), memory=norm_m(self._squeeze(embed(memory))))
            h = h + self.drop(c)
        h = h + self.drop(self.ffn(self.norm_ffn(h)))
        return (h.view(x.shape[0], -1, x.shape[2], x.shape[3]) if self.flatten else h), scores
