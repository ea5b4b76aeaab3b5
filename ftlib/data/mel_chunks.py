"""Random log-mel chunks from pooled folders of music, for mel-expansion training.

Each file is decoded once (mono, at the mel sample rate) into a :class:`MelCache` entry: float32
``[n_mels, T]`` in a memory-mapped ``.npy``, keyed by the file's identity, content and the
:class:`~ftlib.mel.MelConfig`, so a changed file or setting builds a new entry.

Item ``i`` of epoch ``e`` is drawn from its own generator seeded by ``(seed, e, i)``: a random file
of the pool, a random length (``min_frames``..``frames`` in steps of ``multiple``) and a random
start. Items are ``{"mel": [1, n_mels, frames] float32, "frames": int64}``; a shorter chunk is
padded at the end with the log of silence (``log(log_floor)``) and ``frames`` says how much is real.
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
from ftlib.data.augment import item_rng
from ftlib.data.cache import AudioCache, report_skipped
from ftlib.data.sources import audio_files
from ftlib.errors import DataError
from ftlib.mel import MelConfig, MelSpectrogram
from ftlib.paths import cache_dir

__all__ = ["MelCache", "MelChunkConfig", "MelChunkDataset", "FixedChunks", "synthetic_corpus"]


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


class MelChunkDataset(Dataset):
    """Random log-mel chunks from one or several pooled ``sources`` (see module docstring): folders,
    scanned for audio, or single audio files.

    Unusable files (unreadable, empty, shorter than ``frames``) are skipped with one warning and
    listed in ``.skipped``; a folder without any usable file raises DataError, as does a pool
    left empty.
    """

    epoch_aware = True  # items take (epoch, index)

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
        self.epoch = 0
        self.length = cfg.items_per_epoch or max(1, sum(n // cfg.frames for n in self.file_frames))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        """``index`` or ``(epoch, index)`` (as the trainer's sampler passes it)."""
        epoch, index = index if isinstance(index, tuple) else (self.epoch, index)
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
