"""Masked pretraining: a separation network learns music by filling in hidden frames of unlabeled
crops (no stems needed); its checkpoint starts the separation recipe (``model.init_from``).

Data: every audio file under ``data.root/<pretrain.folders>`` (empty root: synthetic stems);
validation crops come from ``data.root/<data.valid_folder>``. Batches: ``mixture`` (masked input),
``target`` (clean magnitude) ``[B, C, F, T]`` and ``token_mask [B, T]``; the loss counts masked
frames only (:func:`ftlib.losses.pretraining_l1`).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from torch import nn

from ftlib import losses
from ftlib.config import Config as Section
from ftlib.data.pretrain import MaskedPretrainDataset, PretrainConfig
from ftlib.data.synth import SynthConfig
from ftlib.recipes.common import TINY_TRAIN, DataSection, ModelSection, Parts, gpu_train, train_parts
from ftlib.train.engine import TrainConfig, validation_loss

NAME = "pretraining"


CPU = dict(model=dict(preset="small", overrides={"channels": 4}), pretrain=dict(cropsize=64, token_frames=16),
           train=dict(steps=1000, batch_size=4, lr=1e-3, warmup_steps=25, eval_every=50,
                      checkpoint_every=100, log_every=10, ema_decay=0.0), validation_items=8)


@dataclasses.dataclass
class Config(Section):
    """The pretraining recipe (see the module docstring); ``seed`` seeds the model, data and steps.

    Args:
        validation_items: masked crops of the validation songs scored at every validation.
        validation_cropsize: their crop size (0: the training crop size).
    """

    data: DataSection = dataclasses.field(default_factory=lambda: DataSection(synth=SynthConfig(
        num_instrumentals=16, num_vocals=16, num_valid=2, duration=16.0, valid_duration=12.0, seed=1000)))
    model: ModelSection = dataclasses.field(default_factory=lambda: ModelSection(preset="medium"))
    pretrain: PretrainConfig = dataclasses.field(default_factory=lambda: PretrainConfig(
        folders=("instrumentals", "vocals"), mixup_prob=0.8, mixup_weight=(0.3, 0.7)))
    train: TrainConfig = dataclasses.field(default_factory=lambda: gpu_train(steps=50_000))
    validation_items: int = 32
    validation_cropsize: int = 0
    seed: int = 0

    PRESETS = {
        "tiny": dict(data=dict(synth=SynthConfig.PRESETS["tiny"], spectrogram=dict(n_fft=128, hop_length=64)),
                     model=dict(preset="tiny"), pretrain=dict(cropsize=16, token_frames=4, items_per_epoch=8),
                     train=TINY_TRAIN, validation_items=4),
        "cpu": CPU,
        "quick": CPU,  # the name notebook 20 shares with the separation recipe's minutes-long preset
        "gpu": {},
    }

    def validate(self) -> None:
        self.require(self.validation_items >= 1 and self.validation_cropsize >= 0,
                     "validation_items must be >= 1 and validation_cropsize >= 0")


def build_data(config: Config) -> tuple[Any, MaskedPretrainDataset]:
    """``(train_data, valid_data)``; ``train_data`` is ``cropsize -> Dataset`` with a curriculum."""
    root, cache = config.data.dataset_root(), config.data.cache()
    pretrain = config.pretrain.replace(seed=config.seed)
    make = lambda cropsize: MaskedPretrainDataset(root, cache, pretrain.replace(cropsize=cropsize))  # noqa: E731
    valid = MaskedPretrainDataset(root, cache, pretrain.replace(
        cropsize=config.validation_cropsize or pretrain.cropsize, folders=(config.data.valid_folder,),
        items_per_epoch=config.validation_items, mixup_prob=0.0))
    return (make if config.train.curriculum else make(pretrain.cropsize)), valid


def build(config: Config) -> Parts:
    train_data, valid_data = build_data(config)
    model = config.model.build(config.seed, num_bins=config.data.spectrogram.num_bins)
    return Parts(model, losses.pretraining_l1, train_data, valid_data)


def train(config: Config, run_dir: str | Path, stop_after: int | None = None) -> nn.Module:
    """Train into ``run_dir`` (resuming it); returns the model (``checkpoints/best`` starts finetuning)."""
    return train_parts(NAME, config, build, run_dir, stop_after)


def evaluate(model: nn.Module, config: Config, run_dir: str | Path) -> dict[str, Any]:
    """The masked-frame L1 on the validation crops."""
    _, valid = build_data(config)
    return {"valid_masked_l1": validation_loss(model, valid, losses.pretraining_l1, config.train.batch_size)}
