"""Masked pretraining on unlabeled music: reconstruct hidden frames of a magnitude spectrogram.

Item (all ``[C, F, T]`` float32 unless said, divided by the clean crop's maximum so values lie in [0, 1])::

    "mixture":    the input: the clean magnitude with the selected frames masked
    "target":     the clean magnitude
    "token_mask": bool [T], True on every selected frame; the loss covers these frames only
                  (batched: [B, T], broadcast as token_mask[:, None, None, :])

``masking="token"`` (BERT style): the crop is cut into tokens of ``token_frames`` frames and
``mask_rate`` of them (at least one) are selected; of those, 80 % have their input set to 1.0,
10 % are replaced by another token of the crop and 10 % are left unchanged (``bert_split``).
Since 1.0 is the crop's maximum, a model predicting a multiplicative mask in [0, 1] can rebuild the
clean magnitude of a masked token exactly. ``masking="span"`` (the 2023 variant): random spans of
``span_frames`` frames cover about ``mask_rate`` of the crop, each filled by a random mode of
``span_fill``: "one", "zero", "noise" (uniform [0, 1]), or the span's "mean", "min" or "max".
"""
from __future__ import annotations

import dataclasses
from collections.abc import Collection
from pathlib import Path

import numpy as np
import torch

from ftlib.data.augment import AugmentConfig, EpochDataset, StemCrops, chance, divide_by_mixture_peak, item_rng
from ftlib.data.cache import SpectrogramCache, report_skipped
from ftlib.data.sources import keep_only, scan_unlabeled
from ftlib.errors import DataError

FILLS = ("one", "zero", "noise", "mean", "min", "max")
CONSTANT_FILLS = {"one": 1.0, "zero": 0.0}


@dataclasses.dataclass
class PretrainConfig(AugmentConfig):
    """Args:
        cropsize: frames per item; a multiple of ``token_frames`` with ``masking="token"``.
        token_frames: frames per token.
        mask_rate: fraction of tokens (or, for spans, of frames) selected per item.
        bert_split: shares of selected tokens set to 1.0 / replaced by another token / unchanged.
        masking: "token" (BERT style) or "span" (random spans, several fill modes).
        span_frames: (shortest, longest) span in frames.
        span_fill: fill modes drawn per span, from "one", "zero", "noise", "mean", "min", "max".
        folders: sub-folders of the dataset root scanned (recursively) for music.
        items_per_epoch: items in one epoch (0: one per ``cropsize`` crop of every file).
        seed: base seed of the per-item generators.
        (+ the augmentation fields of AugmentConfig, keyword-only; mixup blends two files.)
    """

    cropsize: int = 256
    token_frames: int = 64
    mask_rate: float = 0.2
    bert_split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    masking: str = "token"
    span_frames: tuple[int, int] = (8, 64)
    span_fill: tuple[str, ...] = FILLS
    folders: tuple[str, ...] = ("unlabeled",)
    items_per_epoch: int = 0
    seed: int = 0

    PRESETS = {"tiny": dict(cropsize=16, token_frames=4, span_frames=(1, 4), items_per_epoch=8)}

    def validate(self) -> None:
        super().validate()
        self.require(self.masking in ("token", "span"), "masking must be 'token' or 'span'")
        self.require(1 <= self.token_frames <= self.cropsize, "need 1 <= token_frames <= cropsize")
        self.require(self.masking == "span" or self.cropsize % self.token_frames == 0,
                     f"cropsize {self.cropsize} must be a multiple of token_frames {self.token_frames}")
        self.require(0 < self.mask_rate <= 1, "mask_rate must be in (0, 1]")
        self.require(len(self.bert_split) == 3 and min(self.bert_split) >= 0 and abs(sum(self.bert_split) - 1) < 1e-6,
                     "bert_split must be three shares summing to 1")
        self.require(self.span_frames[0] >= 1, "span_frames must be >= 1")
        self.require(len(self.span_fill) > 0 and set(self.span_fill) <= set(FILLS), f"span_fill must be among {FILLS}")
        self.require(len(self.folders) > 0, "folders must name at least one folder")


def mask_tokens(clean: np.ndarray, rng: np.random.Generator, token_frames: int, rate: float,
                split: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """BERT-style masking of ``[C, F, T]`` in [0, 1]: ``(input, frame mask [T] bool)``."""
    tokens = clean.shape[-1] // token_frames
    chosen = rng.choice(tokens, max(1, round(rate * tokens)), replace=False)
    # per chosen token, 0: input set to 1.0, 1: replaced by another token, 2: unchanged
    actions = rng.choice(3, len(chosen), p=np.asarray(split) / sum(split))
    masked, mask = clean.copy(), np.zeros(clean.shape[-1], dtype=bool)
    for token, action in zip(chosen, actions):
        frames = slice(token * token_frames, (token + 1) * token_frames)
        mask[frames] = True
        if action == 0:
            masked[..., frames] = 1.0
        elif action == 1 and tokens > 1:
            other = (token + rng.integers(1, tokens)) % tokens
            masked[..., frames] = clean[..., other * token_frames:(other + 1) * token_frames]
    return masked, mask


def mask_spans(clean: np.ndarray, rng: np.random.Generator, rate: float, span_frames: tuple[int, int],
               fills: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Span masking of ``[C, F, T]`` in [0, 1] until ~``rate`` of the frames are covered: ``(input, mask [T])``."""
    num_frames = clean.shape[-1]
    masked, mask = clean.copy(), np.zeros(num_frames, dtype=bool)
    wanted = max(1, round(rate * num_frames))
    for _ in range(4 * num_frames):  # bounded: spans may overlap
        if mask.sum() >= wanted:
            break
        length = int(min(num_frames, rng.integers(span_frames[0], span_frames[1] + 1)))
        start = int(rng.integers(0, num_frames - length + 1))
        span, fill = clean[..., start:start + length], fills[rng.integers(len(fills))]
        if fill == "noise":
            value = rng.uniform(size=span.shape).astype(np.float32)
        else:
            value = CONSTANT_FILLS[fill] if fill in CONSTANT_FILLS else getattr(span, fill)()  # mean, min, max
        masked[..., start:start + length] = value
        mask[start:start + length] = True
    return masked, mask


class MaskedPretrainDataset(EpochDataset):
    """Masked crops of the music under ``root/<folders>`` (see module docstring).

    ``files`` restricts the files used (e.g. one side of a split). Items take ``(epoch, index)``
    like voxaug ones: crop of file ``index mod N`` from the item's own generator.
    """

    def __init__(self, root: str | Path, cache: SpectrogramCache, config: PretrainConfig | None = None,
                 files: Collection[str | Path] | None = None):
        self.config = cfg = config or PretrainConfig()
        found = keep_only([p for folder in cfg.folders for p in scan_unlabeled(Path(root) / folder)], files)
        self.crops = StemCrops(cache, cfg, cfg.cropsize)
        self.files, self.skipped = self.crops.build(found, "caching music")
        report_skipped(self.skipped, len(found))
        if not self.files:
            raise DataError(f"{root}: none of the {len(found)} files under {', '.join(cfg.folders)} is usable "
                            f"(each needs >= {cfg.cropsize} frames of non-silent audio)")
        crops = sum(self.crops.frames(p) // cfg.cropsize for p in self.files)
        self.length = cfg.items_per_epoch or max(1, crops)

    def __len__(self) -> int:
        return self.length

    def item(self, epoch: int, index: int) -> dict[str, torch.Tensor]:
        cfg = self.config
        rng = item_rng(cfg.seed, epoch, index)
        spec = self.crops.crop(self.files[index % len(self.files)], rng)
        if chance(rng, cfg.mixup_prob):
            weight = np.float32(rng.uniform(*cfg.mixup_weight))
            spec = (1 - weight) * spec + weight * self.crops.crop(self.files[int(rng.integers(len(self.files)))], rng)
        (clean,) = divide_by_mixture_peak(np.abs(spec))
        if cfg.masking == "token":
            masked, mask = mask_tokens(clean, rng, cfg.token_frames, cfg.mask_rate, cfg.bert_split)
        else:
            masked, mask = mask_spans(clean, rng, cfg.mask_rate, cfg.span_frames, cfg.span_fill)
        return {"mixture": torch.from_numpy(masked), "target": torch.from_numpy(clean),
                "token_mask": torch.from_numpy(mask)}
