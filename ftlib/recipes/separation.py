"""Supervised separation: a mask model learns instrumental magnitudes from voxaug mixtures of
unaligned stems, optionally finetuned from a checkpoint and optionally against a discriminator.

    config = separation.Config.preset("cpu", data={"root": "songs/"})
    model = separation.train(config, "runs/my-run")          # resumes the run folder
    metrics = separation.evaluate(model, config, "runs/my-run")

Data: ``data.root`` holds ``instrumentals/``, ``vocals/`` and ``valid/<song>/`` (empty root: the
synthetic songs of :mod:`ftlib.data.synth`, generated on first use). Batches: ``mixture`` and
``target`` magnitudes ``[B, C, F, T]`` (plus the mixture ``phase`` for the STFT loss term).
Evaluation: the context-length study (validation loss at several crop sizes, written to
``context_length.json``) and the validation songs separated whole (SDR, cSDR, SI-SDR).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ftlib import atomic, losses, models
from ftlib.config import Config as Section
from ftlib.data.synth import SynthConfig
from ftlib.data.validation import ValidationCrops
from ftlib.data.voxaug import VoxAugConfig, VoxAugDataset
from ftlib.errors import ConfigError, DataError
from ftlib.evaluate import evaluate_folder
from ftlib.recipes import finetune
from ftlib.recipes.adversarial import AdversarialConfig, AdversarialLoss, AdversarialSeparation
from ftlib.recipes.common import DataSection, ModelSection, Parts, train_parts
from ftlib.separation import Separator
from ftlib.train.engine import TrainConfig, context_length_study

NAME = "separation"
CONTEXT_LENGTH_FILE = "context_length.json"


@dataclasses.dataclass
class FinetuneSection(Section):
    """Args:
        method: "full", "llrd", "transformer" or "last_decoders" (see :mod:`ftlib.recipes.finetune`);
            anything but "full" needs ``model.init_from``.
        llrd_decay: learning-rate factor per depth step of "llrd".
        last_decoders: decoder levels trained by "last_decoders".
    """

    method: str = "full"
    llrd_decay: float = 0.8
    last_decoders: int = 1

    def validate(self) -> None:
        self.require(self.method in finetune.METHODS, f"method must be one of {finetune.METHODS}")
        self.require(0 < self.llrd_decay <= 1 and self.last_decoders >= 1, "need 0 < llrd_decay <= 1, last_decoders >= 1")


@dataclasses.dataclass
class AdversarialSection(AdversarialConfig):
    """Args:
        enabled: train against a discriminator (alternating steps) besides the L1 term.
        discriminator: discriminator family.
        discriminator_preset: its preset.
        (+ the loss fields of AdversarialConfig.)
    """

    enabled: bool = False
    discriminator: str = "patch_discriminator"
    discriminator_preset: str = "default"


@dataclasses.dataclass
class EvaluationSection(Section):
    """Args:
        validation_cropsize: crop size of the fixed validation crops (0: the training crop size).
        context_cropsizes: crop sizes of the context-length study after training (empty: none).
        cropsize: frames per chunk when separating the validation songs (0: the training crop size).
        padding: real context frames on each side of a chunk.
        songs: validation songs separated whole after training (0: none).
    """

    validation_cropsize: int = 0
    context_cropsizes: tuple[int, ...] = (256, 512, 1024, 2048)
    cropsize: int = 0
    padding: int = 64
    songs: int = 8

    def validate(self) -> None:
        self.require(min(self.validation_cropsize, self.cropsize, self.padding, self.songs) >= 0,
                     "crop sizes, padding and songs must be >= 0")


@dataclasses.dataclass
class Config(Section):
    """The separation recipe (see the module docstring); ``seed`` seeds the model, data and steps."""

    data: DataSection = dataclasses.field(default_factory=DataSection)
    model: ModelSection = dataclasses.field(default_factory=lambda: ModelSection(preset="medium"))
    voxaug: VoxAugConfig = dataclasses.field(default_factory=VoxAugConfig)
    loss: losses.SeparationLossConfig = dataclasses.field(default_factory=losses.SeparationLossConfig)
    finetune: FinetuneSection = dataclasses.field(default_factory=FinetuneSection)
    adversarial: AdversarialSection = dataclasses.field(default_factory=AdversarialSection)
    train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(
        steps=100_000, batch_size=16, lr=5e-4, warmup_steps=1000, eval_every=2000, checkpoint_every=2000,
        log_every=50, ema_decay=0.999))
    evaluation: EvaluationSection = dataclasses.field(default_factory=EvaluationSection)
    seed: int = 0

    PRESETS = {
        "tiny": dict(data=dict(synth=SynthConfig.PRESETS["tiny"], spectrogram=dict(n_fft=128, hop_length=64)),
                     model=dict(preset="tiny"), voxaug=dict(cropsize=16, items_per_epoch=8),
                     train=dict(steps=4, batch_size=2, warmup_steps=1, log_every=1, eval_every=0,
                                checkpoint_every=0, ema_decay=0.0),
                     adversarial=dict(discriminator_preset="tiny"),
                     evaluation=dict(context_cropsizes=(16, 32), padding=4, songs=1)),
        "cpu": dict(model=dict(preset="small", overrides={"channels": 4}), voxaug=dict(cropsize=64),
                    train=dict(steps=400, batch_size=4, lr=1e-3, warmup_steps=25, eval_every=100,
                               checkpoint_every=100, log_every=10, ema_decay=0.0),
                    evaluation=dict(context_cropsizes=(64, 128, 256), padding=32)),
        "gpu": {},
    }

    def validate(self) -> None:
        self.require(self.finetune.method == "full" or self.model.init_from,
                     "a finetuning method other than 'full' needs model.init_from (a checkpoint)")
        self.require(self.model.init_from or "num_bins" in models.lookup(self.model.name)[0].__dataclass_fields__,
                     f"{self.model.name} is not a separation model (it has no num_bins)")

    @property
    def validation_cropsize(self) -> int:
        return self.evaluation.validation_cropsize or self.voxaug.cropsize


# ----------------------------------------------------------------------------------- build

def build_data(config: Config) -> tuple[Any, ValidationCrops]:
    """``(train_data, valid_data)``: voxaug mixtures (``cropsize -> Dataset`` with a curriculum)
    and fixed crops of the validation songs."""
    root, cache = config.data.dataset_root(), config.data.cache()
    voxaug = config.voxaug.replace(seed=config.seed, return_phase=config.voxaug.return_phase or bool(config.loss.stft))
    make = lambda cropsize: VoxAugDataset(root, cache, voxaug.replace(cropsize=cropsize))  # noqa: E731
    valid = ValidationCrops(root / config.data.valid_folder, cache, config.validation_cropsize)
    return (make if config.train.curriculum else make(voxaug.cropsize)), valid


def build_model(config: Config) -> nn.Module:
    """The separation model: loaded from ``model.init_from`` or built for the STFT's bins."""
    model = config.model.build(config.seed, num_bins=config.data.spectrogram.num_bins)
    if getattr(model, "task", "separation") != "separation":
        raise ConfigError(f"{model.model_name} is not a separation model; this recipe trains separation models")
    return model


def build(config: Config) -> Parts:
    train_data, valid_data = build_data(config)
    model = build_model(config)
    groups = finetune.param_groups(model, config.finetune.method, config.finetune.llrd_decay,
                                   config.finetune.last_decoders)
    spec = config.data.spectrogram
    loss = losses.SeparationLoss(config.loss.replace(n_fft=spec.n_fft, hop_length=spec.hop_length,
                                                     sample_rate=config.data.sample_rate))
    if not config.adversarial.enabled:
        return Parts(model, loss, train_data, valid_data, losses.separation_l1, groups)
    adversarial = config.adversarial
    torch.manual_seed(config.seed + 1)
    overrides = {"in_channels": model.config.in_channels}
    if "num_bins" in models.lookup(adversarial.discriminator)[0].__dataclass_fields__:
        overrides["num_bins"] = model.config.num_bins
    discriminator = models.build(adversarial.discriminator, adversarial.discriminator_preset, **overrides)
    pair = AdversarialSeparation(model, discriminator, adversarial)
    groups.append({"params": list(discriminator.parameters()), "lr_scale": 1.0, "name": "discriminator"})
    return Parts(pair, AdversarialLoss(adversarial.discriminator_every), train_data, valid_data,
                 AdversarialLoss.validation, groups)


# ------------------------------------------------------------------------ train and evaluate

def train(config: Config, run_dir: str | Path, stop_after: int | None = None) -> nn.Module:
    """Train into ``run_dir`` (resuming it); returns the separation model (the generator when
    adversarial)."""
    return train_parts(NAME, config, build, run_dir, stop_after)


def evaluate(model: nn.Module, config: Config, run_dir: str | Path) -> dict[str, Any]:
    """The context-length study (``context_length.json``) and the validation songs separated
    whole; returns the summary scores and the per-song rows (``"songs"``)."""
    root, cache = config.data.dataset_root(), config.data.cache()
    out: dict[str, Any] = {}
    if config.evaluation.context_cropsizes:
        valid = ValidationCrops(root / config.data.valid_folder, cache, config.validation_cropsize)
        rows = context_length_study(model, valid.at, losses.separation_l1, config.evaluation.context_cropsizes)
        save_context_length(run_dir, rows)
        out["context_length"] = rows
    if config.evaluation.songs:
        rows = evaluate_folder(root / config.data.valid_folder, separator=separator(model, config),
                               limit=config.evaluation.songs)
        out.update({k: v for k, v in rows[-1].items() if k != "song"}, songs=rows[:-1])
    return out


def separator(model: nn.Module, config: Config, **options: Any) -> Separator:
    """A Separator for ``model`` with the recipe's STFT and inference settings (``options`` win)."""
    settings = dict(spectrogram=config.data.spectrogram, cropsize=config.evaluation.cropsize or config.voxaug.cropsize,
                    padding=config.evaluation.padding, sample_rate=config.data.sample_rate)
    return Separator(model, **{**settings, **options})


# ------------------------------------------------------------------- context-length study file

def context_length(run_dir: str | Path) -> list[dict]:
    """The context-length study of a run (``<run_dir>/context_length.json``): rows with at least
    ``cropsize`` (int) and ``valid_loss`` (float), sorted by crop size; ``[]`` when there is none."""
    path = Path(run_dir) / CONTEXT_LENGTH_FILE
    if not path.is_file():
        return []
    try:
        rows = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc}); fix or delete the file") from exc
    valid = isinstance(rows, list) and all(
        isinstance(r, dict) and isinstance(r.get("cropsize"), int) and isinstance(r.get("valid_loss"), (int, float))
        for r in rows)
    if not valid:
        raise DataError(f'{path}: expected a JSON list of {{"cropsize": int, "valid_loss": float}} rows')
    return sorted(rows, key=lambda r: r["cropsize"])


def save_context_length(run_dir: str | Path, rows: list[dict]) -> Path:
    """Write context-length rows (see :func:`ftlib.train.context_length_study`) to the run folder."""
    return atomic.write_json(Path(run_dir) / CONTEXT_LENGTH_FILE, list(rows))
