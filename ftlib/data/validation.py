"""Magnitudes of sums of cached STFT crops, aligned segments (real songs, real pairs, fixed stem
mixes) and the fixed validation set.

:func:`magnitudes` turns sums of ``gain * crop`` terms into the normalised magnitudes of a training
item in one pass over the crops. A :class:`Segment` names where its mixture and instrumental come
from as such sums (``mixture - vocals`` for a MUSDB song, ``instrumental + gain * vocal`` for a fixed
mix), so a crop reads only its own frames from the memory-mapped cache and nothing is held in memory.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ftlib.data.augment import EPS, divide_by_mixture_peak, item_rng
from ftlib.data.cache import HalfSpectrogram, SpectrogramCache, report_skipped
from ftlib.data.sources import scan_songs
from ftlib.errors import DataError

Term = tuple[Path, float, int]  # (cached file, gain, first frame)
Crop = np.ndarray | HalfSpectrogram  # complex [C, F, T]: an array, a (lazy) slice of a cache entry
Gain = float | np.ndarray  # a scalar or one gain per channel [C]
CHUNK = 1 << 15  # complex values per block in magnitudes(): the block's buffers stay in the CPU caches


def magnitudes(mixture: Sequence[tuple[Gain, Crop]], *stems: Sequence[tuple[Gain, Crop]],
               chunk: int = CHUNK) -> list[np.ndarray]:
    """Normalised magnitudes of sums of complex crops ``[C, F, T]``: float32 ``[mix, *stems]``, each ``[C, F, T]``.

    ``mix = |sum(gain * crop for gain, crop in mixture)|``, every stem likewise but clamped to at most
    ``mix``, all divided by the maximum of ``mix`` (:func:`~ftlib.data.augment.divide_by_mixture_peak`). The crops are
    processed in blocks of rows of about ``chunk`` values: each block of each crop is read (and
    decoded, for float16 cache entries) once, and its temporaries stay in the CPU caches instead of
    making full-size intermediate arrays (16 MB each for a stereo crop of 1024 frames).
    """
    sums = [list(mixture), *map(list, stems)]
    crops = list({id(crop): crop for terms in sums for _, crop in terms}.values())
    slots = {id(crop): i for i, crop in enumerate(crops)}
    views = [c if isinstance(c, HalfSpectrogram) else _rows(c) for c in crops]
    channels, bins, frames = crops[0].shape
    rows = max(1, min(bins, chunk // frames))
    out = np.empty((len(sums), channels, bins, frames), np.float32)
    decoded = [np.empty((rows, frames), np.complex64) if isinstance(v, HalfSpectrogram) else None for v in views]
    total, scaled = np.empty((2, rows, frames), np.complex64)
    for channel in range(channels):
        plans = [_plan(terms, slots, channel) for terms in sums]
        for start in range(0, bins, rows):
            n = min(rows, bins - start)
            block = slice(start, start + n)
            parts = [v[channel, block] if d is None else v[channel, block].decode(d[:n])
                     for v, d in zip(views, decoded)]
            for k, plan in enumerate(plans):
                magnitude = np.abs(_weighted_sum(plan, parts, total[:n], scaled[:n]), out=out[k, channel, block])
                if k:
                    np.minimum(magnitude, out[0, channel, block], out=magnitude)
    return divide_by_mixture_peak(*out)


def spectra(mixture: Sequence[tuple[Gain, Crop]], *stems: Sequence[tuple[Gain, Crop]]) -> list[np.ndarray]:
    """Complex sums ``[mix, *stems]`` (complex64 ``[C, F, T]`` each) of ``(gain, crop)`` terms, all
    divided by the largest magnitude of ``mix``, as :func:`magnitudes` divides; the stems are not
    clamped (a complex mask can reach any of them). For complex-mask models."""
    shape = mixture[0][1].shape
    sums = []
    for terms in (mixture, *stems):
        total = np.zeros(shape, np.complex64)
        for gain, crop in terms:
            total += np.reshape(np.asarray(gain, np.float32), (-1, 1, 1)) * np.asarray(crop, np.complex64)
        sums.append(total)
    scale = np.float32(1.0 / (float(np.abs(sums[0]).max()) + EPS))
    return [total * scale for total in sums]


def _rows(crop: np.ndarray) -> np.ndarray:
    """A complex64 ndarray view of ``crop`` (a copy only when its frames are not contiguous)."""
    crop = np.asarray(crop, np.complex64)
    return crop if crop.strides[-1] == crop.itemsize else np.ascontiguousarray(crop)


def _plan(terms: list[tuple[Gain, Crop]], slots: dict[int, int], channel: int) -> list[tuple[np.float32, int]]:
    """``(gain, crop slot)`` of one channel, scaled terms first (unit gains are then added without a product)."""
    plan = [(np.float32(g[channel] if np.ndim(g) else g), slots[id(crop)]) for g, crop in terms]
    return sorted(plan, key=lambda term: term[0] == 1)


def _weighted_sum(plan: list[tuple[np.float32, int]], parts: list[np.ndarray], total: np.ndarray,
                  scaled: np.ndarray) -> np.ndarray:
    """``sum(gain * parts[slot])`` of complex blocks: the part itself for one unit-gain term, else in ``total``."""
    if len(plan) == 1 and plan[0][0] == 1:
        return parts[plan[0][1]]
    if not plan:
        total[:] = 0
    for i, (gain, slot) in enumerate(plan):
        if i == 0:
            np.multiply(parts[slot].view(np.float32), gain, out=total.view(np.float32))
        elif gain == 1:
            np.add(total, parts[slot], out=total)
        else:
            np.multiply(parts[slot].view(np.float32), gain, out=scaled.view(np.float32))
            np.add(total, scaled, out=total)
    return total


@dataclasses.dataclass(frozen=True)
class Segment:
    """An aligned excerpt: ``mixture`` and ``instrumental`` are sums of ``gain * STFT(file)[offset:]``."""

    name: str
    mixture: tuple[Term, ...]
    instrumental: tuple[Term, ...]
    frames: int

    def terms(self, cache: SpectrogramCache, start: int, cropsize: int) -> tuple[list, list]:
        """``(mixture, instrumental)`` as ``(gain, crop)`` terms for :func:`magnitudes`: lazy slices
        ``[C, F, cropsize]`` (Nyquist dropped) of the cache entries from frame ``start``, one per file."""
        views = {}

        def crop(path, offset):
            if (path, offset) not in views:
                views[path, offset] = cache.get(path)[:, :-1, offset + start:offset + start + cropsize]
            return views[path, offset]

        return ([(gain, crop(path, offset)) for path, gain, offset in self.mixture],
                [(gain, crop(path, offset)) for path, gain, offset in self.instrumental])


def song_segment(song: dict[str, Path], cache: SpectrogramCache) -> Segment:
    """The segment of an aligned song (instrumental from its file, else ``mixture - vocals``)."""
    mixture = ((song["mixture"], 1.0, 0),)
    if "instrumental" in song:
        instrumental = ((song["instrumental"], 1.0, 0),)
    else:
        instrumental = (*mixture, (song["vocals"], -1.0, 0))
    paths = {path for path, _, _ in mixture + instrumental}
    return Segment(song["name"], mixture, instrumental, min(cache.info(p)["shape"][-1] for p in paths))


def build_songs(cache: SpectrogramCache, songs: list[dict], min_frames: int,
                desc: str = "caching songs") -> tuple[list[Segment], list[tuple[Path, str]]]:
    """Cache every file of ``songs``; ``(segments of the usable songs, skipped files)``.

    A song is skipped when a file is unusable (its mixture must also be non-silent) or when its
    stems have fewer than ``min_frames`` frames in common. Nothing is logged (callers report once).
    """
    mixtures = [s["mixture"] for s in songs]
    stems = [s[k] for s in songs for k in ("instrumental", "vocals") if k in s]
    _, skipped = cache.build(mixtures, min_frames, require_signal=True, desc=desc, report=False)
    skipped += cache.build(stems, min_frames, desc=desc, report=False)[1]
    bad = {p for p, _ in skipped}
    segments = []
    for song in songs:
        if any(p in bad for k, p in song.items() if k != "name"):
            continue
        segment = song_segment(song, cache)
        if segment.frames < min_frames:
            skipped.append((song["mixture"], f"stems share only {segment.frames} frames, a crop needs {min_frames}"))
        else:
            segments.append(segment)
    return segments, skipped


def stem_segments(instrumentals: Sequence[Path], vocals: Sequence[Path], cache: SpectrogramCache, seed: int = 0,
                  vocal_gain_db: tuple[float, float] = (-6.0, 3.0)) -> list[Segment]:
    """Fixed mixes of held-out stems: instrumental ``k`` + vocal ``k mod N`` at a gain drawn from ``(seed, k)``."""
    segments = []
    for k, inst in enumerate(instrumentals):
        vocal = vocals[k % len(vocals)]
        gain = float(10 ** (item_rng(seed, 0, k).uniform(*vocal_gain_db) / 20))
        frames = min(cache.info(inst)["shape"][-1], cache.info(vocal)["shape"][-1])
        segments.append(Segment(f"{Path(inst).stem}+{Path(vocal).stem}", ((inst, 1.0, 0), (vocal, gain, 0)),
                                ((inst, 1.0, 0),), frames))
    return segments


class ValidationCrops(Dataset):
    """Fixed, non-overlapping ``cropsize`` crops of aligned songs ``folder/<song>/{mixture,instrumental}``
    (or ``mixture`` and ``vocals``; a MUSDB split folder works).

    Items are ``{"mixture", "target"}`` ``[C, F, cropsize]``, normalised like voxaug items and read
    from the cache on demand: magnitudes, or complex spectra after :meth:`complex`. The crop list is
    built once; :meth:`at` gives the same audio cut at another crop size, :meth:`from_stems` fixed
    mixes of held-out stems. Unusable songs are skipped (``.skipped``) with one warning.
    """

    def __init__(self, folder: str | Path, cache: SpectrogramCache, cropsize: int = 256):
        segments, skipped = build_songs(cache, scan_songs(folder), cropsize, desc="caching validation songs")
        report_skipped(skipped, len(skipped) + len(segments))
        if not segments:
            raise DataError(f"{folder}: no usable song is at least {cropsize} frames long")
        self._setup(cache, segments, cropsize, skipped)

    @classmethod
    def from_segments(cls, segments: list[Segment], cache: SpectrogramCache, cropsize: int = 256,
                      skipped: list[tuple[Path, str]] | None = None) -> ValidationCrops:
        self = cls.__new__(cls)
        usable = [s for s in segments if s.frames >= cropsize]
        if not usable:
            raise DataError(f"no validation segment is at least {cropsize} frames long")
        self._setup(cache, usable, cropsize, skipped or [])
        return self

    @classmethod
    def from_stems(cls, instrumentals: Sequence[Path], vocals: Sequence[Path], cache: SpectrogramCache,
                   cropsize: int = 256, seed: int = 0,
                   vocal_gain_db: tuple[float, float] = (-6.0, 3.0)) -> ValidationCrops:
        """Fixed mixes of held-out stems (e.g. the valid side of a split); see :func:`stem_segments`."""
        instrumentals, bad_inst = cache.build(list(instrumentals), cropsize, True, "caching instrumentals", False)
        vocals, bad_voc = cache.build(list(vocals), cropsize, True, "caching vocals", report=False)
        report_skipped(bad_inst + bad_voc, len(instrumentals) + len(vocals) + len(bad_inst) + len(bad_voc))
        if not instrumentals or not vocals:
            raise DataError("validation needs at least one usable instrumental and one usable vocal")
        return cls.from_segments(stem_segments(instrumentals, vocals, cache, seed, vocal_gain_db), cache, cropsize,
                                 bad_inst + bad_voc)

    def _setup(self, cache: SpectrogramCache, segments: list[Segment], cropsize: int, skipped: list) -> None:
        self.cache, self.segments, self.cropsize, self.skipped = cache, segments, cropsize, skipped
        self.windows = [(s, start) for s in segments for start in range(0, s.frames - cropsize + 1, cropsize)]
        self.is_complex = False

    def at(self, cropsize: int) -> ValidationCrops:
        """The same segments cut into crops of ``cropsize`` frames."""
        crops = type(self).from_segments(self.segments, self.cache, cropsize, self.skipped)
        crops.is_complex = self.is_complex
        return crops

    def complex(self) -> ValidationCrops:
        """The same crops as complex spectra (:func:`spectra`), for complex-mask models."""
        crops = self.at(self.cropsize)
        crops.is_complex = True
        return crops

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        segment, start = self.windows[index]
        terms = segment.terms(self.cache, start, self.cropsize)
        mixture, target = spectra(*terms) if self.is_complex else magnitudes(*terms)
        return {"mixture": torch.from_numpy(mixture), "target": torch.from_numpy(target)}
