"""Aligned segments (real songs, real pairs, fixed stem mixes) and the fixed validation set.

A :class:`Segment` names where its mixture and instrumental come from as sums of cached STFTs
(``mixture - vocals`` for a MUSDB song, ``instrumental + gain * vocal`` for a fixed mix), so a crop
reads only its own frames from the memory-mapped cache and nothing is held in memory.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ftlib.data.augment import item_rng, normalise
from ftlib.data.cache import SpectrogramCache, report_skipped
from ftlib.data.sources import scan_songs
from ftlib.errors import DataError

Term = tuple[Path, float, int]  # (cached file, gain, first frame)


@dataclasses.dataclass(frozen=True)
class Segment:
    """An aligned excerpt: ``mixture`` and ``instrumental`` are sums of ``gain * STFT(file)[offset:]``."""

    name: str
    mixture: tuple[Term, ...]
    instrumental: tuple[Term, ...]
    frames: int

    def crop(self, cache: SpectrogramCache, start: int, cropsize: int) -> tuple[np.ndarray, np.ndarray]:
        """Complex ``(mixture, instrumental)`` ``[C, F, cropsize]`` (Nyquist dropped) from frame ``start``."""
        def render(terms):
            return sum(gain * np.asarray(cache.get(path)[:, :-1, offset + start:offset + start + cropsize])
                       for path, gain, offset in terms)

        return render(self.mixture), render(self.instrumental)


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
    from the cache on demand. The crop list is built once; :meth:`at` gives the same audio cut at
    another crop size, :meth:`from_stems` fixed mixes of held-out stems. Unusable songs are skipped
    (``.skipped``) with one warning.
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

    def at(self, cropsize: int) -> ValidationCrops:
        """The same segments cut into crops of ``cropsize`` frames."""
        return type(self).from_segments(self.segments, self.cache, cropsize, self.skipped)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        segment, start = self.windows[index]
        mix, inst = segment.crop(self.cache, start, self.cropsize)
        magnitude = np.abs(mix)
        mixture, target = normalise(magnitude, np.minimum(np.abs(inst), magnitude))
        return {"mixture": torch.from_numpy(mixture), "target": torch.from_numpy(target)}
