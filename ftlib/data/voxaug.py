"""voxaug: training mixtures made on the fly from unaligned instrumental and vocal stems.

Item ``i`` of epoch ``e`` is drawn from its own generator seeded by ``(seed, e, i)`` (see
:func:`~ftlib.data.augment.item_rng`), so items are identical whatever the DataLoader worker or
order that produces them, and an epoch is reproducible from ``(seed, epoch)``; a run resumed in
the middle of an epoch gets the very items it would have seen.

Each item: a random crop of instrumental ``i mod N`` plus a crop of a vocal at a random gain, mixed
in the complex STFT domain. The vocal is random (``vocal_order="random"``) or, voxaug2 style,
vocal ``(e + i) mod M`` (``"cycle"``): over M epochs every instrumental meets every vocal. Options
(all off by default): two-vocal blends, vocal channel drop, vocal-free items, real pairs at a rate,
mixup and the per-stem augmentations of :class:`~ftlib.data.augment.AugmentConfig`.

Returns magnitudes without the Nyquist bin, ``mixture`` and ``target`` ``[C, F, T]`` float32 (plus
``vocals`` with ``return_vocals``), all divided by the mixture crop's maximum, and with
``return_phase`` the mixture's ``phase``; with ``return_complex`` the complex spectra instead
(:func:`~ftlib.data.validation.spectra`, for complex-mask models). Magnitude targets are clamped to at most the mixture magnitude (so a
mask in [0, 1] can reach them). Stems are lists of ``(gain, crop)`` terms whose crops stay lazy
slices of the cache until
:func:`~ftlib.data.validation.magnitudes` reads each of them once, block by block.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Collection
from pathlib import Path

import numpy as np
import torch

from ftlib.data.augment import AugmentConfig, EpochDataset, StemCrops, chance, item_rng
from ftlib.data.cache import SpectrogramCache, report_skipped
from ftlib.data.sources import scan_pairs, scan_stems
from ftlib.data.validation import Crop, Gain, build_songs, magnitudes, spectra
from ftlib.errors import DataError

Terms = list[tuple[Gain, Crop]]  # a stem: sum of gain * complex crop [C, F, T]

__all__ = ["VoxAugConfig", "VoxAugDataset"]


@dataclasses.dataclass
class VoxAugConfig(AugmentConfig):
    """Args:
        cropsize: frames per training item.
        vocal_gain_db: range of the random gain applied to the vocal stem, in dB.
        items_per_epoch: items in one epoch (0: one per instrumental crop of ``cropsize``).
        seed: base seed of the per-item generators.
        vocal_order: "random" (a random vocal per item) or "cycle" (item i of epoch e gets vocal
            (e + i) mod M, voxaug2).
        no_vocal_prob: probability of a vocal-free item (mixture = instrumental).
        two_vocal_prob: probability of adding a second random vocal (own crop and gain).
        channel_drop_prob: probability of silencing one channel of a vocal.
        pair_prob: probability that an item is a crop of a real aligned pair instead of a voxaug mix.
        pairs_folder: folder of the pairs (``<song>/{mixture,instrumental[,vocals]}``; a MUSDB split
            folder works), relative to the dataset root unless absolute.
        return_vocals: also return the vocal magnitude as ``"vocals"``.
        return_phase: also return the mixture's phase (radians, ``[C, F, T]``) as ``"phase"``, for
            losses on waveforms resynthesised with it (``SeparationLossConfig.stft``).
        return_complex: return complex spectra (complex64) instead of magnitudes, unclamped.
        (+ the augmentation fields of AugmentConfig, keyword-only.)
    """

    cropsize: int = 256
    vocal_gain_db: tuple[float, float] = (-6.0, 3.0)
    items_per_epoch: int = 0
    seed: int = 0
    vocal_order: str = "random"
    no_vocal_prob: float = 0.0
    two_vocal_prob: float = 0.0
    channel_drop_prob: float = 0.0
    pair_prob: float = 0.0
    pairs_folder: str = "pairs"
    return_vocals: bool = False
    return_phase: bool = False
    return_complex: bool = False

    PRESETS = {"tiny": dict(cropsize=16, items_per_epoch=8)}

    def validate(self) -> None:
        super().validate()
        self.require(self.cropsize >= 1, "cropsize must be >= 1")
        self.require(self.items_per_epoch >= 0, "items_per_epoch must be >= 0")
        self.require(self.vocal_order in ("random", "cycle"), "vocal_order must be 'random' or 'cycle'")


class VoxAugDataset(EpochDataset):
    """Random instrumental + vocal mixtures from a stem folder (see module docstring).

    ``files`` (e.g. the train side of a :mod:`~ftlib.data.splits` split) restricts the stems used.
    Unusable files are skipped with one warning and listed in ``.skipped``.
    """

    def __init__(self, root: str | Path, cache: SpectrogramCache, config: VoxAugConfig | None = None,
                 files: Collection[str | Path] | None = None):
        self.config = cfg = config or VoxAugConfig()
        root = Path(root)
        stems = scan_stems(root, keep=files)
        self.crops = StemCrops(cache, cfg, cfg.cropsize)
        self.instrumentals, bad_inst = self.crops.build(stems.instrumentals, "caching instrumentals")
        self.vocals, bad_voc = self.crops.build(stems.vocals, "caching vocals")
        self.pairs, bad_pairs, num_pairs = [], [], 0
        if cfg.pair_prob > 0:
            songs = scan_pairs(root / cfg.pairs_folder)  # an absolute pairs_folder replaces root
            self.pairs, bad_pairs = build_songs(cache, songs, cfg.cropsize, desc="caching pairs")
            num_pairs = sum(len(s) - 1 for s in songs)
        self.skipped = bad_inst + bad_voc + bad_pairs
        report_skipped(self.skipped, len(stems.instrumentals) + len(stems.vocals) + num_pairs)
        for name, usable, found in (("instrumentals", self.instrumentals, stems.instrumentals),
                                    ("vocals", self.vocals, stems.vocals)):
            if not usable:
                raise DataError(f"{root / name}: none of the {len(found)} files is usable "
                                f"(each needs >= {cfg.cropsize} frames of non-silent audio); see the warnings above")
        if cfg.pair_prob > 0 and not self.pairs:
            raise DataError(f"{root / cfg.pairs_folder}: no usable pair (each needs >= {cfg.cropsize} frames)")
        self.cache = cache
        crops = sum(self.crops.frames(p) // cfg.cropsize for p in self.instrumentals)
        self.length = cfg.items_per_epoch or max(1, crops)

    def __len__(self) -> int:
        return self.length

    def vocal_index(self, epoch: int, index: int, rng: np.random.Generator) -> int:
        """The vocal of item ``index`` in ``epoch``: ``(epoch + index) mod M`` when cycling, else random."""
        if self.config.vocal_order == "cycle":
            return (epoch + index) % len(self.vocals)
        return int(rng.integers(len(self.vocals)))

    def item(self, epoch: int, index: int) -> dict[str, torch.Tensor]:
        cfg = self.config
        rng = item_rng(cfg.seed, epoch, index)
        if chance(rng, cfg.pair_prob):
            segment = self.pairs[int(rng.integers(len(self.pairs)))]
            mix, inst = segment.terms(self.cache, int(rng.integers(0, segment.frames - cfg.cropsize + 1)), cfg.cropsize)
            return self._item(mix, inst, mix + [(-gain, crop) for gain, crop in inst])
        inst, vocal = self._stems(epoch, index, rng)
        if chance(rng, cfg.mixup_prob):
            other = int(rng.integers(len(self)))
            other_inst, other_vocal = self._stems(epoch, other, item_rng(cfg.seed, epoch, index, 1))
            weight = np.float32(rng.uniform(*cfg.mixup_weight))
            inst, vocal = _blend(inst, other_inst, weight), _blend(vocal, other_vocal, weight)
        return self._item(inst + vocal, inst, vocal)

    def _stems(self, epoch: int, index: int, rng: np.random.Generator) -> tuple[Terms, Terms]:
        """``(instrumental, vocal)`` terms of one voxaug item."""
        cfg = self.config
        inst = [(np.float32(1), self._crop(self.instrumentals[index % len(self.instrumentals)], rng, "instrumental"))]
        if chance(rng, cfg.no_vocal_prob):
            return inst, []
        vocal = [self._vocal(self.vocal_index(epoch, index, rng), rng)]
        if chance(rng, cfg.two_vocal_prob):
            vocal.append(self._vocal(int(rng.integers(len(self.vocals))), rng))
        return inst, vocal

    def _crop(self, path: Path, rng: np.random.Generator, kind: str) -> Crop:
        """A crop of a stem: a lazy slice of its cache entry when no augmentation transforms it
        (the same draws as ``StemCrops.crop``, which returns decoded arrays), else ``StemCrops.crop``."""
        cfg = self.config
        if self.crops.waveform or max(cfg.eq_prob, cfg.width_prob, cfg.swap_prob, cfg.pitch_prob, cfg.stretch_prob) > 0:
            return self.crops.crop(path, rng, kind)
        data = self.cache.get(path)
        start = int(rng.integers(0, data.shape[-1] - cfg.cropsize + 1))
        return data[:, :-1, start:start + cfg.cropsize]

    def _vocal(self, which: int, rng: np.random.Generator) -> tuple[Gain, Crop]:
        cfg = self.config
        vocal = self._crop(self.vocals[which], rng, "vocal")
        gain = np.float32(10 ** (rng.uniform(*cfg.vocal_gain_db) / 20))
        if chance(rng, cfg.channel_drop_prob):
            gain = np.full(vocal.shape[0], gain)
            gain[int(rng.integers(vocal.shape[0]))] = 0
        return gain, vocal

    def _item(self, mixture: Terms, target: Terms, vocals: Terms) -> dict[str, torch.Tensor]:
        """Normalised magnitudes of the mixture, target and (with ``return_vocals``) vocal sums, and
        (with ``return_phase``) the mixture's phase."""
        stems = (target, vocals) if self.config.return_vocals else (target,)
        values = (spectra if self.config.return_complex else magnitudes)(mixture, *stems)
        item = dict(zip(("mixture", "target", "vocals"), map(torch.from_numpy, values)))
        if self.config.return_phase:
            total = sum(np.reshape(gain, (-1, 1, 1)) * np.asarray(crop, np.complex64) for gain, crop in mixture)
            item["phase"] = torch.from_numpy(np.angle(total).astype(np.float32))
        return item


def _blend(terms: Terms, other: Terms, weight: np.float32) -> Terms:
    """``(1 - weight) * terms + weight * other``."""
    return [(gain * (1 - weight), crop) for gain, crop in terms] + [(gain * weight, crop) for gain, crop in other]
