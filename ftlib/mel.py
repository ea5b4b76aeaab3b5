"""Log-mel spectrograms and mel -> audio vocoders.

A log-mel is ``[B, 1, n_mels, T]``: librosa's (Slaney) filterbank applied with torch to the
magnitude STFT (Hann window, centred frames), then ``log(clamp(mel, min=log_floor))``. Audio comes
back through a :class:`Vocoder`; :class:`GriffinLim` is the built-in one, and any neural vocoder
with the same call signature plugs in.

    >>> mel = MelSpectrogram(MelConfig.preset("tiny"))(audio)     # [B, 1, 32, T]
    >>> idea = resize_width(mel, 256)                              # [B, 1, 32, 256]
    >>> wave = GriffinLim(mel_config)(mel)                         # [B, S]
"""
from __future__ import annotations

import dataclasses
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ftlib.config import Config
from ftlib.errors import AudioError, ConfigError

__all__ = ["MelConfig", "MelSpectrogram", "resize_width", "Vocoder", "GriffinLim", "mel_filterbank"]


@dataclasses.dataclass
class MelConfig(Config):
    """Log-mel analysis settings (defaults follow common 22.05 kHz vocoder setups)."""

    sample_rate: int = 22050  # Hz; audio is resampled to this rate before analysis
    n_fft: int = 1024  # STFT size (window length) in samples
    hop_length: int = 256  # samples between frames
    n_mels: int = 128  # mel bands
    fmin: float = 0.0  # lowest band edge, Hz
    fmax: float | None = None  # highest band edge, Hz (None = sample_rate / 2)
    log_floor: float = 1e-5  # magnitudes are clamped to this before the log

    PRESETS = {"tiny": dict(sample_rate=8000, n_fft=256, hop_length=64, n_mels=32)}

    def validate(self) -> None:
        self.require(self.sample_rate > 0, f"sample_rate must be positive, got {self.sample_rate}")
        self.require(self.n_fft >= 16, f"n_fft must be at least 16, got {self.n_fft}")
        self.require(0 < self.hop_length <= self.n_fft, f"hop_length must be in (0, n_fft={self.n_fft}], got {self.hop_length}")
        self.require(self.n_mels > 0, f"n_mels must be positive, got {self.n_mels}")
        self.require(0.0 <= self.fmin < self.top_hz, f"need 0 <= fmin < fmax, got fmin={self.fmin}, fmax={self.top_hz}")
        self.require(self.top_hz <= self.sample_rate / 2, f"fmax={self.fmax} exceeds Nyquist ({self.sample_rate / 2} Hz)")
        self.require(self.log_floor > 0, f"log_floor must be positive, got {self.log_floor}")

    @property
    def top_hz(self) -> float:
        """The effective upper band edge in Hz."""
        return float(self.sample_rate) / 2 if self.fmax is None else float(self.fmax)


def _config(config: MelConfig | None, overrides: dict[str, Any]) -> MelConfig:
    config = config if config is not None else MelConfig()
    return config.replace(**overrides) if overrides else config


def mel_filterbank(config: MelConfig) -> torch.Tensor:
    """librosa's Slaney-normalised mel filterbank, float32 ``[n_mels, n_fft // 2 + 1]``."""
    import librosa

    fb = librosa.filters.mel(sr=config.sample_rate, n_fft=config.n_fft, n_mels=config.n_mels,
                             fmin=config.fmin, fmax=config.top_hz, htk=False, norm="slaney")
    return torch.from_numpy(np.asarray(fb, dtype=np.float32))


class MelSpectrogram(nn.Module):
    """Audio ``[S]``, ``[B, S]`` or ``[B, C, S]`` (channels averaged) -> log-mel ``[B, 1, n_mels, T]``
    with ``T = S // hop_length + 1``."""

    def __init__(self, config: MelConfig | None = None, **overrides: Any):
        super().__init__()
        self.config = _config(config, overrides)
        self.register_buffer("filterbank", mel_filterbank(self.config), persistent=False)
        self.register_buffer("window", torch.hann_window(self.config.n_fft), persistent=False)

    def magnitude(self, audio: torch.Tensor) -> torch.Tensor:
        """Linear magnitude STFT ``[B, n_fft // 2 + 1, T]`` of mono audio ``[B, S]``."""
        return torch.stft(audio, self.config.n_fft, self.config.hop_length, window=self.window,
                          center=True, pad_mode="constant", return_complex=True).abs()

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        audio = torch.as_tensor(audio, dtype=torch.float32, device=self.filterbank.device)
        if audio.ndim == 1:
            audio = audio[None]
        elif audio.ndim == 3:
            audio = audio.mean(dim=1)
        elif audio.ndim != 2:
            raise AudioError(f"MelSpectrogram expects audio [S], [B, S] or [B, C, S], got shape {tuple(audio.shape)}")
        if audio.shape[-1] == 0:
            raise AudioError("MelSpectrogram got empty audio (0 samples)")
        mel = torch.matmul(self.filterbank, self.magnitude(audio))
        return torch.log(torch.clamp(mel, min=self.config.log_floor))[:, None]


def resize_width(mel: torch.Tensor, width: int) -> torch.Tensor:
    """Linearly interpolate ``[B, 1, M, T]`` along time to ``[B, 1, M, width]``."""
    if mel.ndim != 4:
        raise ConfigError(f"resize_width expects [B, 1, M, T], got shape {tuple(mel.shape)}")
    if width < 1:
        raise ConfigError(f"resize_width needs a positive width, got {width}")
    b, c, m, t = mel.shape
    flat = F.interpolate(mel.reshape(b * c, m, t), size=width, mode="linear", align_corners=False)
    return flat.reshape(b, c, m, width)


@runtime_checkable
class Vocoder(Protocol):
    """Anything turning a log-mel ``[B, 1, M, T]`` into audio ``[B, S]`` at ``sample_rate``."""

    sample_rate: int

    def __call__(self, log_mel: torch.Tensor) -> torch.Tensor: ...


class GriffinLim(nn.Module):
    """Built-in vocoder: log-mel -> linear magnitude (non-negative pseudo-inverse of the
    filterbank) -> phase by ``n_iter`` fast Griffin-Lim iterations (momentum ``momentum``).

    Output ``[B, (T - 1) * hop_length]``; deterministic for a given ``seed``.
    """

    def __init__(self, config: MelConfig | None = None, n_iter: int = 32, momentum: float = 0.99, seed: int = 0):
        super().__init__()
        self.config = config if config is not None else MelConfig()
        if n_iter < 1:
            raise ConfigError(f"GriffinLim needs n_iter >= 1, got {n_iter}")
        self.n_iter, self.momentum, self.seed = n_iter, momentum, seed
        self.sample_rate = self.config.sample_rate
        self.register_buffer("inverse", torch.linalg.pinv(mel_filterbank(self.config)), persistent=False)
        self.register_buffer("window", torch.hann_window(self.config.n_fft), persistent=False)

    def _stft(self, audio: torch.Tensor) -> torch.Tensor:
        return torch.stft(audio, self.config.n_fft, self.config.hop_length, window=self.window,
                          center=True, pad_mode="constant", return_complex=True)

    def _istft(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        return torch.istft(spec, self.config.n_fft, self.config.hop_length, window=self.window,
                           center=True, length=length)

    @torch.no_grad()
    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        if log_mel.ndim != 4 or log_mel.shape[1] != 1 or log_mel.shape[2] != self.config.n_mels:
            raise ConfigError(f"GriffinLim expects a log-mel [B, 1, {self.config.n_mels}, T], "
                              f"got shape {tuple(log_mel.shape)}")
        if log_mel.shape[-1] < 2:
            raise ConfigError(f"GriffinLim needs at least 2 mel frames, got {log_mel.shape[-1]}")
        mel = torch.exp(log_mel[:, 0].float().to(self.inverse.device))
        magnitude = torch.clamp(torch.matmul(self.inverse, mel), min=0.0)  # [B, F, T]
        length = (magnitude.shape[-1] - 1) * self.config.hop_length
        gen = torch.Generator().manual_seed(self.seed)
        phase = torch.rand(magnitude.shape, generator=gen).to(magnitude.device) * (2 * torch.pi)
        angles = torch.polar(torch.ones_like(magnitude), phase)
        previous = torch.zeros_like(angles)
        for _ in range(self.n_iter):
            rebuilt = self._stft(self._istft(magnitude * angles, length))
            angles = rebuilt - (self.momentum / (1 + self.momentum)) * previous
            angles = angles / angles.abs().clamp(min=1e-8)
            previous = rebuilt
        return self._istft(magnitude * angles, length)
