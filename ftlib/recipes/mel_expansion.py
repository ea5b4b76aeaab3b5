"""Mel expansion: a folded encoder/decoder transformer (``mel_reformer``) expands an idea (a log-mel
squeezed to a fixed width) back into the full log-mel, token by token.

Data: random log-mel chunks of pooled folders (:class:`ftlib.data.mel_chunks.MelChunkDataset`;
empty folders: the synthetic corpus). Batches are ``{"mel": [B, 1, M, T], "frames": [B]}``; frames
past an item's ``frames`` are padding and never count in a loss. The loss is the teacher-forced
reconstruction L1, optionally an L1 on average-pooled copies and on spectral gradients against
blur, and an L1 on the predicted ``log(frames)`` that trains the length head.

    model = mel_expansion.train(config, "runs/mel")
    mel, frames = mel_expansion.expand(model, batch["mel"], batch["frames"])   # free running
"""
from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ftlib import losses
from ftlib.config import Config as Section
from ftlib.data.mel_chunks import MelChunkConfig, MelChunkDataset, synthetic_corpus
from ftlib.data.sources import scan_songs
from ftlib.data.synth import SynthConfig
from ftlib.mel import MelConfig, Vocoder
from ftlib.models.mel_reformer import MelReformer, MelReformerConfig
from ftlib.recipes.common import TINY_TRAIN, Parts, gpu_train, train_parts
from ftlib.train.engine import TrainConfig, model_device, validation_loss

NAME = "mel_expansion"


@dataclasses.dataclass
class MelLossConfig(Section):
    """Weights of the mel-expansion loss terms (0 disables a term)."""

    l1_weight: float = 1.0  # L1 on the reconstructed log-mel
    multiscale_weight: float = 0.0  # L1 on average-pooled copies at ``scales``
    scales: tuple[int, ...] = (2, 4, 8)  # pooling sizes (mel bands x frames) of the multi-scale term
    gradient_weight: float = 0.0  # L1 on time and frequency differences
    length_weight: float = 0.1  # L1 on the predicted log(frames)

    PRESETS = {"sharp": dict(multiscale_weight=0.5, gradient_weight=1.0)}

    def validate(self) -> None:
        for name in ("l1_weight", "multiscale_weight", "gradient_weight", "length_weight"):
            self.require(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        self.require(all(s >= 1 for s in self.scales), f"scales must be >= 1, got {self.scales}")


class MelExpansionLoss:
    """``loss_fn(model, batch) -> (loss, metrics)`` for the engine; the metrics are every term."""

    def __init__(self, config: MelLossConfig | None = None):
        self.config = config or MelLossConfig()

    def __call__(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        cfg, mel, frames = self.config, batch["mel"], batch["frames"]
        estimate, log_frames = model(mel, frames)
        mask = losses.frame_mask(frames, mel.shape[-1])
        terms = {"l1": losses.masked_mean_l1(estimate, mel, mask), "length": losses.length_l1(log_frames, frames)}
        if cfg.multiscale_weight:
            terms["multiscale"] = losses.multiscale_l1(estimate, mel, mask, cfg.scales)
        if cfg.gradient_weight:
            terms["gradient"] = losses.spectral_gradient_l1(estimate, mel, mask)
        weights = {"l1": cfg.l1_weight, "length": cfg.length_weight, "multiscale": cfg.multiscale_weight,
                   "gradient": cfg.gradient_weight}
        loss = sum(weights[k] * v for k, v in terms.items())
        return loss, {k: v.detach() for k, v in terms.items()}


def mel_l1(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
    """Teacher-forced reconstruction L1 alone (a validation score comparable across loss settings)."""
    estimate, _ = model(batch["mel"], batch["frames"])
    loss = losses.masked_mean_l1(estimate, batch["mel"], losses.frame_mask(batch["frames"], batch["mel"].shape[-1]))
    return loss, {"l1": loss.detach()}


# ------------------------------------------------------------------------------- generation

@torch.no_grad()
def reconstruct(model: MelReformer, mel: torch.Tensor, frames: torch.Tensor | None = None) -> torch.Tensor:
    """Teacher-forced reconstruction ``[B, 1, M, T]`` of ``mel`` (eval mode)."""
    was_training = model.training
    model.eval()
    try:
        return model(mel, frames)[0]
    finally:
        model.train(was_training)


@torch.no_grad()
def expand(model: MelReformer, mel: torch.Tensor, frames: torch.Tensor | None = None, known_length: bool = False,
           use_cache: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Free-running expansion of ``mel [B, 1, M, T]``'s idea (its first ``frames`` columns resized).

    The length comes from the length head, or with ``known_length`` from ``frames``. Returns the
    generated log-mel ``[B, 1, M, T']`` and its ``frames [B]``.
    """
    was_training = model.training
    model.eval()
    try:
        return model.generate(model.idea(mel, frames), frames if known_length else None, use_cache=use_cache)
    finally:
        model.train(was_training)


def to_audio(vocoder: Vocoder, mel: torch.Tensor, frames: torch.Tensor | None = None) -> list[np.ndarray]:
    """Audio of each item of ``mel [B, 1, M, T]`` (its first ``frames`` columns): float32 ``[S]`` arrays."""
    frames = frames if frames is not None else torch.full((mel.shape[0],), mel.shape[-1])
    return [vocoder(mel[i:i + 1, ..., :max(2, int(n))])[0].cpu().numpy() for i, n in enumerate(frames)]


def free_running_errors(model: MelReformer, data: Dataset, batch_size: int = 8) -> list[float]:
    """Per item of ``data``: the L1 between its free-running generation (at the true length) and the original."""
    errors = []
    device = model_device(model)
    for batch in DataLoader(data, batch_size=batch_size):
        mel, frames = batch["mel"].to(device), batch["frames"].to(device)
        generated, _ = expand(model, mel, frames, known_length=True)
        width = generated.shape[-1]
        mask = losses.frame_mask(frames, width)
        errors += [float(losses.masked_mean_l1(generated[i:i + 1], mel[i:i + 1, ..., :width], mask[i:i + 1]))
                   for i in range(len(frames))]
    return errors


# ---------------------------------------------------------------------------------- the recipe

@dataclasses.dataclass
class DataSection(Section):
    """Args:
        root: a dataset folder: training music from ``instrumentals/`` and ``vocals/``, held-out
            music from the mixtures of ``valid/<song>/``; empty: the synthetic corpus.
        train_folders: folders (or audio files) of music pooled for training, instead of ``root``'s.
        valid_folders: held-out folders or files, instead of ``root``'s.
        synth: size and seed of the synthetic corpus.
        valid_chunks: fixed validation chunks.
    """

    root: str = ""
    train_folders: tuple[str, ...] = ()
    valid_folders: tuple[str, ...] = ()
    synth: SynthConfig = dataclasses.field(default_factory=lambda: SynthConfig(
        num_instrumentals=16, num_vocals=16, duration=12.0, valid_duration=12.0))
    valid_chunks: int = 16

    def validate(self) -> None:
        self.require(self.valid_chunks >= 1, "valid_chunks must be >= 1")

    def sources(self) -> tuple[list, list]:
        """``(training sources, validation sources)``."""
        if self.root:
            root = Path(self.root)
            corpus = {"train": [root / "instrumentals", root / "vocals"],
                      "valid": [song["mixture"] for song in scan_songs(root / "valid", ("mixture",))]}
        elif not (self.train_folders and self.valid_folders):
            corpus = synthetic_corpus(self.synth)
        return (list(self.train_folders) or corpus["train"]), (list(self.valid_folders) or corpus["valid"])


@dataclasses.dataclass
class Config(Section):
    """The mel-expansion recipe (see the module docstring); ``sweep_folds`` adds one model per fold
    size trained for ``sweep_steps`` by :func:`fold_sweep`; ``seed`` seeds the model, data and steps."""

    data: DataSection = dataclasses.field(default_factory=DataSection)
    mel: MelConfig = dataclasses.field(default_factory=lambda: MelConfig(n_mels=64))
    chunks: MelChunkConfig = dataclasses.field(default_factory=lambda: MelChunkConfig(frames=128, min_frames=64,
                                                                                    multiple=32))
    model: MelReformerConfig = dataclasses.field(default_factory=lambda: MelReformerConfig(
        n_mels=64, fold=8, idea_width=64, dim=128, num_heads=4, encoder_layers=2, decoder_layers=2, max_tokens=16))
    loss: MelLossConfig = dataclasses.field(default_factory=lambda: MelLossConfig.preset("sharp"))
    train: TrainConfig = dataclasses.field(default_factory=lambda: gpu_train(
        steps=20_000, batch_size=32, warmup_steps=500, eval_every=1000, checkpoint_every=1000, ema_decay=0.0))
    sweep_folds: tuple[int, ...] = (8, 16, 32)
    sweep_steps: int = 5000
    seed: int = 0

    PRESETS = {
        "tiny": dict(data=dict(synth=dict(num_instrumentals=2, num_vocals=2, num_valid=2, duration=2.0,
                                          valid_duration=2.0), valid_chunks=4),
                     mel=dict(sample_rate=8000, n_fft=256, hop_length=64, n_mels=32),
                     chunks=dict(frames=32, min_frames=16, multiple=16),
                     model=dict(n_mels=32, idea_width=16, dim=32, num_heads=2, encoder_layers=1, decoder_layers=1,
                                max_tokens=4),
                     train=TINY_TRAIN,
                     sweep_folds=(8, 16), sweep_steps=2),
        "cpu": dict(train=dict(steps=600, batch_size=8, lr=1e-3, warmup_steps=20, eval_every=100,
                               checkpoint_every=100, log_every=10), sweep_steps=300),
        "gpu": {},
    }

    def validate(self) -> None:
        self.require(self.model.n_mels == self.mel.n_mels, f"model.n_mels ({self.model.n_mels}) must equal "
                     f"mel.n_mels ({self.mel.n_mels})")
        self.require(self.model.max_frames >= self.chunks.frames, f"the model's {self.model.max_frames} frames "
                     f"(max_tokens x fold) must cover chunks.frames={self.chunks.frames}")
        self.require(all(n >= 1 for n in self.sweep_folds) and self.sweep_steps >= 1, "sweep folds and steps >= 1")


def build_data(config: Config) -> tuple[MelChunkDataset, Dataset]:
    """``(train_data, valid_data)``: random chunks, and ``data.valid_chunks`` fixed held-out chunks."""
    train_sources, valid_sources = config.data.sources()
    chunks = config.chunks.replace(seed=config.seed)
    train = MelChunkDataset(train_sources, config.mel, chunks)
    valid = MelChunkDataset(valid_sources, config.mel, chunks).fixed(config.data.valid_chunks, seed=config.seed)
    return train, valid


def build(config: Config) -> Parts:
    train_data, valid_data = build_data(config)
    torch.manual_seed(config.seed)
    return Parts(MelReformer(config.model), MelExpansionLoss(config.loss), train_data, valid_data, mel_l1)


def train(config: Config, run_dir: str | Path, stop_after: int | None = None) -> nn.Module:
    """Train into ``run_dir`` (resuming it); returns the mel_reformer."""
    return train_parts(NAME, config, build, run_dir, stop_after)


def evaluate(model: nn.Module, config: Config, run_dir: str | Path) -> dict[str, Any]:
    """Teacher-forced and free-running validation L1 (and the free-running L1 of every item, for
    paired comparisons), and the length head's mean relative error."""
    _, valid = build_data(config)
    device = model_device(model)
    batch = {k: torch.stack([item[k] for item in valid]).to(device) for k in ("mel", "frames")}
    _, predicted = expand(model, batch["mel"], batch["frames"])
    error = ((predicted - batch["frames"]).abs().float() / batch["frames"].float()).mean()
    errors = free_running_errors(model, valid, config.train.batch_size)
    return {"valid_l1": validation_loss(model, valid, mel_l1, config.train.batch_size),
            "free_running_l1": sum(errors) / max(1, len(errors)), "free_running_items": errors,
            "length_error": float(error)}


def fold_sweep(config: Config, run_dir: str | Path) -> list[dict]:
    """One model per fold size ``n`` of ``sweep_folds`` (same data, seed and ``sweep_steps``;
    ``max_tokens`` scaled so the longest sequence in frames stays the same), trained into
    ``run_dir/fold-<n>`` and scored. Returns ``[{"fold", "parameters", "train_seconds", "valid_l1",
    "free_running_l1", "free_running_items", "length_error"}]``."""
    rows = []
    for n in config.sweep_folds:
        sweep = config.replace(model=dict(fold=n, max_tokens=math.ceil(config.model.max_frames / n)),
                               train=dict(steps=config.sweep_steps, eval_every=0))
        folder = Path(run_dir) / f"fold-{n}"
        started = time.perf_counter()
        model = train(sweep, folder)
        rows.append({"fold": n, "parameters": sum(p.numel() for p in model.parameters()),
                     "train_seconds": time.perf_counter() - started, **evaluate(model, sweep, folder)})
    return rows
