"""A recurrent frame block: a bidirectional LSTM across the frames of a few extracted maps."""
from __future__ import annotations

import torch
from torch import nn

from ftlib.layers.multichannel import ChannelMix


class FrameLSTMBlock(nn.Module):
    """Extract ``out_channels`` maps from ``x [B, C_in, F, T]``, read each frame's maps as one
    ``out_channels * F`` vector, run a bidirectional LSTM across the frames and project its states
    back: ``[B, out_channels, F, T]`` (U-Nets concatenate it to their volume, as with
    :class:`~ftlib.layers.FrameTransformerBlock`).

    Args:
        in_channels: channels of the input volume.
        out_channels: maps the block extracts and returns.
        features: F, bins of a frame.
        hidden: LSTM state size per direction.
    """

    def __init__(self, in_channels: int, out_channels: int, features: int, hidden: int):
        super().__init__()
        width = out_channels * features
        self.embed = ChannelMix(in_channels, out_channels)
        self.norm = nn.LayerNorm(width)
        self.lstm = nn.LSTM(width, hidden, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, f, t = x.shape
        h = self.embed(x)
        frames = self.norm(h.flatten(1, 2).transpose(1, 2))  # [B, T, M * F]
        states, _ = self.lstm(frames)
        return self.out(states).transpose(1, 2).reshape(b, -1, f, t)
