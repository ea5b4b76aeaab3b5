"""Supervised separation: a mask model learns instrumental magnitudes from voxaug mixtures of
unaligned stems, optionally finetuned from a checkpoint and optionally against a discriminator.

    config = separation.Config.preset("cpu", data={"root": "songs/"})   # or "quick", "gpu"
    model = separation.train(config, "runs/my-run")          # resumes the run folder
    metrics = separation.evaluate(model, config, "runs/my-run")

Data: ``data.root`` holds ``instrumentals/``, ``vocals/`` and ``valid/<song>/`` (empty root: the
synthetic songs of :mod:`ftlib.data.synth`, generated on first use). Batches: ``mixture`` and
``target`` magnitudes ``[B, C, F, T]`` (plus the mixture ``phase`` for the STFT loss term).
Evaluation: the context-length study (validation loss and median vocal SDR at several crop sizes,
written to ``context_length.json``) and the validation songs separated whole (SDR, cSDR, SI-SDR).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ftlib import atomic, checkpoint, losses, models
from ftlib.config import Config as Section
from ftlib.data.holdout import SPLIT_FILE, make_validation_songs
from ftlib.data.sources import report_conversions
from ftlib.data.synth import SynthConfig
from ftlib.data.validation import ValidationCrops
from ftlib.data.voxaug import VoxAugConfig, VoxAugDataset
from ftlib.errors import ConfigError, DataError
from ftlib.evaluate import Evaluation, run_evaluation, summary_row
from ftlib.recipes import finetune
from ftlib.recipes.adversarial import AdversarialConfig, AdversarialLoss, AdversarialSeparation
from ftlib.recipes.common import TINY_TRAIN, DataSection, ModelSection, Parts, gpu_train, train_parts
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
        context_cropsizes: crop sizes of the context-length study after training, besides the
            training crop size (empty: no study).
        cropsize: frames per chunk when separating songs (0: the model's own: the crop size of the
            context-length study with the best median vocal SDR, else the training crop size);
            checkpoints record it.
        padding: real context frames on each side of a chunk (None: a quarter of the crop size).
        songs: validation songs separated whole after training (0: none).
    """

    validation_cropsize: int = 0
    context_cropsizes: tuple[int, ...] = (256, 512, 1024, 2048)
    cropsize: int = 0
    padding: int | None = None
    songs: int = 8

    def validate(self) -> None:
        self.require(min(self.validation_cropsize, self.cropsize, self.padding or 0, self.songs) >= 0,
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
    train: TrainConfig = dataclasses.field(default_factory=gpu_train)
    evaluation: EvaluationSection = dataclasses.field(default_factory=EvaluationSection)
    seed: int = 0

    PRESETS = {
        "tiny": dict(data=dict(synth=SynthConfig.PRESETS["tiny"], spectrogram=dict(n_fft=128, hop_length=64)),
                     model=dict(preset="tiny"), voxaug=dict(cropsize=16, items_per_epoch=8),
                     train=TINY_TRAIN,
                     adversarial=dict(discriminator_preset="tiny"),
                     evaluation=dict(context_cropsizes=(16, 32), cropsize=64, songs=1)),
        # minutes on a 2-core CPU: the notebooks' default (the quickstart's synthetic songs)
        "quick": dict(model=dict(preset="small"), voxaug=dict(cropsize=64),
                      train=dict(steps=400, batch_size=4, lr=1e-3, warmup_steps=25, eval_every=100,
                                 checkpoint_every=100, log_every=10, ema_decay=0.0),
                      evaluation=dict(context_cropsizes=(64, 128, 256))),
        # at most 30 minutes on a 2-core CPU, caching and evaluation included: the recipe chosen on
        # real instrumentals with unseen voices (docs/results/real-music.md)
        "cpu": dict(model=dict(name="conv_unet", preset="cpu"), voxaug=dict(cropsize=64),
                    train=dict(steps=3600, batch_size=4, lr=1e-3, warmup_steps=25, eval_every=600,
                               checkpoint_every=400, log_every=20, ema_decay=0.0),
                    evaluation=dict(context_cropsizes=(64, 128, 256))),
        # for one GPU: the defaults (frame_transformer/medium, 256-frame crops) seeing mid and side,
        # and the RoFormers as their papers train them (hop 441, 8-second crops, complex masks), their
        # steps sized for one GPU-day of an H100/H200-class GPU by `python bench/gpu_day.py`
        # (docs/results/roformers.md, docs/results/real-music.md)
        "gpu": dict(model=dict(overrides={"mid_side": True})),
        "gpu_bs_roformer": dict(model=dict(name="bs_roformer", preset="msst_vocals"),
                                data=dict(spectrogram=dict(hop_length=441)), voxaug=dict(cropsize=800),
                                train=dict(steps=250_000, batch_size=8, lr=3e-4)),
        "gpu_mel_roformer": dict(model=dict(name="mel_roformer", preset="default"),
                                 data=dict(spectrogram=dict(hop_length=441)), voxaug=dict(cropsize=800),
                                 train=dict(steps=110_000, batch_size=4, grad_accum=2, lr=3e-4)),
    }

    def validate(self) -> None:
        self.require(self.finetune.method == "full" or self.model.init_from,
                     "a finetuning method other than 'full' needs model.init_from (a checkpoint)")
        fields = models.lookup(self.model.name)[0].__dataclass_fields__
        self.require(self.model.init_from or "num_bins" in fields or "stft_n_fft" in fields,
                     f"{self.model.name} is not a separation model (it has no num_bins)")

    @property
    def training_cropsize(self) -> int:
        """The crop size training ends with (the last curriculum stage's)."""
        stages = self.train.stages()
        return stages[-1].cropsize if self.train.curriculum else self.voxaug.cropsize

    @property
    def validation_cropsize(self) -> int:
        return self.evaluation.validation_cropsize or self.voxaug.cropsize

    def inference(self) -> dict[str, int]:
        """What checkpoints record for separating: the training crop size (and the padding, when set)."""
        padding = {} if self.evaluation.padding is None else {"padding": self.evaluation.padding}
        return {"cropsize": self.evaluation.cropsize or self.training_cropsize, **padding}


def with_validation(config: Config, run_dir: str | Path) -> Config:
    """``config``, or, when its dataset folder has no validation songs, the config of validation
    songs made from held-out stems in ``run_dir`` (:mod:`ftlib.data.holdout`): the training stems
    restricted by ``run_dir/split.json``, the songs in ``run_dir/valid``."""
    data = config.data
    if not data.root or data.split or data.valid_path().is_dir():
        return config
    _, folder = make_validation_songs(data.dataset_root(), run_dir, data.valid_songs, data.split_seed,
                                                config.voxaug.vocal_gain_db, data.sample_rate)
    return config.replace(data=dict(valid_folder=str(folder.resolve()),
                                    split=str((Path(run_dir) / SPLIT_FILE).resolve())))


# ----------------------------------------------------------------------------------- build

def build_data(config: Config, complex_items: bool = False) -> tuple[Any, ValidationCrops]:
    """``(train_data, valid_data)``: voxaug mixtures (``cropsize -> Dataset`` with a curriculum)
    and fixed crops of the validation songs; complex spectra with ``complex_items`` (for
    complex-mask models), else magnitudes."""
    root, cache, files = config.data.dataset_root(), config.data.cache(), config.data.train_files()
    report_conversions(root, config.data.sample_rate)
    phase = config.voxaug.return_phase or (config.loss.needs_phase and not complex_items)
    voxaug = config.voxaug.replace(seed=config.seed, return_phase=phase, return_complex=complex_items)
    make = lambda cropsize: VoxAugDataset(root, cache, voxaug.replace(cropsize=cropsize), files)  # noqa: E731
    valid = ValidationCrops(config.data.valid_path(), cache, config.validation_cropsize)
    return (make if config.train.curriculum else make(voxaug.cropsize)), valid.complex() if complex_items else valid


def build_model(config: Config) -> nn.Module:
    """The separation model: loaded from ``model.init_from`` or built for the recipe's STFT (its bins;
    a RoFormer gets the STFT itself and leaves out the Nyquist bin, as the datasets do)."""
    spec, fields = config.data.spectrogram, models.lookup(config.model.name)[0].__dataclass_fields__
    if "stft_n_fft" in fields:
        fixed = dict(stft_n_fft=spec.n_fft, stft_hop_length=spec.hop_length, stft_win_length=spec.win_length or spec.n_fft,
                     nyquist=False, sample_rate=config.data.sample_rate)
    else:
        fixed = dict(num_bins=spec.num_bins)
    model = config.model.build(config.seed, **fixed)
    if getattr(model, "task", "separation") not in ("separation", "complex_separation"):
        raise ConfigError(f"{model.model_name} is not a separation model; this recipe trains separation models")
    model.inference = config.inference()  # written into every checkpoint
    return model


def build(config: Config) -> Parts:
    model = build_model(config)
    if config.adversarial.enabled and models.is_complex(model):
        raise ConfigError("the adversarial option judges magnitude masks of magnitude inputs; it takes neither a "
                          "complex-mask model nor one with mid/side input (a model of the complex STFT)")
    train_data, valid_data = build_data(config, models.is_complex(model))
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
    return train_parts(NAME, config, build, run_dir, stop_after, prepare=with_validation)


def evaluate(model: nn.Module, config: Config, run_dir: str | Path) -> dict[str, Any]:
    """The context-length study and the validation songs separated whole.

    The study (``context_length.json``) covers ``evaluation.context_cropsizes`` and the training crop
    size: each row has the validation loss and, when songs are evaluated, ``vocals_sdr``, the median
    vocal SDR over the songs separated with chunks of that size. The best crop size (by that SDR, by
    the loss without songs) is recorded in ``checkpoints/best`` and used for separating unless
    ``evaluation.cropsize`` is set. Returns the summary scores at the crop size used, the per-song
    rows (``"songs"``, every metric), the songs' ``"fingerprint"`` (:mod:`ftlib.compare` checks
    that runs it compares scored the same songs), ``"cropsize"``, ``"padding"`` and ``"context_length"``.
    """
    config = with_validation(config, run_dir)
    evaluation, out = config.evaluation, {}
    study = evaluation.context_cropsizes and sorted({*evaluation.context_cropsizes, config.training_cropsize})
    songs: dict[tuple[int, int], Evaluation] = {}  # (cropsize, padding) -> scores
    if study:
        valid = ValidationCrops(config.data.valid_path(), config.data.cache(), config.validation_cropsize)
        valid = valid.complex() if models.is_complex(model) else valid
        rows = context_length_study(model, valid.at, losses.separation_l1, study)
        for row in rows if evaluation.songs else []:
            scores = _separate_songs(model, config, separator(model, config, cropsize=row["cropsize"]), songs)
            row["vocals_sdr"] = float(np.nanmedian([r["sdr_vocals"] for r in scores.rows]))
        save_context_length(run_dir, rows)
        out["context_length"] = rows
        if rows:
            best = (max(rows, key=lambda r: r["vocals_sdr"]) if songs else min(rows, key=lambda r: r["valid_loss"]))
            model.inference = {**getattr(model, "inference", {}), "best_cropsize": best["cropsize"]}
            if (Path(run_dir) / "checkpoints" / "best").is_dir():
                checkpoint.update_inference(Path(run_dir) / "checkpoints" / "best", best_cropsize=best["cropsize"])
    if evaluation.songs:
        sep = separator(model, config)
        scores = _separate_songs(model, config, sep, songs)
        out.update({k: v for k, v in summary_row(scores.rows).items() if k != "song"}, songs=scores.rows,
                   fingerprint=scores.fingerprint, cropsize=sep.cropsize, padding=sep.padding)
    return out


def _separate_songs(model: nn.Module, config: Config, sep: Separator, done: dict) -> Evaluation:
    """The first ``evaluation.songs`` validation songs separated by ``sep`` and scored, kept in
    ``done`` by chunking (the same chunking is not run twice)."""
    key = (sep.cropsize, sep.padding)
    if key not in done:
        done[key] = run_evaluation(config.data.valid_path(), separator=sep, limit=config.evaluation.songs)
    return done[key]


def separator(model: nn.Module, config: Config, **options: Any) -> Separator:
    """A Separator for ``model`` with the recipe's STFT and inference settings (``options`` win);
    without ``evaluation.cropsize`` the model's own crop size (see :func:`ftlib.separation.chunking`)."""
    settings = dict(spectrogram=config.data.spectrogram, cropsize=config.evaluation.cropsize or None,
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
