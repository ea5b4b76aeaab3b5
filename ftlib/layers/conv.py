"""Convolutional U-Net stages that resample only the frequency axis (stride (2, 1)).

Normalisation is per frame (:class:`MultichannelLayerNorm`), so the stages stay local in time:
a frame's output depends on a few neighbouring frames only.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ftlib.layers.multichannel import ChannelMix, MultichannelLayerNorm


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` computed in channels-last layout (several times faster on CPU for the few-channel,
    many-bin volumes of these U-Nets; same numbers), returning a contiguous tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.contiguous(memory_format=torch.channels_last)).contiguous()


class FrameEncoder(nn.Module):
    """Residual block ``[B, C_in, F, T] -> [B, C_out, F / stride, T]``.

    norm -> 3x3 conv (frequency stride) -> GELU -> 3x3 conv, plus a strided 1x1 shortcut.
    """

    def __init__(self, in_channels: int, out_channels: int, features: int, stride: int = 2):
        super().__init__()
        self.norm = MultichannelLayerNorm(in_channels, features)
        self.conv1 = Conv2d(in_channels, out_channels, 3, stride=(stride, 1), padding=1)
        self.conv2 = Conv2d(out_channels, out_channels, 3, padding=1)
        self.stride = stride
        self.shortcut = ChannelMix(in_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(F.gelu(self.conv1(self.norm(x))))
        return h + self.shortcut(x[:, :, :: self.stride])


class FrameDecoder(nn.Module):
    """Upsample frequency x2 (bilinear), concatenate the skip, residual block.

    ``x [B, C_in, F/2, T]`` and ``skip [B, C_skip, F, T]`` -> ``[B, C_out, F, T]``.
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, features: int):
        super().__init__()
        total = in_channels + skip_channels
        self.norm = MultichannelLayerNorm(total, features)
        self.conv1 = Conv2d(total, out_channels, 3, padding=1)
        self.conv2 = Conv2d(out_channels, out_channels, 3, padding=1)
        self.shortcut = ChannelMix(total, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=True)
        x = torch.cat([x, skip], dim=1)
        h = self.conv2(F.gelu(self.conv1(self.norm(x))))
        return h + self.shortcut(x)
