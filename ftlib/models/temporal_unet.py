"""Temporal U-Net frame transformer (the seed's v10).

Unlike the asymmetric U-Net, every level keeps all F bins and halves the frames instead (stride
(1, 2)), the idea of hierarchical transformers (Nawrot et al. 2021): deeper levels attend over
shorter sequences. Each level extracts attention maps with a self-attention block whose
feed-forward is convolutional; decoders self-attend and attend to their skip connection. A
per-frame norm, a bias-free 1x1 projection and a sigmoid give the mask.

Input ``[B, C, F, T]`` magnitude (any T) -> ``[B, C, F, T]`` mask in [0, 1].
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ftlib.config import Config
from ftlib.layers import (ChannelMix, FrameDecoder, FrameEncoder, FrameTransformerBlock, MultichannelLayerNorm,
                          residual_links)
from ftlib.models.registry import register
from ftlib.models.frame_transformer import per_level


@dataclasses.dataclass
class TemporalUNetConfig(Config):
    """Args:
        in_channels: audio channels C of the input magnitude.
        num_bins: frequency bins F (kept at every level).
        channels: feature maps of the first level.
        channel_multipliers: one entry per level; level i has ``channels * m[i]`` maps at T / 2^i frames.
        attention_maps: maps each level's blocks extract (one value, or one per level).
        num_heads: attention heads (fewer when F is narrow).
        expansion: convolutional feed-forward width as a multiple of the maps.
        activation: "gelu", "relu2" or "relu".
        dropout: dropout in the transformer blocks.
        attention_dropout: dropout on the attention weights (the seed had none). Above 0, training on
            CPU leaves the fused kernel for PyTorch's math path (CUDA kernels support dropout).
        rotary: rotary position embedding.
        attention_scale: "head" or "features".
        residual_attention: RealFormer scores passed between consecutive blocks of equal shape. Every
            level here has its own frame count, so no two consecutive blocks match and every block
            keeps the fused kernel: the option changes nothing in this family.
    """

    in_channels: int = 2
    num_bins: int = 1024
    channels: int = 8
    channel_multipliers: tuple[int, ...] = (1, 2, 4, 6, 8)
    attention_maps: tuple[int, ...] = (2,)
    num_heads: int = 8
    expansion: float = 4.0
    activation: str = "relu2"
    dropout: float = 0.1
    attention_dropout: float = 0.0
    rotary: bool = True
    attention_scale: str = "head"
    residual_attention: bool = False

    PRESETS = {
        "tiny": dict(num_bins=64, channels=4, channel_multipliers=(1, 2, 3), attention_maps=(1,), num_heads=2,
                     dropout=0.0),
        "medium": dict(channels=8, channel_multipliers=(1, 2, 4, 6), attention_maps=(1,)),
    }

    def validate(self) -> None:
        levels = len(self.channel_multipliers)
        self.require(levels >= 1, "channel_multipliers needs at least one level")
        self.require(len(self.attention_maps) in (1, levels), f"attention_maps needs 1 or {levels} values")
        self.require(min(self.in_channels, self.channels, self.num_heads, *self.attention_maps) >= 1,
                     "in_channels, channels, attention_maps and num_heads must be >= 1")
        self.require(self.activation in ("gelu", "relu2", "relu"), f"unknown activation {self.activation!r}")
        self.require(self.attention_scale in ("head", "features"), "attention_scale must be 'head' or 'features'")
        self.require(0 <= self.dropout < 1 and 0 <= self.attention_dropout < 1 and self.expansion > 0,
                     "dropouts in [0, 1) and expansion > 0")


@register("temporal_unet", TemporalUNetConfig)
class TemporalUNet(nn.Module):
    """Temporal U-Net frame transformer (see module docstring). ``config``: TemporalUNetConfig."""

    task = "separation"

    def __init__(self, config: TemporalUNetConfig):
        super().__init__()
        self.config = cfg = config
        levels, f = len(cfg.channel_multipliers), cfg.num_bins
        widths = [cfg.channels * m for m in cfg.channel_multipliers]
        maps = per_level(cfg.attention_maps, levels)
        common = dict(num_heads=cfg.num_heads, expansion=cfg.expansion, activation=cfg.activation, ffn="conv",
                      dropout=cfg.dropout, attention_dropout=cfg.attention_dropout, rotary=cfg.rotary,
                      attention_scale=cfg.attention_scale)
        self.encoders, self.encoder_tfs = nn.ModuleList(), nn.ModuleList()
        in_ch = cfg.in_channels
        for i, width in enumerate(widths):
            self.encoders.append(FrameEncoder(in_ch, width, f, stride=(1, 2) if i else (1, 1), activation=cfg.activation))
            self.encoder_tfs.append(FrameTransformerBlock(width, maps[i], f, **common))
            in_ch = width + maps[i]
        skip_channels = [w + m for w, m in zip(widths, maps)]
        self.decoders, self.decoder_tfs = nn.ModuleList(), nn.ModuleList()
        for i in reversed(range(levels - 1)):
            self.decoders.append(FrameDecoder(in_ch, skip_channels[i], widths[i], f, cfg.activation))
            self.decoder_tfs.append(FrameTransformerBlock(widths[i], maps[i], f, (skip_channels[i],), **common))
            in_ch = widths[i] + maps[i]
        self.out_norm = MultichannelLayerNorm(in_ch, f)
        self.out = ChannelMix(in_ch, cfg.in_channels)
        # scores pass between blocks of equal shape, frame count (level) included
        order = [*range(levels), *reversed(range(levels - 1))]
        self._receives, self._returns = residual_links(
            cfg.residual_attention, [(tf.attn.channels, tf.attn.num_heads, level)
                                     for tf, level in zip([*self.encoder_tfs, *self.decoder_tfs], order)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, C, F, T]`` magnitude -> ``[B, C, F, T]`` mask in [0, 1]."""
        scores, skips, index = None, [], 0

        def run(block, x, memories=()):
            nonlocal scores, index
            prev = scores if self._receives[index] else None
            h, scores = block(x, memories, prev_scores=prev, return_scores=self._returns[index])
            index += 1
            return torch.cat([x, h], dim=1)

        for encoder, tf in zip(self.encoders, self.encoder_tfs):
            x = run(tf, encoder(x))
            skips.append(x)
        for decoder, tf, skip in zip(self.decoders, self.decoder_tfs, reversed(skips[:-1])):
            x = run(tf, decoder(x, skip), (skip,))
        return torch.sigmoid(self.out(self.out_norm(x)))
