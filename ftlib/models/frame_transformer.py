"""Frame transformer: an asymmetric U-Net with frame transformer blocks at every level.

The U-Net halves only the frequency axis (stride (2, 1)), so every level keeps all T frames.
After each encoder a :class:`FrameTransformerEncoder` extracts ``attention_maps`` channels that
attend across frames and are concatenated to the volume; before each decoder's output a
:class:`FrameTransformerDecoder` does the same while attending to the skip connection as memory.
A per-frame norm, a bias-free 1x1 projection and a sigmoid give the magnitude mask.

Input ``[B, C, F, T]`` magnitude -> output ``[B, C, F, T]`` mask in [0, 1].
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ftlib.config import Config
from ftlib.layers import (
    ChannelMix, FrameDecoder, FrameEncoder, FrameTransformerDecoder, FrameTransformerEncoder, MultichannelLayerNorm,
)
from ftlib.models import register


@dataclasses.dataclass
class FrameTransformerConfig(Config):
    """Args:
        in_channels: audio channels C of the input magnitude (2 for stereo).
        num_bins: frequency bins F of the input (n_fft // 2); divisible by 2^(levels - 1).
        channels: feature maps of the first U-Net level.
        channel_multipliers: one entry per level; level i has ``channels * m[i]`` maps at F / 2^i bins.
        attention_maps: channels each frame transformer block extracts and concatenates.
        num_heads: attention heads (fewer at narrow levels so heads keep >= 16 features).
        expansion: feed-forward hidden size as a multiple of the level's bins.
        activation: feed-forward activation: "gelu", "relu2" (squared ReLU, Primer) or "relu".
        dropout: dropout in the transformer blocks.
        rotary: rotary position embedding on queries and keys.
        attention_scale: "head" (1/sqrt(head_dim)) or "features" (1/sqrt(F)).
        residual_attention: pass pre-softmax scores from block to block (RealFormer); disables
            the fused attention kernel.
        transformer_from_level: levels below this one get no transformer blocks (the full-resolution
            levels are the most expensive ones).
    """

    in_channels: int = 2
    num_bins: int = 1024
    channels: int = 16
    channel_multipliers: tuple[int, ...] = (1, 2, 4, 6, 8, 10)
    attention_maps: int = 2
    num_heads: int = 8
    expansion: float = 2.0
    activation: str = "gelu"
    dropout: float = 0.0
    rotary: bool = True
    attention_scale: str = "head"
    residual_attention: bool = False
    transformer_from_level: int = 0

    PRESETS = {
        "tiny": dict(num_bins=64, channels=4, channel_multipliers=(1, 2, 3), attention_maps=1, num_heads=2),
        "small": dict(channels=8, channel_multipliers=(1, 2, 3, 4, 5, 6), attention_maps=1, num_heads=4,
                      expansion=1.0, transformer_from_level=2),
    }

    def validate(self) -> None:
        levels = len(self.channel_multipliers)
        self.require(levels >= 1, "channel_multipliers needs at least one level")
        self.require(min(self.in_channels, self.channels, self.attention_maps, self.num_heads) >= 1,
                     "in_channels, channels, attention_maps and num_heads must be >= 1")
        self.require(self.num_bins % 2 ** (levels - 1) == 0,
                     f"num_bins={self.num_bins} must be divisible by 2^(levels-1)={2 ** (levels - 1)}")
        self.require(self.activation in ("gelu", "relu2", "relu"), f"unknown activation {self.activation!r}")
        self.require(self.attention_scale in ("head", "features"), "attention_scale must be 'head' or 'features'")
        self.require(0 <= self.dropout < 1, "dropout must be in [0, 1)")


@register("frame_transformer", FrameTransformerConfig)
class FrameTransformer(nn.Module):
    """Asymmetric U-Net frame transformer (see module docstring). ``config``: FrameTransformerConfig."""

    def __init__(self, config: FrameTransformerConfig):
        super().__init__()
        self.config = cfg = config
        widths = [cfg.channels * m for m in cfg.channel_multipliers]
        bins = [cfg.num_bins // 2 ** i for i in range(len(widths))]
        block = dict(num_heads=cfg.num_heads, expansion=cfg.expansion, activation=cfg.activation,
                     dropout=cfg.dropout, rotary=cfg.rotary, attention_scale=cfg.attention_scale)
        has_tf = [i >= cfg.transformer_from_level for i in range(len(widths))]
        maps = [cfg.attention_maps if t else 0 for t in has_tf]

        self.encoders, self.encoder_tfs = nn.ModuleList(), nn.ModuleList()
        in_ch = cfg.in_channels
        for i, (width, f) in enumerate(zip(widths, bins)):
            self.encoders.append(FrameEncoder(in_ch, width, bins[i - 1] if i else f, stride=2 if i else 1))
            self.encoder_tfs.append(FrameTransformerEncoder(width, maps[i], f, **block) if has_tf[i] else None)
            in_ch = width + maps[i]
        skip_channels = [w + m for w, m in zip(widths, maps)]

        self.decoders, self.decoder_tfs = nn.ModuleList(), nn.ModuleList()
        for i in reversed(range(len(widths) - 1)):
            self.decoders.append(FrameDecoder(in_ch, skip_channels[i], widths[i], bins[i]))
            self.decoder_tfs.append(
                FrameTransformerDecoder(widths[i], maps[i], bins[i], skip_channels[i], **block) if has_tf[i] else None
            )
            in_ch = widths[i] + maps[i]
        # normalising the last volume keeps the mask logits from drifting into sigmoid saturation,
        # where training stalls at a mask of all ones
        self.out_norm = MultichannelLayerNorm(in_ch, cfg.num_bins)
        self.out = ChannelMix(in_ch, cfg.in_channels)

    def _chain(self, scores: torch.Tensor | None, block: nn.Module) -> torch.Tensor | None:
        """Residual scores continue only while their head count matches the next block's."""
        if scores is None or scores.shape[2] != block.attn.num_heads:
            return None
        return scores

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, C, F, T]`` magnitude -> ``[B, C, F, T]`` mask in [0, 1]."""
        residual = self.config.residual_attention
        scores, skips = None, []
        for encoder, tf in zip(self.encoders, self.encoder_tfs):
            x = encoder(x)
            if tf is not None:
                h, scores = tf(x, prev_scores=self._chain(scores, tf), return_scores=residual)
                x = torch.cat([x, h], dim=1)
            skips.append(x)
        for decoder, tf, skip in zip(self.decoders, self.decoder_tfs, reversed(skips[:-1])):
            x = decoder(x, skip)
            if tf is not None:
                h, scores = tf(x, skip, prev_scores=self._chain(scores, tf), return_scores=residual)
                x = torch.cat([x, h], dim=1)
        return torch.sigmoid(self.out(self.out_norm(x)))
