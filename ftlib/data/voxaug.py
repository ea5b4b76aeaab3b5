"""voxaug: training mixtures made on the fly from unaligned instrumental and vocal stems.

Item ``i`` of epoch ``e`` is drawn from its own generator seeded by ``(seed, e, i)``, so items are
identical whatever the DataLoader worker or order that produces them, no two workers share a
random stream, and an epoch is reproducible from ``(seed, epoch)``.

Each item: a random crop of instrumental ``i mod N`` plus a random crop of a random vocal at a
random gain, mixed in the complex STFT domain. Returns magnitudes without the Nyquist bin,
``mixture`` and ``target`` ``[C, F, T]`` float32, both divided by the mixture crop's maximum;
``target`` is the instrumental magnitude clamped to at most the mixture magnitude (so a mask in
[0, 1] can reach it).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ftlib.config import Config
from ftlib.data.cache import SpectrogramCache
from ftlib.data.sources import scan_songs, scan_stems
from ftlib.errors import DataError

EPS = 1e-8


@dataclasses.dataclass
class VoxAugConfig(Config):
    """Args:
        cropsize: frames per training item.
        vocal_gain_db: range of the random gain applied to the vocal stem, in dB.
        items_per_epoch: items in one epoch (0: one per instrumental crop of ``cropsize``).
        seed: base seed of the per-item generators.
    """

    cropsize: int = 256
    vocal_gain_db: tuple[float, float] = (-6.0, 3.0)
    items_per_epoch: int = 0
    seed: int = 0

    PRESETS = {"tiny": dict(cropsize=16, items_per_epoch=8)}

    def validate(self) -> None:
        self.require(self.cropsize >= 1, "cropsize must be >= 1")
        self.require(self.vocal_gain_db[0] <= self.vocal_gain_db[1], "vocal_gain_db must be (low, high)")
        self.require(self.items_per_epoch >= 0, "items_per_epoch must be >= 0")


def normalise(mixture: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Divide the mixture and every other magnitude by the same normaliser: the mixture's maximum."""
    scale = 1.0 / (float(mixture.max()) + EPS)
    return [(x * scale).astype(np.float32) for x in (mixture, *others)]


def random_crop(stft: np.ndarray, cropsize: int, rng: np.random.Generator) -> np.ndarray:
    """``[C, F, T]`` -> ``[C, F - 1, cropsize]`` (Nyquist dropped) at a random start."""
    start = int(rng.integers(0, stft.shape[-1] - cropsize + 1))
    return np.asarray(stft[:, :-1, start:start + cropsize])


class VoxAugDataset(Dataset):
    """Random instrumental + vocal mixtures from a stem folder (see module docstring)."""

    epoch_aware = True  # items take (epoch, index)

    def __init__(self, root: str | Path, cache: SpectrogramCache, config: VoxAugConfig | None = None):
        self.config = cfg = config or VoxAugConfig()
        stems = scan_stems(root)
        crop = cfg.cropsize
        self.instrumentals, bad_inst = cache.build(stems.instrumentals, crop, desc="caching instrumentals")
        self.vocals, bad_voc = cache.build(stems.vocals, crop, require_signal=True, desc="caching vocals")
        self.skipped = bad_inst + bad_voc
        for name, usable, found in (("instrumentals", self.instrumentals, stems.instrumentals),
                                    ("vocals", self.vocals, stems.vocals)):
            if not usable:
                raise DataError(f"{Path(root) / name}: none of the {len(found)} files is usable "
                                f"(each needs >= {crop} frames of non-silent audio); see the warnings above")
        self.cache = cache
        self.epoch = 0
        crops = sum(cache.get(p).shape[-1] // crop for p in self.instrumentals)
        self.length = cfg.items_per_epoch or max(1, crops)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        """``index`` or ``(epoch, index)`` (as the trainer's sampler passes it)."""
        cfg = self.config
        epoch, index = index if isinstance(index, tuple) else (self.epoch, index)
        rng = np.random.default_rng([cfg.seed, epoch, index])
        inst = random_crop(self.cache.get(self.instrumentals[index % len(self.instrumentals)]), cfg.cropsize, rng)
        vocal = random_crop(self.cache.get(self.vocals[int(rng.integers(len(self.vocals)))]), cfg.cropsize, rng)
        gain = 10 ** (rng.uniform(*cfg.vocal_gain_db) / 20)
        mix = np.abs(inst + gain * vocal)
        mixture, target = normalise(mix, np.minimum(np.abs(inst), mix))
        return {"mixture": torch.from_numpy(mixture), "target": torch.from_numpy(target)}


class ValidationCrops(Dataset):
    """Fixed, non-overlapping ``cropsize`` crops of aligned songs ``folder/<song>/{mixture,instrumental}``.

    Built once from the cache; items are ``{"mixture", "target"}`` normalised like voxaug items.
    """

    def __init__(self, folder: str | Path, cache: SpectrogramCache, cropsize: int = 256):
        self.items = []
        for song in scan_songs(folder):
            mix = cache.get(song["mixture"])
            inst = cache.get(song["instrumental"]) if "instrumental" in song else mix - cache.get(song["vocals"])
            for start in range(0, mix.shape[-1] - cropsize + 1, cropsize):
                window = slice(start, start + cropsize)
                m = np.abs(np.asarray(mix[:, :-1, window]))
                mixture, target = normalise(m, np.minimum(np.abs(np.asarray(inst[:, :-1, window])), m))
                self.items.append({"mixture": torch.from_numpy(mixture), "target": torch.from_numpy(target)})
        if not self.items:
            raise DataError(f"{folder}: no song is at least {cropsize} frames long")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.items[index]
