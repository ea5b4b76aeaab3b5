"""Convolutional U-Net with bidirectional-LSTM frame blocks, the idea of the upstream vocal-remover.

Every encoder halves the frequency axis; the first ``time_downsample`` ones also halve the frames,
so the deep levels are small and the convolutions can be wide for the same cost (the frame
transformer keeps all frames at every level). With ``max_bin`` the network sees only the lowest bins
and every bin above gets the mask of its top bin: high frequencies carry little of a song's energy,
so the ratio-mask ceiling barely moves while each step costs about ``max_bin / num_bins`` as much. From level ``lstm_from_level`` on, each encoder and
decoder is followed by a :class:`~ftlib.layers.FrameLSTMBlock` whose maps are concatenated to the
volume: a BiLSTM across the frames of that level gives the whole crop as context. Decoders
upsample to their skip's size (bilinear), so any number of frames works. A per-frame norm, a
bias-free 1x1 projection and a sigmoid give the mask.

Input ``[B, C, F, T]`` magnitude -> ``[B, C, F, T]`` mask in [0, 1]. With ``mid_side`` the model
reads the complex stereo STFT (``task == "complex_separation"``) and sees the magnitudes of the
left, right, mid and side signals (:func:`~ftlib.layers.mid_side_magnitudes`); its mask is still a
real mask of the magnitude.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ftlib.config import Config
from ftlib.layers import (ChannelMix, FrameDecoder, FrameEncoder, FrameLSTMBlock, MultichannelLayerNorm,
                          mid_side_magnitudes)
from ftlib.models.registry import COMPLEX, register


@dataclasses.dataclass
class ConvUNetConfig(Config):
    """Args:
        in_channels: audio channels C of the input magnitude.
        num_bins: frequency bins F of the input and the mask.
        max_bin: bins the network sees, from the lowest (0: all ``num_bins``); the bins above take
            the mask of bin ``max_bin - 1``. The bins seen are divisible by 2^(levels - 1).
        channels: feature maps of the first level.
        channel_multipliers: one entry per level; level i has ``channels * m[i]`` maps at F / 2^i bins.
        time_downsample: how many encoders (from the second level on) also halve the frames.
        lstm_from_level: levels from this one on get LSTM frame blocks (``levels``: none).
        lstm_maps: maps each LSTM block extracts (its frame vector is ``lstm_maps * F / 2^i`` wide).
        lstm_hidden: LSTM state size per direction.
        activation: "gelu", "relu2" or "relu" in the convolutions.
        input_power: exponent applied to the input magnitude before the first encoder (0.5: its
            square root, which compresses the range between loud and quiet bins); the mask still
            scales the raw magnitude.
        mid_side: read the complex stereo STFT and see the magnitudes of its mid ``(L + R) / 2`` and
            side ``(L - R) / 2`` beside those of left and right (``in_channels`` 2); the mask stays
            real.
    """

    in_channels: int = 2
    num_bins: int = 1024
    max_bin: int = 0
    channels: int = 32
    channel_multipliers: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
    time_downsample: int = 3
    lstm_from_level: int = 2
    lstm_maps: int = 2
    lstm_hidden: int = 256
    activation: str = "gelu"
    input_power: float = 1.0
    mid_side: bool = False

    PRESETS = {
        "tiny": dict(num_bins=64, channels=4, channel_multipliers=(1, 2, 3), time_downsample=1, lstm_from_level=1,
                     lstm_maps=1, lstm_hidden=8),
        # sized for a 2-core CPU
        "small": dict(channels=16, lstm_maps=1, lstm_hidden=128),
        # the separation recipe's cpu preset: half the maps and the lowest 512 bins (11 kHz at n_fft
        # 2048), four times the training steps of "small" in the same time; mid/side input
        "cpu": dict(channels=8, lstm_maps=1, lstm_hidden=128, max_bin=512, mid_side=True),
    }

    @property
    def bins_seen(self) -> int:
        """Bins the network sees: ``max_bin``, else all ``num_bins``."""
        return self.max_bin or self.num_bins

    @property
    def levels(self) -> int:
        return len(self.channel_multipliers)

    def validate(self) -> None:
        levels = self.levels
        self.require(levels >= 1, "channel_multipliers needs at least one level")
        self.require(min(self.in_channels, self.channels, self.lstm_maps, self.lstm_hidden,
                         *self.channel_multipliers) >= 1, "channel counts and lstm sizes must be >= 1")
        self.require(0 <= self.max_bin <= self.num_bins, f"max_bin must be in [0, num_bins={self.num_bins}]")
        self.require(self.bins_seen % 2 ** (levels - 1) == 0,
                     f"the bins seen ({self.bins_seen}) must be divisible by 2^(levels-1)={2 ** (levels - 1)}")
        self.require(0 <= self.time_downsample < levels, f"time_downsample must be in [0, {levels - 1}]")
        self.require(0 <= self.lstm_from_level <= levels, f"lstm_from_level must be in [0, {levels}]")
        self.require(self.activation in ("gelu", "relu2", "relu"), f"unknown activation {self.activation!r}")
        self.require(self.input_power > 0, f"input_power must be > 0, got {self.input_power}")
        self.require(not self.mid_side or self.in_channels == 2,
                     f"mid_side needs stereo input (in_channels 2), got in_channels {self.in_channels}")


@register("conv_unet", ConvUNetConfig)
class ConvUNet(nn.Module):
    """Convolutional U-Net with LSTM frame blocks (see module docstring). ``config``: ConvUNetConfig."""

    complex_mask = False  # a real mask, also when the model reads the complex STFT

    def __init__(self, config: ConvUNetConfig):
        super().__init__()
        self.config = cfg = config
        widths = [cfg.channels * m for m in cfg.channel_multipliers]
        bins = [cfg.bins_seen // 2 ** i for i in range(cfg.levels)]
        maps = [cfg.lstm_maps if i >= cfg.lstm_from_level else 0 for i in range(cfg.levels)]

        def lstm(in_ch: int, level: int) -> nn.Module | None:
            return FrameLSTMBlock(in_ch, maps[level], bins[level], cfg.lstm_hidden) if maps[level] else None

        self.encoders, self.encoder_lstms = nn.ModuleList(), nn.ModuleList()
        in_ch = 2 * cfg.in_channels if cfg.mid_side else cfg.in_channels
        for i, width in enumerate(widths):
            stride = (2, 2 if i <= cfg.time_downsample else 1) if i else (1, 1)
            self.encoders.append(FrameEncoder(in_ch, width, bins[i - 1] if i else bins[0], stride, cfg.activation))
            self.encoder_lstms.append(lstm(width, i))
            in_ch = width + maps[i]
        skip_channels = [w + m for w, m in zip(widths, maps)]
        self.decoders, self.decoder_lstms = nn.ModuleList(), nn.ModuleList()
        for i in reversed(range(cfg.levels - 1)):
            self.decoders.append(FrameDecoder(in_ch, skip_channels[i], widths[i], bins[i], cfg.activation))
            self.decoder_lstms.append(lstm(widths[i], i))
            in_ch = widths[i] + maps[i]
        self.out_norm = MultichannelLayerNorm(in_ch, cfg.bins_seen)
        self.out = ChannelMix(in_ch, cfg.in_channels)

    @property
    def task(self) -> str:
        """"complex_separation" with ``mid_side`` (the model reads the complex STFT), else "separation"."""
        return COMPLEX if self.config.mid_side else "separation"

    @staticmethod
    def _with_lstm(block: nn.Module | None, x: torch.Tensor) -> torch.Tensor:
        return x if block is None else torch.cat([x, block(x)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, C, F, T]`` magnitude (with ``mid_side``: complex STFT) -> ``[B, C, F, T]`` mask in [0, 1]."""
        if x.is_complex() != self.config.mid_side:
            raise ValueError("this conv_unet takes " + ("a complex stereo STFT" if self.config.mid_side
                             else "a real magnitude") + f" [B, C, F, T]; got {x.dtype}")
        num_bins, seen = x.shape[2], self.config.bins_seen
        x = x[:, :, :seen]
        if self.config.mid_side:
            x = mid_side_magnitudes(x)
        skips = []
        if self.config.input_power != 1.0:
            x = x.clamp_min(0).pow(self.config.input_power)
        for encoder, block in zip(self.encoders, self.encoder_lstms):
            x = self._with_lstm(block, encoder(x))
            skips.append(x)
        for decoder, block, skip in zip(self.decoders, self.decoder_lstms, reversed(skips[:-1])):
            x = self._with_lstm(block, decoder(x, skip))
        mask = torch.sigmoid(self.out(self.out_norm(x)))
        return torch.cat([mask, mask[:, :, -1:].expand(-1, -1, num_bins - seen, -1)], dim=2)
