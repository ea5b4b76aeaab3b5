"""The idea model: unconditional diffusion over fixed-size log-mel images ``[B, 1, n_mels, width]``,
the coarse first stage of a mel-expansion pipeline.

Data: every audio file under ``data.root/{instrumentals,vocals}`` (empty root: the synthetic stems)
becomes log-mel images (:class:`ftlib.data.mel_chunks.MelIdeaDataset`); batches are
``{"x0": [B, 1, n_mels, width]}`` in [-1, 1]. The denoiser is a frame transformer over one channel
of ``n_mels`` bins with a timestep embedding. Sampled images map back to log-mels
(:func:`ftlib.data.mel_chunks.x0_to_mel`) that :class:`ftlib.mel.GriffinLim` can play.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ftlib import diffusion
from ftlib.config import Config as Section
from ftlib.data.mel_chunks import IdeaConfig, MelIdeaDataset
from ftlib.data.sources import scan_stems
from ftlib.data.synth import SynthConfig
from ftlib.errors import ConfigError
from ftlib.mel import MelConfig
from ftlib.recipes.common import TINY_TRAIN, DataSection, ModelSection, Parts, gpu_train, train_parts
from ftlib.train.engine import TrainConfig, validation_loss

NAME = "diffusion_idea"


@dataclasses.dataclass
class Config(Section):
    """The idea-model recipe (see the module docstring); ``model`` is the frame transformer made a
    one-channel denoiser over ``mel.n_mels`` bins; ``seed`` seeds the model, crops and steps.

    Args:
        validation_items: fixed images (seeded apart from training) whose diffusion loss is reported.
    """

    data: DataSection = dataclasses.field(default_factory=DataSection)
    mel: MelConfig = dataclasses.field(default_factory=MelConfig)
    idea: IdeaConfig = dataclasses.field(default_factory=IdeaConfig)
    model: ModelSection = dataclasses.field(default_factory=lambda: ModelSection(preset="tiny", overrides={"channels": 8}))
    diffusion: diffusion.DiffusionConfig = dataclasses.field(default_factory=lambda: diffusion.DiffusionConfig(
        schedule="cosine"))
    train: TrainConfig = dataclasses.field(default_factory=lambda: gpu_train(steps=50_000, eval_every=0))
    validation_items: int = 16
    seed: int = 0

    PRESETS = {
        "tiny": dict(data=dict(synth=SynthConfig.PRESETS["tiny"]), mel=MelConfig.PRESETS["tiny"],
                     idea=IdeaConfig.PRESETS["tiny"], model=dict(overrides={"channels": 4}),
                     diffusion=dict(timesteps=10, sampling_steps=2),
                     train=TINY_TRAIN,
                     validation_items=2),
        "cpu": dict(train=dict(steps=400, batch_size=4, lr=1e-3, warmup_steps=25, checkpoint_every=100,
                               log_every=10, ema_decay=0.0)),
        "gpu": {},
    }

    def validate(self) -> None:
        self.require(self.validation_items >= 1, "validation_items must be >= 1")


def files(config: Config) -> list[Path]:
    """The audio files the images are cut from: the dataset's instrumental and vocal stems."""
    stems = scan_stems(config.data.dataset_root())
    return stems.instrumentals + stems.vocals


def build_denoiser(config: Config) -> nn.Module:
    if config.model.init_from:
        raise ConfigError("diffusion_idea builds its denoiser from model.name/preset; init_from is not supported")
    base = config.model.build(config.seed, in_channels=1, num_bins=config.mel.n_mels)
    torch.manual_seed(config.seed)
    return type(base)(diffusion.denoiser_config(base.config))


def build(config: Config) -> Parts:
    data = MelIdeaDataset(files(config), config.mel, config.idea.replace(seed=config.seed))
    return Parts(build_denoiser(config), diffusion.Diffusion(config.diffusion), data)


def train(config: Config, run_dir: str | Path, stop_after: int | None = None) -> nn.Module:
    """Train the idea model into ``run_dir`` (resuming it); returns the denoiser."""
    return train_parts(NAME, config, build, run_dir, stop_after)


def evaluate(model: nn.Module, config: Config, run_dir: str | Path) -> dict[str, Any]:
    """The diffusion loss on fixed images (their own crop seed, noise and timesteps seeded)."""
    data = MelIdeaDataset(files(config), config.mel, config.idea.replace(seed=config.seed + 1,
                                                                         items_per_epoch=config.validation_items))
    images = [data[(0, i)] for i in range(config.validation_items)]
    torch.manual_seed(config.seed)
    return {"valid_loss": validation_loss(model, images, diffusion.Diffusion(config.diffusion), config.train.batch_size)}
