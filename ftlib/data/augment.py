"""Augmentations and augmented random crops of cached stems.

Each augmentation is a small function with its own probability and range in :class:`AugmentConfig`
(all off by default). With ``mix_domain="waveform"`` crops are read from a
:class:`~ftlib.data.cache.WaveformCache`, pitch shift and time stretch use Rubber Band (pedalboard;
formants kept) and compression a JUCE compressor, then each stem gets one STFT. With the default
``mix_domain="spectrogram"`` pitch shift and time stretch resample the cached STFT along frequency
or frames (formants move with the pitch, as with a speed change; cheap enough for every item), and
compression is unavailable. Random EQ, stereo width and L/R swap are linear, so they act on the
complex STFT in either domain.

Randomness: every draw comes from the item's own generator :func:`item_rng` seeded by
``(seed, epoch, index)``, never from global or per-worker state, so DataLoader workers share no
stream and an epoch is reproducible from ``(seed, epoch)``. A disabled augmentation draws nothing,
so turning augmentations off gives the same items as before they existed.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ftlib.config import Config
from ftlib.data.cache import SpectrogramCache

EPS = 1e-8
WAVEFORM_AUGMENTATIONS = ("compress_prob",)
RANGE_TYPES = (tuple[float, float], tuple[int, int])  # config fields checked as (low, high)


def item_rng(seed: int, epoch: int, index: int, *stream: int) -> np.random.Generator:
    """Generator of item ``index`` in ``epoch``; ``stream`` separates further independent draws."""
    return np.random.default_rng([seed, epoch, index, *stream])


class EpochDataset(Dataset):
    """A dataset whose item is a pure function of ``(epoch, index)`` (and the dataset's seed): it
    takes the engine sampler's ``(epoch, index)`` pairs, or a plain index (epoch 0)."""

    epoch_aware = True

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, index = index if isinstance(index, tuple) else (0, index)
        return self.item(epoch, index)

    def item(self, epoch: int, index: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError


def divide_by_mixture_peak(mixture: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Divide the mixture and every other magnitude by the same normaliser: the mixture's maximum.

    Writable float32 arrays are scaled in place (pass arrays you own), others are converted."""
    scale = np.float32(1.0 / (float(mixture.max()) + EPS))
    out = []
    for x in (mixture, *others):
        x = x if x.dtype == np.float32 and x.flags.writeable else x.astype(np.float32)
        x *= scale
        out.append(x)
    return out


@dataclasses.dataclass(kw_only=True)
class AugmentConfig(Config):
    """Augmentation settings shared by the training datasets (a base of their configs; its
    validation checks every ``*_prob`` field is in [0, 1] and every range is ``(low, high)``).

    Args:
        mix_domain: "spectrogram" (crops of the STFT cache, cheapest) or "waveform" (crops of a
            waveform cache and one STFT per stem; needed by pitch, stretch and compression). Stems
            are summed as STFTs either way, which equals mixing waveforms since the STFT is linear.
        pitch_prob: probability of a pitch shift per stem (see the module docstring for how).
        pitch_vocal_semitones: shift range of vocal stems.
        pitch_instrumental_semitones: shift range of instrumental (and unlabeled) stems.
        stretch_prob: probability of a time stretch per stem.
        stretch_rate: speed factor range (> 1: faster, so more source audio fills the crop).
        compress_prob: probability of dynamic-range compression per stem.
        compress_threshold_db: threshold range in dB below the stem crop's peak.
        compress_ratio: compression ratio range.
        eq_prob: probability of a random EQ per stem.
        eq_gain_db: gain range of the EQ's control points (dB).
        eq_bands: control points of the EQ curve, log-spaced in frequency.
        width_prob: probability of a stereo width change per stem.
        width: gain range of the side signal (0: mono, 1: unchanged, > 1: wider).
        swap_prob: probability of swapping left and right per stem.
        mixup_prob: probability of blending an item with another item of the same epoch.
        mixup_weight: weight range of the other item (the item keeps ``1 - weight``).
    """

    mix_domain: str = "spectrogram"
    pitch_prob: float = 0.0
    pitch_vocal_semitones: tuple[float, float] = (-12.0, 12.0)
    pitch_instrumental_semitones: tuple[float, float] = (-4.0, 4.0)
    stretch_prob: float = 0.0
    stretch_rate: tuple[float, float] = (0.8, 1.25)
    compress_prob: float = 0.0
    compress_threshold_db: tuple[float, float] = (-30.0, -10.0)
    compress_ratio: tuple[float, float] = (2.0, 8.0)
    eq_prob: float = 0.0
    eq_gain_db: tuple[float, float] = (-6.0, 6.0)
    eq_bands: int = 8
    width_prob: float = 0.0
    width: tuple[float, float] = (0.5, 1.5)
    swap_prob: float = 0.0
    mixup_prob: float = 0.0
    mixup_weight: tuple[float, float] = (0.0, 0.5)

    def validate(self) -> None:
        self.require(self.mix_domain in ("spectrogram", "waveform"), "mix_domain must be 'spectrogram' or 'waveform'")
        for name, hint in typing.get_type_hints(type(self)).items():  # subclasses' fields too
            value = getattr(self, name, None)
            if name.endswith("_prob"):
                self.require(0 <= value <= 1, f"{name} must be in [0, 1], got {value}")
            elif hint in RANGE_TYPES:
                self.require(len(value) == 2 and value[0] <= value[1], f"{name} must be (low, high), got {value}")
        self.require(self.stretch_rate[0] > 0 and self.width[0] >= 0, "stretch_rate must be > 0 and width >= 0")
        self.require(self.compress_ratio[0] >= 1 and self.eq_bands >= 2, "compress_ratio must be >= 1, eq_bands >= 2")
        self.require(0 <= self.mixup_weight[0] and self.mixup_weight[1] <= 1, "mixup_weight must lie in [0, 1]")
        used = [name for name in WAVEFORM_AUGMENTATIONS if getattr(self, name) > 0]
        self.require(not used or self.mix_domain == "waveform",
                     f"{', '.join(used)} > 0 need mix_domain='waveform' (the spectrogram cache holds no waveforms)")


# ------------------------------------------------------------------------- waveform domain

def pitch_stretch(wave: np.ndarray, sample_rate: int, semitones: float = 0.0, rate: float = 1.0) -> np.ndarray:
    """Pitch-shift by ``semitones`` and speed up by ``rate``: ``[C, S]`` -> ``[C, ~S / rate]``."""
    import pedalboard

    return pedalboard.time_stretch(np.ascontiguousarray(wave), sample_rate, stretch_factor=rate,
                                   pitch_shift_in_semitones=semitones, high_quality=False)


def compress(wave: np.ndarray, sample_rate: int, threshold_db: float, ratio: float) -> np.ndarray:
    """Dynamic-range compression, threshold relative to the peak of ``wave`` ``[C, S]``."""
    import pedalboard

    peak_db = 20 * math.log10(float(np.abs(wave).max()) + EPS)
    return pedalboard.Compressor(threshold_db=peak_db + threshold_db, ratio=ratio, attack_ms=5.0,
                                 release_ms=80.0)(np.ascontiguousarray(wave), sample_rate)


def fit_length(wave: np.ndarray, samples: int) -> np.ndarray:
    """Trim or zero-pad the end of ``[C, S]`` to ``samples``."""
    if wave.shape[-1] >= samples:
        return wave[:, :samples]
    return np.pad(wave, ((0, 0), (0, samples - wave.shape[-1])))


# ---------------------------------------------------------------------- spectrogram domain

def random_eq(spec: np.ndarray, rng: np.random.Generator, gain_db: tuple[float, float], bands: int) -> np.ndarray:
    """Multiply ``[C, F, T]`` by a smooth random gain curve: ``bands`` points log-spaced over F."""
    num_bins = spec.shape[-2]
    knots = np.geomspace(1, num_bins, bands) - 1
    curve_db = np.interp(np.arange(num_bins), knots, rng.uniform(*gain_db, bands))
    return spec * (10 ** (curve_db / 20)).astype(np.float32)[:, None]


def stereo_width(spec: np.ndarray, width: float) -> np.ndarray:
    """Scale the side signal ``(L - R) / 2`` of a stereo ``[2, ...]`` by ``width``."""
    mid, side = (spec[0] + spec[1]) / 2, width * (spec[0] - spec[1]) / 2
    return np.stack([mid + side, mid - side])


def swap_channels(spec: np.ndarray) -> np.ndarray:
    """Left <-> right of ``[C, ...]``."""
    return spec[::-1]


def _resample(spec: np.ndarray, positions: np.ndarray, axis: int) -> np.ndarray:
    """Complex ``spec`` read at fractional ``positions`` along ``axis`` (1: bins, 2: frames):
    magnitudes interpolated linearly, each output taking the phase of its nearest source; positions
    outside the axis give zeros."""
    size = spec.shape[axis]
    inside = (positions >= 0) & (positions <= size - 1)
    low = np.clip(np.floor(positions).astype(np.int64), 0, size - 1)
    high = np.minimum(low + 1, size - 1)
    frac = np.clip(positions - low, 0, 1).astype(np.float32)
    frac = frac[:, None] if axis == 1 else frac
    magnitude = np.abs(spec)
    take = lambda x, i: np.take(x, i, axis=axis)  # noqa: E731
    level = take(magnitude, low) * (1 - frac) + take(magnitude, high) * frac
    phase = np.angle(take(spec, np.clip(np.rint(positions).astype(np.int64), 0, size - 1)))
    out = (level * np.exp(1j * phase)).astype(np.complex64)
    out[(slice(None),) * axis + (~inside,)] = 0
    return out


def shift_bins(spec: np.ndarray, semitones: float) -> np.ndarray:
    """Spectral pitch shift of a complex ``[C, F, T]``: the content of bin f moves to
    ``f * 2 ** (semitones / 12)`` (formants move with it); bins with no source become zero."""
    return _resample(spec, np.arange(spec.shape[1]) / 2 ** (semitones / 12), axis=1)


def stretch_frames(spec: np.ndarray, frames: int) -> np.ndarray:
    """Spectral time stretch of a complex ``[C, F, T]`` to ``[C, F, frames]`` (the crop played
    ``T / frames`` times as fast, pitch unchanged)."""
    return _resample(spec, np.linspace(0, spec.shape[2] - 1, frames), axis=2)


def chance(rng: np.random.Generator, prob: float) -> bool:
    """True with probability ``prob``; draws nothing when ``prob`` is 0."""
    return prob > 0 and rng.random() < prob


# ------------------------------------------------------------------------------ stem crops

class StemCrops:
    """Augmented random crops of cached stems: complex64 ``[C, F, cropsize]`` (Nyquist dropped).

    ``kind`` ("vocal" or "instrumental") picks the pitch range. Depending on ``config.mix_domain``
    the crops come from ``cache`` itself or from its waveform sibling (``cache.waveforms()``).
    """

    def __init__(self, cache: SpectrogramCache, config: AugmentConfig, cropsize: int):
        self.config, self.cropsize = config, cropsize
        self.waveform = config.mix_domain == "waveform"
        self.cache = cache.waveforms() if self.waveform else cache
        self.spec, self.sample_rate = cache.spec, cache.sample_rate
        self.samples = (cropsize - 1) * cache.spec.hop_length  # centred STFT of this many samples: cropsize frames

    @property
    def min_length(self) -> int:
        """Shortest usable entry, along its last axis (frames or samples)."""
        return max(1, self.samples) if self.waveform else self.cropsize

    def build(self, paths: list[Path], desc: str) -> tuple[list[Path], list[tuple[Path, str]]]:
        """Cache ``paths``; ``(usable, skipped)`` without logging (the dataset reports once)."""
        return self.cache.build(paths, self.min_length, require_signal=True, desc=desc, report=False)

    def frames(self, path: Path) -> int:
        """STFT frames of ``path``."""
        length = self.cache.info(path)["shape"][-1]
        return self.spec.num_frames(length) if self.waveform else length

    def crop(self, path: Path, rng: np.random.Generator, kind: str = "instrumental") -> np.ndarray:
        data = self.cache.get(path)
        if self.waveform:
            spec = self._wave_crop(data, rng, kind)
        else:
            spec = self._spec_crop(data, rng, kind)
        return self.spectral(spec, rng)

    def _draw_pitch_rate(self, rng: np.random.Generator, kind: str) -> tuple[float, float]:
        """``(semitones, rate)`` of one crop: 0 and 1 unless its pitch / stretch chance comes up."""
        cfg = self.config
        semitone_range = cfg.pitch_vocal_semitones if kind == "vocal" else cfg.pitch_instrumental_semitones
        semitones = rng.uniform(*semitone_range) if chance(rng, cfg.pitch_prob) else 0.0
        rate = rng.uniform(*cfg.stretch_rate) if chance(rng, cfg.stretch_prob) else 1.0
        return semitones, rate

    def _spec_crop(self, data: np.ndarray, rng: np.random.Generator, kind: str) -> np.ndarray:
        semitones, rate = self._draw_pitch_rate(rng, kind)
        length = min(data.shape[-1], max(1, round(self.cropsize * rate)))
        start = int(rng.integers(0, data.shape[-1] - length + 1))
        spec = np.asarray(data[:, :-1, start:start + length])
        if length != self.cropsize:
            spec = stretch_frames(spec, self.cropsize)
        return shift_bins(spec, semitones) if semitones else spec

    def _wave_crop(self, wave: np.ndarray, rng: np.random.Generator, kind: str) -> np.ndarray:
        cfg = self.config
        semitones, rate = self._draw_pitch_rate(rng, kind)
        length = min(wave.shape[-1], math.ceil(self.samples * rate))
        start = int(rng.integers(0, wave.shape[-1] - length + 1))
        segment = np.array(wave[:, start:start + length])
        if semitones or rate != 1.0:
            segment = fit_length(pitch_stretch(segment, self.sample_rate, semitones, rate), self.samples)
        if chance(rng, cfg.compress_prob):
            segment = compress(segment, self.sample_rate, rng.uniform(*cfg.compress_threshold_db),
                               rng.uniform(*cfg.compress_ratio))
        with torch.no_grad():
            return self.spec.stft(torch.from_numpy(segment)).numpy()[:, :-1]

    def spectral(self, spec: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Random EQ, stereo width and L/R swap of a complex ``[C, F, T]``, each with its probability."""
        cfg = self.config
        if chance(rng, cfg.eq_prob):
            spec = random_eq(spec, rng, cfg.eq_gain_db, cfg.eq_bands)
        if spec.shape[0] == 2 and chance(rng, cfg.width_prob):
            spec = stereo_width(spec, rng.uniform(*cfg.width))
        if chance(rng, cfg.swap_prob):
            spec = swap_channels(spec)
        return spec
