"""Frame transformer blocks: pre-norm encoder/decoder layers over the frames of a few channels.

A block *extracts* ``out_channels`` attention maps from its input volume with a channel-mixing
embedding, runs attention (and, for decoders, cross-attention to a skip connection) and a
feed-forward network per channel, and returns the maps; U-Nets concatenate them to their input.
"""
from __future__ import annotations

import torch
from torch import nn

from ftlib.layers.attention import MultichannelMultiheadAttention, heads_for
from ftlib.layers.multichannel import ChannelMix, MultichannelLayerNorm, MultichannelLinear


class SquaredReLU(nn.Module):
    """relu(x)^2, the Primer feed-forward activation (So et al. 2021)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x).square()


ACTIVATIONS = {"gelu": nn.GELU, "relu2": SquaredReLU, "relu": nn.ReLU}


class FeedForward(nn.Module):
    """Per-channel MLP over the frequency axis: ``[B, C, F, T] -> [B, C, F, T]``."""

    def __init__(self, channels: int, features: int, expansion: float = 2.0, activation: str = "gelu",
                 dropout: float = 0.0):
        super().__init__()
        hidden = max(1, int(features * expansion))
        self.net = nn.Sequential(
            MultichannelLinear(channels, channels, features, hidden),
            ACTIVATIONS[activation](),
            nn.Dropout(dropout),
            MultichannelLinear(channels, channels, hidden, features),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _FrameTransformerBase(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, features: int, num_heads: int, expansion: float,
                 activation: str, dropout: float, rotary: bool, attention_scale: str):
        super().__init__()
        heads = heads_for(features, num_heads)
        self.embed = ChannelMix(in_channels, out_channels)
        self.norm_attn = MultichannelLayerNorm(out_channels, features)
        self.attn = MultichannelMultiheadAttention(out_channels, features, heads, rotary, attention_scale, dropout)
        self.norm_ffn = MultichannelLayerNorm(out_channels, features)
        self.ffn = FeedForward(out_channels, features, expansion, activation, dropout)
        self.drop = nn.Dropout(dropout)


class FrameTransformerEncoder(_FrameTransformerBase):
    """Extract ``out_channels`` maps from ``x [B, C_in, F, T]`` and self-attend across frames.

    Returns ``([B, out_channels, F, T], scores)``; ``scores`` are the pre-softmax attention scores
    (for residual attention) when ``return_scores`` or ``prev_scores`` is given, else None.
    """

    def __init__(self, in_channels: int, out_channels: int, features: int, num_heads: int = 4,
                 expansion: float = 2.0, activation: str = "gelu", dropout: float = 0.0, rotary: bool = True,
                 attention_scale: str = "head"):
        super().__init__(in_channels, out_channels, features, num_heads, expansion, activation, dropout, rotary,
                         attention_scale)

    def forward(self, x: torch.Tensor, prev_scores: torch.Tensor | None = None, return_scores: bool = False):
        h = self.embed(x)
        a, scores = self.attn(self.norm_attn(h), prev_scores=prev_scores, return_scores=return_scores)
        h = h + self.drop(a)
        h = h + self.drop(self.ffn(self.norm_ffn(h)))
        return h, scores


class FrameTransformerDecoder(_FrameTransformerBase):
    """Like the encoder, plus cross-attention from ``x`` to ``memory [B, C_mem, F, Tm]`` (the skip).

    Returns ``([B, out_channels, F, T], scores)`` where ``scores`` are the self-attention scores.
    """

    def __init__(self, in_channels: int, out_channels: int, features: int, memory_channels: int,
                 num_heads: int = 4, expansion: float = 2.0, activation: str = "gelu", dropout: float = 0.0,
                 rotary: bool = True, attention_scale: str = "head"):
        super().__init__(in_channels, out_channels, features, num_heads, expansion, activation, dropout, rotary,
                         attention_scale)
        heads = heads_for(features, num_heads)
        self.embed_memory = ChannelMix(memory_channels, out_channels)
        self.norm_cross = MultichannelLayerNorm(out_channels, features)
        self.norm_memory = MultichannelLayerNorm(out_channels, features)
        self.cross = MultichannelMultiheadAttention(out_channels, features, heads, rotary, attention_scale, dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, prev_scores: torch.Tensor | None = None,
                return_scores: bool = False):
        h = self.embed(x)
        a, scores = self.attn(self.norm_attn(h), prev_scores=prev_scores, return_scores=return_scores)
        h = h + self.drop(a)
        m = self.norm_memory(self.embed_memory(memory))
        c, _ = self.cross(self.norm_cross(h), memory=m)
        h = h + self.drop(c)
        h = h + self.drop(self.ffn(self.norm_ffn(h)))
        return h, scores
