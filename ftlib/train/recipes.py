"""Recipes: model, datasets and batch -> loss plugged into the one engine, from one config.

=============  ==============================================================================
recipe         what trains
=============  ==============================================================================
supervised     a separation model on voxaug mixtures: L1 (+ optional mel / multi-resolution)
pretrain       masked-frame reconstruction on unlabeled music, loss on masked frames only
adversarial    a separation model against a patch discriminator, alternating steps, + L1
=============  ==============================================================================

Any recipe can start from a checkpoint (``init_from``) and finetune it with one of the methods
of :mod:`ftlib.train.finetune`. After training, separation recipes run the context-length study
(validation loss at several crop sizes) and write ``context_length.json`` into the run folder.

    >>> from ftlib.train import recipes
    >>> cfg = recipes.RecipeConfig.preset("tiny", recipe="supervised")
    >>> model = recipes.run(cfg, "runs/my-run")
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ftlib import checkpoint, losses, models
from ftlib.audio import SpectrogramConfig
from ftlib.config import Config
from ftlib.data import synth
from ftlib.data.cache import SpectrogramCache
from ftlib.data.pretrain import MaskedPretrainDataset, PretrainConfig
from ftlib.data.voxaug import ValidationCrops, VoxAugConfig, VoxAugDataset
from ftlib.errors import ConfigError
from ftlib.paths import cache_dir
from ftlib.train import finetune, history
from ftlib.train.adversarial import AdversarialConfig, AdversarialLoss, AdversarialSeparation
from ftlib.train.engine import TrainConfig, context_length_study, fit, latest_checkpoint, process_state

RECIPES = ("supervised", "pretrain", "adversarial")


@dataclasses.dataclass
class RecipeConfig(Config):
    """Args:
        recipe: "supervised", "pretrain" or "adversarial".
        data_root: dataset folder (``instrumentals/``, ``vocals/``, ``valid/<song>/``, ``unlabeled/``);
            empty: the synthetic dataset of ``synth`` (generated on first use).
        valid_folder: validation songs, relative to ``data_root``.
        model: model family (``ftlib.models.list_models()``).
        model_preset: preset of that family.
        model_overrides: config fields overriding the preset.
        init_from: checkpoint folder to start from (finetuning); its architecture wins over
            ``model``/``model_preset``.
        finetune: "full", "llrd", "transformer" or "last_decoders" (see ftlib.train.finetune).
        llrd_decay: learning-rate factor per depth step of "llrd".
        last_decoders: decoder levels trained by "last_decoders".
        discriminator: discriminator family of the adversarial recipe.
        discriminator_preset: its preset.
        adversarial: AdversarialConfig fields.
        train: TrainConfig fields.
        data: VoxAugConfig fields (supervised, adversarial) or PretrainConfig fields (pretrain).
        loss: SeparationLossConfig fields (supervised); its ``n_fft``/``hop_length`` follow
            ``spectrogram``.
        synth: SynthConfig fields of the synthetic dataset (when ``data_root`` is empty).
        spectrogram: SpectrogramConfig fields of the cached STFT; the model's ``num_bins`` follows it.
        validation_cropsize: crop size of the fixed validation crops (0: the training crop size).
        context_cropsizes: crop sizes of the context-length study after training (empty: skip).
    """

    recipe: str = "supervised"
    data_root: str = ""
    valid_folder: str = "valid"
    model: str = "frame_transformer"
    model_preset: str = "small"
    model_overrides: dict = dataclasses.field(default_factory=dict)
    init_from: str = ""
    finetune: str = "full"
    llrd_decay: float = 0.8
    last_decoders: int = 1
    discriminator: str = "patch_discriminator"
    discriminator_preset: str = "default"
    adversarial: dict = dataclasses.field(default_factory=dict)
    train: dict = dataclasses.field(default_factory=dict)
    data: dict = dataclasses.field(default_factory=dict)
    loss: dict = dataclasses.field(default_factory=dict)
    synth: dict = dataclasses.field(default_factory=dict)
    spectrogram: dict = dataclasses.field(default_factory=dict)
    validation_cropsize: int = 0
    context_cropsizes: tuple[int, ...] = (256, 512, 1024, 2048)

    PRESETS = {
        "tiny": dict(model_preset="tiny", discriminator_preset="tiny", synth=dict(num_instrumentals=2, num_vocals=2,
                     num_valid=1, duration=3.0, valid_duration=3.0),
                     spectrogram=dict(n_fft=128, hop_length=64), data=dict(cropsize=16, items_per_epoch=8),
                     train=dict(steps=4, batch_size=2, warmup_steps=1, log_every=1), context_cropsizes=(16, 32)),
    }

    @classmethod
    def preset(cls, name: str = "default", **overrides: Any) -> RecipeConfig:
        """A preset with overrides; dict fields (``train``, ``data``, ...) merge into the preset's."""
        base = cls.PRESETS.get(name, {})
        merged = {k: {**base[k], **v} if isinstance(v, dict) and isinstance(base.get(k), dict) else v
                  for k, v in overrides.items()}
        return super().preset(name, **merged)

    def validate(self) -> None:
        self.require(self.recipe in RECIPES, f"recipe must be one of {RECIPES}, got {self.recipe!r}")
        self.require(self.finetune in finetune.METHODS, f"finetune must be one of {finetune.METHODS}")
        self.require(self.finetune == "full" or self.init_from, "a finetuning method needs init_from (a checkpoint)")
        self.require(0 < self.llrd_decay <= 1 and self.last_decoders >= 1, "need 0 < llrd_decay <= 1, last_decoders >= 1")
        for name, cls in (("train", TrainConfig), ("loss", losses.SeparationLossConfig), ("synth", synth.SynthConfig),
                          ("adversarial", AdversarialConfig), ("data", self.data_config_class()),
                          ("spectrogram", SpectrogramConfig)):
            try:
                cls.from_dict(getattr(self, name))
            except ConfigError as exc:
                self.require(False, f"{name}: {exc}")

    def data_config_class(self) -> type[Config]:
        return PretrainConfig if self.recipe == "pretrain" else VoxAugConfig

    def train_config(self) -> TrainConfig:
        return TrainConfig.from_dict(self.train)

    def spectrogram_config(self) -> SpectrogramConfig:
        return SpectrogramConfig.from_dict(self.spectrogram)


def dataset_root(config: RecipeConfig) -> Path:
    """The dataset folder: ``data_root``, or the synthetic dataset (generated if missing)."""
    if config.data_root:
        return Path(config.data_root)
    synth_config = synth.SynthConfig.from_dict(config.synth)
    return synth.generate(synth.dataset_dir(synth_config), synth_config)


def build_model(config: RecipeConfig) -> nn.Module:
    """The separation model: loaded from ``init_from`` or built (seeded by ``train.seed``)."""
    if config.init_from:
        model = checkpoint.load(config.init_from)
    else:
        torch.manual_seed(config.train_config().seed)
        overrides = {"num_bins": config.spectrogram_config().num_bins, **config.model_overrides}
        model = models.build(config.model, config.model_preset, **overrides)
    if getattr(model, "task", "separation") != "separation":
        raise ConfigError(f"{model.model_name} is not a separation model; recipes train separation models")
    return model


def spectrogram_cache(config: RecipeConfig) -> SpectrogramCache:
    """The shared STFT cache (``<ftlib cache>/spectrograms``) with the recipe's STFT settings."""
    return SpectrogramCache(cache_dir() / "spectrograms", config.spectrogram_config())


def build_data(config: RecipeConfig, root: Path, cache: SpectrogramCache) -> tuple[Any, Any]:
    """``(train_data, valid_data)``; ``train_data`` is ``cropsize -> Dataset`` with a curriculum."""
    train = config.train_config()
    if config.recipe == "pretrain":
        data = PretrainConfig.from_dict(config.data)
        make = lambda cropsize: MaskedPretrainDataset(root, cache, data.replace(cropsize=cropsize))  # noqa: E731
        valid_cropsize = config.validation_cropsize or data.cropsize
        valid = MaskedPretrainDataset(root, cache, data.replace(cropsize=valid_cropsize, folders=(config.valid_folder,),
                                                                items_per_epoch=max(8, train.batch_size), mixup_prob=0.0))
    else:
        data = VoxAugConfig.from_dict(config.data)
        if losses.SeparationLossConfig.from_dict(config.loss).stft:
            data = data.replace(return_phase=True)  # the STFT loss resynthesises waveforms
        make = lambda cropsize: VoxAugDataset(root, cache, data.replace(cropsize=cropsize))  # noqa: E731
        valid = ValidationCrops(root / config.valid_folder, cache, config.validation_cropsize or data.cropsize)
    return (make if train.curriculum else make(data.cropsize)), valid


def build_loss(config: RecipeConfig):
    """``(loss_fn, valid_loss_fn)`` of the recipe."""
    if config.recipe == "pretrain":
        return losses.masked_l1, losses.masked_l1
    if config.recipe == "adversarial":
        adversarial = AdversarialConfig.from_dict(config.adversarial)
        return AdversarialLoss(adversarial.discriminator_every), AdversarialLoss.validation
    spec = config.spectrogram_config()
    loss = losses.SeparationLossConfig.from_dict({"n_fft": spec.n_fft, "hop_length": spec.hop_length, **config.loss})
    return losses.SeparationLoss(loss), losses.separation_l1


def wrap_adversarial(config: RecipeConfig, generator: nn.Module) -> AdversarialSeparation:
    torch.manual_seed(config.train_config().seed + 1)
    overrides = {"in_channels": generator.config.in_channels}
    if "num_bins" in models.lookup(config.discriminator)[0].__dataclass_fields__:
        overrides["num_bins"] = generator.config.num_bins
    discriminator = models.build(config.discriminator, config.discriminator_preset, **overrides)
    return AdversarialSeparation(generator, discriminator, AdversarialConfig.from_dict(config.adversarial))


def run(config: RecipeConfig, run_dir: str | Path, stop_after: int | None = None) -> nn.Module:
    """Train the recipe into ``run_dir`` (resuming it if it holds checkpoints); returns the trained
    separation model. Writes ``recipe.json`` and, for separation recipes, ``context_length.json``."""
    run_dir = Path(run_dir)
    train = config.train_config()
    state = process_state(train.timeout_minutes, cpu=train.device == "cpu" or None)
    with state.local_main_process_first():  # one process per node fills its cache, the others reuse it
        root = dataset_root(config)
        train_data, valid_data = build_data(config, root, spectrogram_cache(config))
    if state.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "recipe.json").write_text(config.to_json() + "\n")
    model = build_model(config)
    groups = finetune.param_groups(model, config.finetune, config.llrd_decay, config.last_decoders)
    if config.recipe == "adversarial":
        model = wrap_adversarial(config, model)
        groups.append({"params": list(model.discriminator.parameters()), "lr_scale": 1.0, "name": "discriminator"})
    loss_fn, valid_loss_fn = build_loss(config)
    trained = fit(model, loss_fn, train_data, config.train_config(), run_dir, valid_data=valid_data,
                  stop_after=stop_after, param_groups=groups, valid_loss_fn=valid_loss_fn)
    separator = trained.export() if hasattr(trained, "export") else trained
    if config.recipe != "pretrain" and config.context_cropsizes and state.is_main_process and stop_after is None:
        rows = context_length_study(separator, valid_data.at, losses.separation_l1, config.context_cropsizes)
        history.save_context_length(run_dir, rows)
    return separator


def launch(config: RecipeConfig, run_dir: str | Path, num_processes: int = 1) -> nn.Module:
    """:func:`run` in this process, or in ``num_processes`` processes through Accelerate's notebook
    launcher (one per GPU; gloo on CPU); then the trained model is read back from the run folder."""
    if num_processes <= 1:
        return run(config, run_dir)
    from accelerate import notebook_launcher

    notebook_launcher(run, (config, str(run_dir)), num_processes=num_processes)
    folder = Path(run_dir) / "checkpoints"
    return checkpoint.load(folder / "best" if (folder / "best").is_dir() else latest_checkpoint(run_dir))
