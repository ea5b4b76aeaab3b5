"""What every recipe shares: the model section, the parts a recipe builds, and the runner that
trains them into a run folder and evaluates the result.

A recipe module (see :mod:`ftlib.recipes`) defines ``Config`` (nested sections, presets ``tiny``,
``cpu`` and ``gpu`` that override only what differs from the defaults), ``build(config) -> Parts``,
``train(config, run_dir) -> model`` (through :func:`train_parts`, resuming the run folder) and
``evaluate(model, config, run_dir) -> dict``. A run folder holds ``config.json`` (the recipe's name
and config), ``metrics.jsonl`` and ``checkpoints/`` from the engine, and ``metrics.json`` with the
evaluation.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from ftlib import atomic, checkpoint, models
from ftlib.audio import SpectrogramConfig
from ftlib.config import Config
from ftlib.data import synth
from ftlib.data.synth import SynthConfig
from ftlib.data.cache import SpectrogramCache
from ftlib.errors import FtlibError
from ftlib.paths import cache_dir
from ftlib.train.engine import LossFn, TrainConfig, TrainData, fit, process_state

CONFIG_FILE = "config.json"
# the engine settings every recipe's tiny preset (tests: a few steps, no validation in between) shares
TINY_TRAIN = dict(steps=4, batch_size=2, warmup_steps=1, log_every=1, eval_every=0, checkpoint_every=0, ema_decay=0.0)


def gpu_train(**changes: Any) -> TrainConfig:
    """The engine defaults of a full-size (GPU) recipe, with ``changes``: long schedule, validation and
    checkpoints every 2000 steps, EMA."""
    return TrainConfig(**{**dict(steps=100_000, batch_size=16, lr=5e-4, warmup_steps=1000, eval_every=2000,
                                 checkpoint_every=2000, log_every=50, ema_decay=0.999), **changes})


@dataclasses.dataclass
class ModelSection(Config):
    """Args:
        name: model family (``ftlib.models.list_models()``).
        preset: preset of that family.
        overrides: fields of the family's config that override the preset.
        init_from: checkpoint folder to start from (finetuning); its architecture wins over
            ``name``, ``preset`` and ``overrides``.
    """

    name: str = "frame_transformer"
    preset: str = "default"
    overrides: dict = dataclasses.field(default_factory=dict)
    init_from: str = ""

    def validate(self) -> None:
        if not self.init_from:
            models.lookup(self.name)[0].preset(self.preset, **self.overrides)  # ConfigError names the field

    def build(self, seed: int, **fixed: Any) -> nn.Module:
        """The model: loaded from ``init_from``, or built with ``fixed`` fields (e.g. ``num_bins``
        from the STFT) under ``overrides``, initialised from ``seed``."""
        if self.init_from:
            return checkpoint.load(self.init_from)
        torch.manual_seed(seed)
        return models.build(self.name, self.preset, **{**fixed, **self.overrides})


@dataclasses.dataclass
class DataSection(Config):
    """Args:
        root: dataset folder (``instrumentals/``, ``vocals/``, ``valid/<song>/``); empty: the
            synthetic songs of ``synth`` (generated on first use).
        valid_folder: validation songs, relative to ``root`` (or absolute). When ``root`` has no such
            folder, the separation recipe holds out stems and mixes them into songs in the run folder.
        valid_songs: how many validation songs it makes then.
        split_seed: seed of that split (apart from ``seed``, so runs of several seeds share their
            validation songs).
        split: a ``split.json`` whose training side restricts the stems used (set when stems are held out).
        synth: size and seed of the synthetic songs (when ``root`` is empty).
        spectrogram: STFT of the cached spectrograms; the model's ``num_bins`` follows it.
        cache_dtype: "complex64" or "float16" storage of the STFT cache.
        sample_rate: rate every file is read at (resampled when it differs).
    """

    root: str = ""
    valid_folder: str = "valid"
    valid_songs: int = 6
    split_seed: int = 0
    split: str = ""
    synth: SynthConfig = dataclasses.field(default_factory=SynthConfig)
    spectrogram: SpectrogramConfig = dataclasses.field(default_factory=SpectrogramConfig)
    cache_dtype: str = "complex64"
    sample_rate: int = 44100

    def dataset_root(self) -> Path:
        """The dataset folder: ``root``, or the synthetic songs (generated if missing)."""
        if self.root:
            return Path(self.root)
        return synth.generate(synth.dataset_dir(self.synth), self.synth)

    def validate(self) -> None:
        self.require(self.valid_songs >= 1, "valid_songs must be >= 1")

    def valid_path(self) -> Path:
        """The validation songs' folder."""
        return Path(self.valid_folder) if Path(self.valid_folder).is_absolute() else self.dataset_root() / self.valid_folder

    def train_files(self) -> list[Path] | None:
        """The stems training may use: the training side of ``split``, or None (every stem)."""
        if not self.split:
            return None
        data = json.loads(Path(self.split).read_text())
        return [Path(data["root"]) / p for p in data["train"]]

    def cache(self) -> SpectrogramCache:
        """The shared STFT cache (``<ftlib cache>/spectrograms``) with these STFT settings."""
        return SpectrogramCache(cache_dir() / "spectrograms", self.spectrogram, self.sample_rate, dtype=self.cache_dtype)


@dataclasses.dataclass
class Parts:
    """What a recipe's ``build`` returns: the engine's inputs."""

    model: nn.Module
    loss_fn: LossFn
    train_data: TrainData
    valid_data: Dataset | None = None
    valid_loss_fn: LossFn | None = None
    param_groups: list[dict] | None = None


def save_config(run_dir: str | Path, recipe: str, config: Config) -> Path:
    """Write ``config.json``: ``{"recipe": name, "config": {...}}``."""
    return atomic.write_json(Path(run_dir) / CONFIG_FILE, {"recipe": recipe, "config": config.to_dict()})


def read_config(run_dir: str | Path) -> tuple[str, dict[str, Any]]:
    """``(recipe name, config dict)`` of a run folder's ``config.json``."""
    path = Path(run_dir) / CONFIG_FILE
    try:
        data = json.loads(path.read_text())
        return data["recipe"], data["config"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise FtlibError(f"{path}: not a recipe run's config.json ({exc})") from exc


def train_parts(recipe: str, config: Config, build: Callable[[Config], Parts], run_dir: str | Path,
                stop_after: int | None = None, prepare: Callable[[Config, Path], Config] | None = None) -> nn.Module:
    """Prepare the data (``prepare(config, run_dir) -> config``, e.g. validation songs made in the run
    folder) and build the parts, one process per node while the others wait and reuse its files and
    caches; write ``config.json`` and train into ``run_dir``, resuming it. Returns the trained model (a
    wrapper's ``export()``, e.g. a generator without its discriminator)."""
    run_dir = Path(run_dir)
    train: TrainConfig = config.train
    state = process_state(train.timeout_minutes, cpu=train.device == "cpu" or None)
    with state.local_main_process_first():
        config = prepare(config, run_dir) if prepare is not None else config
        parts = build(config)
    if state.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(run_dir, recipe, config)
    trained = fit(parts.model, parts.loss_fn, parts.train_data, train, run_dir, valid_data=parts.valid_data,
                  stop_after=stop_after, param_groups=parts.param_groups, valid_loss_fn=parts.valid_loss_fn)
    return trained.export() if hasattr(trained, "export") else trained
