"""Random log-mel chunks from pooled folders of music (mel expansion), and fixed-size log-mel
images of audio files (the diffusion idea model).

Each file is decoded once (mono, at the mel sample rate) into a :class:`MelCache` entry: float32
``[n_mels, T]`` in a memory-mapped ``.npy``, keyed by the file's identity, content and the
:class:`~ftlib.mel.MelConfig`, so a changed file or setting builds a new entry.

Item ``i`` of epoch ``e`` is drawn from its own generator seeded by ``(seed, e, i)``: a random file
of the pool, a random length (``min_frames``..``frames`` in steps of ``multiple``) and a random
start. Items are ``{"mel": [1, n_mels, frames] float32, "frames": int64}``; a shorter chunk is
padded at the end with the log of silence (``log(log_floor)``) and ``frames`` says how much is real.

:class:`MelIdeaDataset` squeezes ``crop_seconds`` of audio into a log-mel of ``width`` frames
(:func:`ftlib.mel.resize_width`), scaled into [-1, 1] against its own peak over
``dynamic_range_db``; :func:`x0_to_mel` maps a sampled image back to a log-mel peaking at 0.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ftlib import audio
from ftlib.config import Config
from ftlib.data.augment import EpochDataset, item_rng
from ftlib.data.cache import AudioCache, report_skipped
from ftlib.data.sources import audio_files
from ftlib.errors import AudioError, DataError
from ftlib.mel import MelConfig, MelSpectrogram, resize_width
from ftlib.paths import cache_dir

__all__ = ["FixedChunks", "IdeaConfig", "MelCache", "MelChunkConfig", "MelChunkDataset", "MelIdeaDataset", "mel_to_x0",
           "synthetic_corpus", "x0_to_mel"]


class MelCache(AudioCache):
    """``cache.get(path) -> np.ndarray``: read-only memmap, float32 log-mel ``[n_mels, T]``.

    Lives in ``cache_dir() / "mel"`` unless ``root`` is given.
    """

    kind = "mel"

    def __init__(self, mel: MelConfig | None = None, root: str | Path | None = None, verify: bool = True,
                 workers: int | None = None):
        self.mel = MelSpectrogram(mel)
        super().__init__(root if root is not None else cache_dir() / "mel", self.mel.config.sample_rate, verify, workers)

    def settings(self) -> dict:
        return self.mel.config.to_dict()

    def compute(self, path: Path) -> np.ndarray:
        wave = audio.load(path, self.sample_rate, channels=1)
        with torch.no_grad():
            return self.mel(torch.from_numpy(wave))[0, 0].numpy()


@dataclasses.dataclass
class MelChunkConfig(Config):
    """Args:
        frames: mel frames per item (the longest item when ``min_frames`` > 0).
        min_frames: shortest item; 0 gives every item ``frames`` frames.
        multiple: item lengths are multiples of this (e.g. the model's fold size).
        items_per_epoch: items in one epoch (0: one per ``frames``-long chunk of the pool).
        seed: base seed of the per-item generators.
        recursive: also scan sub-folders of each folder.
    """

    frames: int = 256
    min_frames: int = 0
    multiple: int = 1
    items_per_epoch: int = 0
    seed: int = 0
    recursive: bool = True

    PRESETS = {"tiny": dict(frames=32, items_per_epoch=8)}

    def validate(self) -> None:
        self.require(self.frames >= 1, f"frames must be >= 1, got {self.frames}")
        self.require(self.multiple >= 1, f"multiple must be >= 1, got {self.multiple}")
        self.require(0 <= self.min_frames <= self.frames, f"min_frames must be in [0, frames={self.frames}], got {self.min_frames}")
        self.require(self.items_per_epoch >= 0, f"items_per_epoch must be >= 0, got {self.items_per_epoch}")
        self.require(bool(self.lengths()), f"no length in [{self.min_frames or self.frames}, {self.frames}] is a "
                                           f"multiple of {self.multiple}; change min_frames, frames or multiple")

    def lengths(self) -> list[int]:
        """Every item length that can be drawn."""
        low = self.min_frames or self.frames
        return [n for n in range(math.ceil(low / self.multiple) * self.multiple, self.frames + 1, self.multiple)]


class FixedChunks(Dataset):
    """A fixed list of items (validation chunks), the same every time it is read."""

    def __init__(self, items: list[dict[str, torch.Tensor]]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.items[index]


class MelChunkDataset(EpochDataset):
    """Random log-mel chunks from one or several pooled ``sources`` (see module docstring): folders,
    scanned for audio, or single audio files.

    Unusable files (unreadable, empty, shorter than ``frames``) are skipped with one warning and
    listed in ``.skipped``; a folder without any usable file raises DataError, as does a pool
    left empty.
    """

    def __init__(self, sources: str | Path | Sequence[str | Path], mel: MelConfig | None = None,
                 config: MelChunkConfig | None = None, cache: MelCache | None = None):
        self.config = cfg = config or MelChunkConfig()
        self.cache = cache or MelCache(mel)
        self.floor = float(np.log(self.cache.mel.config.log_floor))
        sources = [Path(sources)] if isinstance(sources, (str, Path)) else [Path(s) for s in sources]
        found = {s: [s] if s.is_file() else audio_files(s, cfg.recursive) for s in sources}
        paths = list(dict.fromkeys(p for files in found.values() for p in files))
        usable, self.skipped = self.cache.build(paths, min_frames=cfg.frames, desc="caching mel", report=False)
        report_skipped(self.skipped, len(paths))
        kept = set(usable)
        for source, files in found.items():
            if source.is_dir() and not kept.intersection(files):
                raise DataError(f"{source}: none of its {len(files)} audio files is usable (each needs >= {cfg.frames} "
                                f"mel frames of decodable audio); add audio there or lower the chunk length")
        if not usable:
            raise DataError(f"no usable audio among {', '.join(map(str, sources))} (each file needs >= {cfg.frames} "
                            f"mel frames of decodable audio)")
        self.files = usable
        self.file_frames = [self.cache.info(p)["shape"][-1] for p in self.files]
        self.lengths = cfg.lengths()
        self.length = cfg.items_per_epoch or max(1, sum(n // cfg.frames for n in self.file_frames))

    def __len__(self) -> int:
        return self.length

    def item(self, epoch: int, index: int) -> dict[str, torch.Tensor]:
        return self.draw(item_rng(self.config.seed, epoch, index))

    def draw(self, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """One chunk chosen by ``rng``: a random file, length and start."""
        which = int(rng.integers(len(self.files)))
        length = self.lengths[int(rng.integers(len(self.lengths)))]
        start = int(rng.integers(0, self.file_frames[which] - length + 1))
        entry = self.cache.get(self.files[which])
        mel = np.full((1, entry.shape[0], self.config.frames), self.floor, dtype=np.float32)
        mel[0, :, :length] = entry[:, start:start + length]
        return {"mel": torch.from_numpy(mel), "frames": torch.tensor(length, dtype=torch.int64)}

    def fixed(self, count: int, seed: int = 0) -> FixedChunks:
        """``count`` chunks fixed by ``seed`` (validation): the same items on every call and epoch."""
        return FixedChunks([self.draw(np.random.default_rng([seed, 0x7E1, i])) for i in range(count)])


def synthetic_corpus(config=None) -> dict[str, list[Path]]:
    """The default corpus: synthetic music (:mod:`ftlib.data.synth`, generated once into the cache).

    Returns ``{"train": [instrumentals/, vocals/], "valid": [valid/song_*/mixture.wav, ...]}``: the
    training stems pooled, and the full mixes of the held-out songs. ``config`` is a ``SynthConfig``.
    """
    from ftlib.data import synth

    config = config or synth.SynthConfig()
    root = synth.generate(synth.dataset_dir(config), config)
    return {"train": [root / "instrumentals", root / "vocals"], "valid": sorted(root.glob("valid/*/mixture.wav"))}


# ------------------------------------------------------------------- images of the idea model

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


class MelIdeaDataset(EpochDataset):
    """Random fixed-size log-mel images of audio files: items ``{"x0": [1, n_mels, width]}`` in [-1, 1].

    Every file's log-mel is computed once (audio resampled to the mel rate, channels averaged);
    item ``index`` of ``epoch`` crops a random file at a random position drawn from
    ``item_rng(seed, epoch, index)``. Files shorter than a crop are skipped with a warning.
    """

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

    def __len__(self) -> int:
        return self.config.items_per_epoch

    def item(self, epoch: int, index: int) -> dict[str, torch.Tensor]:
        rng = item_rng(self.config.seed, epoch, index)
        mel = self.mels[int(rng.integers(len(self.mels)))]
        start = int(rng.integers(0, mel.shape[-1] - self.frames + 1))
        image = resize_width(mel[None, ..., start:start + self.frames], self.config.width)
        return {"x0": mel_to_x0(image, self.config)[0]}
