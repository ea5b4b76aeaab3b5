"""The idea model: unconditional diffusion over fixed-size log-mel images ``[B, 1, n_mels, width]``.

A crop of ``crop_seconds`` of audio becomes a log-mel (:class:`ftlib.mel.MelSpectrogram`) resized
to ``width`` frames (:func:`ftlib.mel.resize_width`): the coarse first stage of a mel-expansion
pipeline. Each image is scaled into [-1, 1] against its own peak over ``dynamic_range_db``; a
sampled image maps back to a log-mel peaking at 0 that :class:`ftlib.mel.GriffinLim` can play.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ftlib import audio
from ftlib.config import Config
from ftlib.data.augment import item_rng
from ftlib.data.cache import report_skipped
from ftlib.errors import AudioError, DataError
from ftlib.mel import MelConfig, MelSpectrogram, resize_width


@dataclasses.dataclass
class IdeaConfig(Config):
    """Args:
        width: frames of every resized log-mel image.
        crop_seconds: audio seconds squeezed into one image.
        dynamic_range_db: level range below each image's peak mapped onto [-1, 1] (lower is clipped).
        items_per_epoch: random crops per epoch.
        seed: base seed of the per-item crop positions.
    """

    width: int = 256
    crop_seconds: float = 6.0
    dynamic_range_db: float = 80.0
    items_per_epoch: int = 256
    seed: int = 0

    PRESETS = {"tiny": dict(width=16, crop_seconds=1.0, items_per_epoch=8)}

    def validate(self) -> None:
        self.require(self.width >= 2, f"width must be >= 2, got {self.width}")
        self.require(self.crop_seconds > 0 and self.dynamic_range_db > 0,
                     "crop_seconds and dynamic_range_db must be > 0")
        self.require(self.items_per_epoch >= 1, "items_per_epoch must be >= 1")

    @property
    def log_range(self) -> float:
        """The dynamic range in natural-log magnitude units (the log-mel's)."""
        return self.dynamic_range_db / 20 * math.log(10)


def mel_to_x0(log_mel: torch.Tensor, config: IdeaConfig) -> torch.Tensor:
    """Log-mel ``[B, 1, M, W]`` -> [-1, 1], each image relative to its own peak."""
    peak = log_mel.amax(dim=(1, 2, 3), keepdim=True)
    return (1 + 2 * (log_mel - peak) / config.log_range).clamp(-1, 1)


def x0_to_mel(x0: torch.Tensor, config: IdeaConfig) -> torch.Tensor:
    """Inverse of :func:`mel_to_x0` up to the peak: a log-mel peaking at 0 (natural log)."""
    return (x0.clamp(-1, 1) - 1) / 2 * config.log_range


class MelIdeaDataset(Dataset):
    """Random fixed-size log-mel images of audio files: items ``{"x0": [1, n_mels, width]}`` in [-1, 1].

    Every file's log-mel is computed once (audio resampled to the mel rate, channels averaged);
    item ``index`` of ``epoch`` crops a random file at a random position drawn from
    ``item_rng(seed, epoch, index)``. Files shorter than a crop are skipped with a warning.
    """

    epoch_aware = True

    def __init__(self, files: Sequence[str | Path], mel: MelConfig | None = None, config: IdeaConfig | None = None):
        self.mel_config, self.config = mel or MelConfig(), config or IdeaConfig()
        analyse = MelSpectrogram(self.mel_config)
        self.frames = max(2, round(self.config.crop_seconds * self.mel_config.sample_rate / self.mel_config.hop_length))
        self.mels, skipped = [], []
        for path in files:
            try:
                wave = audio.load(path, self.mel_config.sample_rate)
            except AudioError as exc:
                skipped.append((Path(path), str(exc)))
                continue
            mel = analyse(torch.from_numpy(wave).mean(0, keepdim=True))[0]  # [1, M, T]
            if mel.shape[-1] < self.frames:
                skipped.append((Path(path), f"shorter than {self.config.crop_seconds} s"))
                continue
            self.mels.append(mel)
        report_skipped(skipped, len(files))
        if not self.mels:
            raise DataError(f"none of the {len(files)} files gives a {self.config.crop_seconds}-second crop; "
                            "pass longer audio or lower crop_seconds")
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.config.items_per_epoch

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, index = index if isinstance(index, tuple) else (self.epoch, index)
        rng = item_rng(self.config.seed, epoch, index)
        mel = self.mels[int(rng.integers(len(self.mels)))]
        start = int(rng.integers(0, mel.shape[-1] - self.frames + 1))
        image = resize_width(mel[None, ..., start:start + self.frames], self.config.width)
        return {"x0": mel_to_x0(image, self.config)[0]}
