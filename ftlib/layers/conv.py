"""Convolutional U-Net stages that resample one axis: frequency (stride (2, 1), the asymmetric
U-Nets) or frames (stride (1, 2), the temporal U-Net).

Normalisation is per frame (:class:`MultichannelLayerNorm`), so frequency-resampling stages stay
local in time: a frame's output depends on a few neighbouring frames only.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ftlib.layers.multichannel import ChannelMix, MultichannelLayerNorm
from ftlib.layers.transformer import ACTIVATIONS


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` computed in channels-last layout (several times faster on CPU for the few-channel,
    many-bin volumes of these U-Nets; same numbers), returning a contiguous tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.contiguous(memory_format=torch.channels_last)).contiguous()


class FrameEncoder(nn.Module):
    """Residual block ``[B, C_in, F, T] -> [B, C_out, F / s_f, T / s_t]`` for ``stride = (s_f, s_t)``.

    norm -> conv (strided) -> activation -> conv, plus a strided 1x1 shortcut. ``features`` is the
    input's bin count (for the norm); ``kernel`` (odd sizes) is 3x3 by default, (3, 1) gives the
    FramePrimer's frequency-only frame convolutions. Odd sizes round up.
    """

    def __init__(self, in_channels: int, out_channels: int, features: int, stride: tuple[int, int] = (2, 1),
                 activation: str = "gelu", kernel: tuple[int, int] = (3, 3)):
        super().__init__()
        self.stride = tuple(stride)
        pad = (kernel[0] // 2, kernel[1] // 2)
        self.norm = MultichannelLayerNorm(in_channels, features)
        self.conv1 = Conv2d(in_channels, out_channels, kernel, stride=self.stride, padding=pad)
        self.act = ACTIVATIONS[activation]()
        self.conv2 = Conv2d(out_channels, out_channels, kernel, padding=pad)
        self.shortcut = ChannelMix(in_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(self.act(self.conv1(self.norm(x))))
        return h + self.shortcut(x[:, :, :: self.stride[0], :: self.stride[1]])


class FrameDecoder(nn.Module):
    """Upsample to the skip's size (bilinear), concatenate the skip, residual block.

    ``x [B, C_in, F', T']`` and ``skip [B, C_skip, F, T]`` -> ``[B, C_out, F, T]``.
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, features: int,
                 activation: str = "gelu", kernel: tuple[int, int] = (3, 3)):
        super().__init__()
        total = in_channels + skip_channels
        pad = (kernel[0] // 2, kernel[1] // 2)
        self.norm = MultichannelLayerNorm(total, features)
        self.conv1 = Conv2d(total, out_channels, kernel, padding=pad)
        self.act = ACTIVATIONS[activation]()
        self.conv2 = Conv2d(out_channels, out_channels, kernel, padding=pad)
        self.shortcut = ChannelMix(total, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=True)
        x = torch.cat([x, skip], dim=1)
        h = self.conv2(self.act(self.conv1(self.norm(x))))
        return h + self.shortcut(x)
