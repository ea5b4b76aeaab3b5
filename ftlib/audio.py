"""Audio I/O and the STFT transform.

Audio is float32 ``[C, S]`` (channels, samples), stereo at 44.1 kHz by default. A spectrogram is
complex ``[..., F, T]`` with ``F = n_fft // 2 + 1`` bins; models see the magnitude without the
Nyquist bin, ``[B, C, n_fft // 2, T]``.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ftlib.atomic import replacing
from ftlib.config import Config
from ftlib.errors import AudioError

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff", ".opus")


# ---------------------------------------------------------------------------------------- I/O

def load(path: str | Path, sample_rate: int = 44100, channels: int = 2) -> np.ndarray:
    """Decode ``path`` into float32 ``[channels, samples]`` at ``sample_rate``.

    Mono is duplicated to stereo, extra channels are averaged down, other rates are resampled with
    soxr. Raises AudioError naming the file when it is missing, undecodable, empty or not finite.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such audio file")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile raises several types for corrupt data
        raise AudioError(f"{path}: cannot decode audio ({exc}); is it a wav/flac/ogg/mp3 file?") from exc
    if data.shape[0] == 0:
        raise AudioError(f"{path}: file holds no samples")
    if not np.isfinite(data).all():
        raise AudioError(f"{path}: contains NaN or infinite samples")
    audio = np.ascontiguousarray(data.T)
    if rate != sample_rate:
        import soxr

        log.info("%s: resampling %d Hz -> %d Hz", path, rate, sample_rate)
        audio = np.ascontiguousarray(soxr.resample(audio.T, rate, sample_rate).T, dtype=np.float32)
    return match_channels(audio, channels)


def match_channels(audio: np.ndarray, channels: int) -> np.ndarray:
    """Duplicate mono or average surplus channels so ``audio`` has ``channels`` rows."""
    if audio.shape[0] == channels:
        return audio
    if audio.shape[0] == 1:
        return np.repeat(audio, channels, axis=0)
    mono = audio.mean(axis=0, keepdims=True)
    return mono if channels == 1 else np.repeat(mono, channels, axis=0)


def save(path: str | Path, audio: np.ndarray | torch.Tensor, sample_rate: int = 44100, subtype: str | None = None) -> Path:
    """Write ``[C, S]`` audio to wav/flac (format from the suffix), atomically (temp file, then rename).

    ``subtype`` is a soundfile subtype such as ``"PCM_16"``, ``"PCM_24"`` or ``"FLOAT"``; by default
    wav is written as 32-bit float and flac as 24-bit PCM. Samples are clipped to [-1, 1] for PCM.
    """
    path = Path(path)
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu().numpy()
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[None]
    if audio.ndim != 2:
        raise AudioError(f"{path}: audio to save must be [channels, samples], got shape {audio.shape}")
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ("wav", "flac"):
        raise AudioError(f"{path}: can only write .wav or .flac")
    subtype = subtype or ("FLOAT" if fmt == "wav" else "PCM_24")
    if subtype.startswith("PCM"):
        audio = np.clip(audio, -1.0, 1.0)
    with replacing(path) as tmp:
        sf.write(tmp, audio.T, sample_rate, subtype=subtype, format=fmt.upper())
    return path


def is_audio_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in AUDIO_EXTENSIONS and not Path(path).name.startswith(".")


# -------------------------------------------------------------------------------- spectrogram

@dataclasses.dataclass
class SpectrogramConfig(Config):
    """STFT settings shared by datasets, models and separation."""

    n_fft: int = 2048  # FFT size; models see n_fft // 2 bins (Nyquist dropped)
    hop_length: int = 1024  # samples between frames
    window: str = "hann"  # "hann" or "hamming"
    center: bool = True  # reflect-pad so frame t is centred on sample t * hop_length
    win_length: int = 0  # window length (0: n_fft); a shorter window is zero-padded to n_fft, centred

    PRESETS = {"tiny": dict(n_fft=256, hop_length=128)}

    def validate(self) -> None:
        self.require(self.n_fft >= 16 and self.n_fft % 2 == 0, f"n_fft must be an even number >= 16, got {self.n_fft}")
        self.require(0 < self.hop_length <= self.n_fft, f"hop_length must be in (0, n_fft], got {self.hop_length}")
        self.require(self.window in ("hann", "hamming"), f"window must be 'hann' or 'hamming', got {self.window!r}")
        self.require(0 <= self.win_length <= self.n_fft, f"win_length must be in [0, n_fft], got {self.win_length}")

    @property
    def num_bins(self) -> int:
        """Frequency bins the models see (Nyquist dropped)."""
        return self.n_fft // 2


class Spectrogram:
    """Complex STFT on ``torch.stft`` with an exact inverse.

    ``stft``: audio ``[..., S]`` -> complex ``[..., n_fft // 2 + 1, T]``;
    ``istft``: complex ``[..., n_fft // 2 + 1, T]`` -> audio ``[..., S]``.
    ``to_model`` / ``from_model`` drop and restore the Nyquist bin.
    """

    def __init__(self, config: SpectrogramConfig | None = None, **overrides):
        self.config = (config or SpectrogramConfig()).replace(**overrides) if overrides else (config or SpectrogramConfig())
        self._windows: dict[tuple, torch.Tensor] = {}

    @property
    def n_fft(self) -> int:
        return self.config.n_fft

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    @property
    def num_bins(self) -> int:
        return self.config.num_bins

    def _window(self, device, dtype) -> torch.Tensor:
        key = (str(device), dtype)
        if key not in self._windows:
            fn = torch.hann_window if self.config.window == "hann" else torch.hamming_window
            length = self.config.win_length or self.n_fft
            left = (self.n_fft - length) // 2  # where torch.stft puts a window shorter than n_fft
            self._windows[key] = torch.nn.functional.pad(fn(length, device=device, dtype=dtype),
                                                         (left, self.n_fft - length - left))
        return self._windows[key]

    def num_frames(self, num_samples: int) -> int:
        return num_samples // self.hop_length + 1 if self.config.center else 1 + (num_samples - self.n_fft) // self.hop_length

    def stft(self, audio: torch.Tensor | np.ndarray) -> torch.Tensor:
        audio = torch.as_tensor(audio)
        shape = audio.shape
        spec = torch.stft(
            audio.reshape(-1, shape[-1]), self.n_fft, self.hop_length, window=self._window(audio.device, audio.dtype),
            center=self.config.center, return_complex=True,
        )
        return spec.reshape(*shape[:-1], *spec.shape[-2:])

    def istft(self, spec: torch.Tensor, length: int | None = None) -> torch.Tensor:
        shape = spec.shape
        real_dtype = spec.real.dtype
        audio = torch.istft(
            spec.reshape(-1, *shape[-2:]), self.n_fft, self.hop_length, window=self._window(spec.device, real_dtype),
            center=self.config.center, length=length,
        )
        return audio.reshape(*shape[:-2], audio.shape[-1])

    @staticmethod
    def magphase(spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Split complex ``spec`` into magnitude and unit-modulus phase (``spec = mag * phase``)."""
        mag = spec.abs()
        phase = torch.where(mag > 0, spec / mag.clamp_min(1e-30), torch.ones_like(spec))
        return mag, phase

    @staticmethod
    def to_model(x: torch.Tensor) -> torch.Tensor:
        """Drop the Nyquist bin: ``[..., n_fft//2 + 1, T]`` -> ``[..., n_fft//2, T]``."""
        return x[..., :-1, :]

    @staticmethod
    def from_model(x: torch.Tensor, nyquist: torch.Tensor | None = None) -> torch.Tensor:
        """Restore the Nyquist bin: ``[..., F, T]`` -> ``[..., F + 1, T]``.

        ``nyquist`` (``[..., 1, T]``) fills the restored bin; by default the top bin is repeated,
        which for a mask means the Nyquist bin gets the mask of its neighbour.
        """
        top = x[..., -1:, :] if nyquist is None else nyquist
        return torch.cat([x, top], dim=-2)
