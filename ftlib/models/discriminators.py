"""Discriminators for adversarial finetuning, conditioned on the mixture.

``PatchDiscriminator`` (pix2pix, Isola et al. 2017): real/fake logits for overlapping patches of
the (mixture, candidate) pair. ``VocalActivityDiscriminator``: logits per frame for 4 frequency
bands, judging whether a candidate's vocal activity is plausible for its mixture.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from ftlib.config import Config
from ftlib.layers import ChannelMix, FrameEncoder
from ftlib.models.registry import register


@dataclasses.dataclass
class PatchDiscriminatorConfig(Config):
    """Args:
        in_channels: channels of the mixture and of the candidate (each).
        num_bins: frequency bins F of the inputs.
        channels: feature maps of the first layer (doubled per layer, at most 8x).
        num_layers: strided 4x4 layers; each halves F and T.
    """

    in_channels: int = 2
    num_bins: int = 1024
    channels: int = 32
    num_layers: int = 4

    PRESETS = {"tiny": dict(num_bins=64, channels=4, num_layers=2)}

    def validate(self) -> None:
        self.require(min(self.in_channels, self.channels, self.num_layers) >= 1, "all sizes must be >= 1")


@register("patch_discriminator", PatchDiscriminatorConfig)
class PatchDiscriminator(nn.Module):
    """``(mixture [B, C, F, T], candidate [B, C, F, T]) -> logits [B, 1, F', T']`` (one per patch)."""

    task = "discriminator"

    def __init__(self, config: PatchDiscriminatorConfig):
        super().__init__()
        self.config = cfg = config
        layers, in_ch = [], 2 * cfg.in_channels
        for i in range(cfg.num_layers):
            out_ch = cfg.channels * min(2 ** i, 8)
            layers += [nn.Conv2d(in_ch, out_ch, 4, stride=2, padding=1),
                       nn.GroupNorm(1, out_ch) if i else nn.Identity(), nn.LeakyReLU(0.2)]
            in_ch = out_ch
        layers.append(nn.Conv2d(in_ch, 1, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, mixture: torch.Tensor, candidate: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([mixture, candidate], dim=1))


@dataclasses.dataclass
class VocalActivityDiscriminatorConfig(Config):
    """Args:
        in_channels: channels of the mixture and of the candidate (each).
        num_bins: frequency bins F of the inputs (divisible by 2^num_layers and by num_bands).
        channels: feature maps of the frame encoders.
        num_layers: frame encoders, each halving F (frames are kept).
        num_bands: frequency bands judged per frame.
    """

    in_channels: int = 2
    num_bins: int = 1024
    channels: int = 16
    num_layers: int = 5
    num_bands: int = 4

    PRESETS = {"tiny": dict(num_bins=64, channels=4, num_layers=2)}

    def validate(self) -> None:
        self.require(min(self.in_channels, self.channels, self.num_layers, self.num_bands) >= 1, "sizes must be >= 1")
        self.require((self.num_bins // 2 ** self.num_layers) % self.num_bands == 0,
                     f"num_bins / 2^num_layers must be divisible by num_bands={self.num_bands}")


@register("vocal_activity_discriminator", VocalActivityDiscriminatorConfig)
class VocalActivityDiscriminator(nn.Module):
    """``(mixture [B, C, F, T], candidate [B, C, F, T]) -> logits [B, num_bands, T]`` (per frame and band)."""

    task = "discriminator"

    def __init__(self, config: VocalActivityDiscriminatorConfig):
        super().__init__()
        self.config = cfg = config
        encoders, in_ch = [], 2 * cfg.in_channels
        for i in range(cfg.num_layers):
            encoders.append(FrameEncoder(in_ch, cfg.channels, cfg.num_bins // 2 ** i, stride=(2, 1), activation="relu"))
            in_ch = cfg.channels
        self.encoders = nn.Sequential(*encoders)
        self.head = ChannelMix(cfg.channels, 1)

    def forward(self, mixture: torch.Tensor, candidate: torch.Tensor) -> torch.Tensor:
        h = self.head(F.leaky_relu(self.encoders(torch.cat([mixture, candidate], dim=1)), 0.2))  # [B, 1, F', T]
        return F.adaptive_avg_pool2d(h, (self.config.num_bands, h.shape[-1]))[:, 0]
