"""Conditional diffusion separation: denoise the instrumental, conditioned on the mixture.

Training batches are the separation recipe's voxaug/validation magnitudes ``mixture`` and
``target`` ``[B, C, F, T]``, divided by the mixture crop's maximum (so in [0, 1]). The denoiser (a
frame transformer with a timestep embedding, see :func:`ftlib.diffusion.denoiser_config`) sees,
concatenated on the channel axis, the noisy instrumental and the mixture as a condition in the
normalised log domain (:func:`to_log`). The instrumental ``x0`` is, by ``objective.domain``:

- ``"mask"``: the ratio mask ``target / mixture`` mapped from [0, 1] to [-1, 1];
- ``"log"``: the instrumental's normalised log magnitude, ``floor`` (-80 dB) .. 1 -> -1 .. 1.

:class:`DiffusionSeparator` turns a trained denoiser into a mask model that
:class:`ftlib.separation.Separator` chunks, batches and streams like any other; :func:`evaluate`
scores the validation songs for every ``(sampler, steps)`` setting.
"""
from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ftlib import diffusion
from ftlib.config import Config as Section
from ftlib.data.synth import SynthConfig
from ftlib.data.voxaug import VoxAugConfig
from ftlib.errors import ConfigError
from ftlib.evaluate import evaluate_folder
from ftlib.recipes import separation
from ftlib.recipes.common import TINY_TRAIN, DataSection, ModelSection, Parts, gpu_train, train_parts
from ftlib.train.engine import TrainConfig

NAME = "diffusion_separation"
EPS = 1e-8


@dataclasses.dataclass
class ObjectiveConfig(Section):
    """Args:
        domain: what is denoised: "mask" (the instrumental ratio mask) or "log" (its log magnitude).
        floor: the lowest magnitude of the log domain (maps to -1; 1e-4 = -80 dB below the crop's peak).
    """

    domain: str = "mask"
    floor: float = 1e-4

    def validate(self) -> None:
        self.require(self.domain in ("mask", "log"), f"domain must be 'mask' or 'log', got {self.domain!r}")
        self.require(0 < self.floor < 1, f"floor must be in (0, 1), got {self.floor}")


def to_log(magnitude: torch.Tensor, floor: float = 1e-4) -> torch.Tensor:
    """Magnitudes in [0, 1] -> ``1 - 2 log(m) / log(floor)`` in [-1, 1] (below ``floor``: -1)."""
    return 1 - 2 * torch.log(magnitude.clamp(floor, 1.0)) / math.log(floor)


def from_log(x: torch.Tensor, floor: float = 1e-4) -> torch.Tensor:
    """Inverse of :func:`to_log`: ``floor ** ((1 - x) / 2)``."""
    return torch.exp((1 - x.clamp(-1, 1)) / 2 * math.log(floor))


class SeparationDiffusion:
    """Training loss and encodings of conditional diffusion separation (see module docstring).

    ``loss = SeparationDiffusion(process, objective)``; the denoiser is a frame transformer with
    ``time_embedding=True``, ``condition_channels = in_channels`` and ``output="linear"``.
    """

    def __init__(self, process: diffusion.Diffusion, config: ObjectiveConfig | None = None):
        self.process, self.config = process, config or ObjectiveConfig()

    def condition(self, mixture: torch.Tensor) -> torch.Tensor:
        """Mixture magnitude ``[B, C, F, T]`` in [0, 1] -> the denoiser's condition (normalised log)."""
        return to_log(mixture, self.config.floor)

    def encode(self, mixture: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Instrumental magnitude ``target [B, C, F, T]`` -> ``x0`` in [-1, 1]."""
        if self.config.domain == "mask":
            return 2 * (target / (mixture + EPS)).clamp(0, 1) - 1
        return to_log(target, self.config.floor)

    def mask(self, mixture: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """Sampled ``x0`` -> the instrumental mask in [0, 1] of ``mixture`` (both ``[B, C, F, T]``)."""
        if self.config.domain == "mask":
            return ((x0 + 1) / 2).clamp(0, 1)
        return (from_log(x0, self.config.floor) / (mixture + EPS)).clamp(0, 1)

    def __call__(self, model: nn.Module, batch: dict[str, torch.Tensor]):
        """``(loss, metrics)`` on a batch of ``mixture`` and ``target`` magnitudes."""
        mixture, target = batch["mixture"].float(), batch["target"].float()
        return self.process.training_loss(model, self.encode(mixture, target), self.condition(mixture))

    @torch.no_grad()
    def sample(self, denoiser: nn.Module, mixture: torch.Tensor, sampler: str | None = None, steps: int | None = None,
               eta: float | None = None, seed: int = 0, trajectory: bool = False):
        """Instrumental mask ``[B, C, F, T]`` for ``mixture [B, C, F, T]``, sampled with ``seed`` on the
        denoiser's device and returned on the mixture's; with ``trajectory``: ``(mask, history)`` as
        :meth:`ftlib.diffusion.Diffusion.sample` gives it."""
        generator = torch.Generator().manual_seed(seed)
        source, mixture = mixture.device, mixture.to(diffusion.denoiser_device(denoiser, mixture))
        out = self.process.sample(denoiser, mixture.shape, self.condition(mixture), sampler, steps, eta,
                                  generator, mixture.device, trajectory)
        x0, history = out if trajectory else (out, None)
        mask = self.mask(mixture, x0).to(source)
        return (mask, history) if trajectory else mask


class DiffusionSeparator(nn.Module):
    """A denoiser and its sampler as a mask model: ``forward(mixture [B, C, F, T]) -> mask [B, C, F, T]``.

    ``Separator(DiffusionSeparator(denoiser, objective, "ddim", 20))`` separates songs in chunks like
    a mask model. Every chunk batch starts from the noise of ``seed``, so results are deterministic.
    """

    task = "separation"

    def __init__(self, denoiser: nn.Module, objective: SeparationDiffusion, sampler: str | None = None,
                 steps: int | None = None, eta: float | None = None, seed: int = 0):
        super().__init__()
        cfg = denoiser.config
        if not (getattr(cfg, "time_embedding", False) and getattr(cfg, "condition_channels", 0) == cfg.in_channels):
            raise ConfigError("the denoiser needs time_embedding=True and condition_channels == in_channels "
                              f"(got {type(cfg).__name__} without them); build it with denoiser_config()")
        self.denoiser, self.objective = denoiser, objective
        self.config = cfg  # num_bins and in_channels, as the separator reads them
        self.sampler, self.steps, self.eta, self.seed = sampler, steps, eta, seed

    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        return self.objective.sample(self.denoiser, mixture, self.sampler, self.steps, self.eta, self.seed)


# ---------------------------------------------------------------------------------- the recipe

@dataclasses.dataclass
class EvaluationSection(Section):
    """Args:
        samplers: ``(sampler, steps)`` settings scored on the validation songs (DDPM runs all T steps).
        cropsize: frames per chunk when separating (0: the training crop size).
        padding: real context frames on each side of a chunk.
        songs: validation songs separated per setting (0: none).
    """

    samplers: tuple[tuple[str, int], ...] = (("ddim", 5), ("ddim", 10), ("ddim", 20), ("ddim", 50))
    cropsize: int = 0
    padding: int = 32
    songs: int = 4

    def validate(self) -> None:
        self.require(all(len(s) == 2 and s[0] in diffusion.SAMPLERS for s in self.samplers),
                     f"samplers must be (sampler, steps) pairs with a sampler of {diffusion.SAMPLERS}")
        self.require(min(self.cropsize, self.padding, self.songs) >= 0, "cropsize, padding and songs must be >= 0")


@dataclasses.dataclass
class Config(Section):
    """The diffusion separation recipe (see the module docstring); ``model`` is the frame
    transformer made a denoiser; ``seed`` seeds the model, data, steps and samplers."""

    data: DataSection = dataclasses.field(default_factory=DataSection)
    model: ModelSection = dataclasses.field(default_factory=lambda: ModelSection(preset="medium"))
    voxaug: VoxAugConfig = dataclasses.field(default_factory=VoxAugConfig)
    diffusion: diffusion.DiffusionConfig = dataclasses.field(default_factory=lambda: diffusion.DiffusionConfig(
        schedule="cosine"))
    objective: ObjectiveConfig = dataclasses.field(default_factory=ObjectiveConfig)
    train: TrainConfig = dataclasses.field(default_factory=gpu_train)
    evaluation: EvaluationSection = dataclasses.field(default_factory=EvaluationSection)
    seed: int = 0

    PRESETS = {
        "tiny": dict(data=dict(synth=SynthConfig.PRESETS["tiny"], spectrogram=dict(n_fft=128, hop_length=64)),
                     model=dict(preset="tiny"), voxaug=dict(cropsize=16, items_per_epoch=8),
                     diffusion=dict(timesteps=10, sampling_steps=2),
                     train=TINY_TRAIN,
                     evaluation=dict(samplers=(("ddim", 2),), padding=4, songs=1)),
        "cpu": dict(model=dict(preset="small", overrides={"channels": 4}), voxaug=dict(cropsize=64),
                    train=dict(steps=400, batch_size=4, lr=1e-3, warmup_steps=25, eval_every=100,
                               checkpoint_every=100, log_every=10, ema_decay=0.0),
                    evaluation=dict(samplers=(("ddim", 5), ("ddim", 10), ("ddim", 20)))),
        "gpu": {},
    }

    def objective_fn(self) -> SeparationDiffusion:
        return SeparationDiffusion(diffusion.Diffusion(self.diffusion), self.objective)

    def separation_config(self) -> separation.Config:
        """The separation recipe with the same data, network, crops and training: the mask-model
        baseline a denoiser is compared with."""
        return separation.Config(data=self.data, model=self.model, voxaug=self.voxaug, train=self.train,
                                 evaluation=dict(context_cropsizes=(), cropsize=self.evaluation.cropsize,
                                                 padding=self.evaluation.padding, songs=self.evaluation.songs),
                                 seed=self.seed)


def build_denoiser(config: Config) -> nn.Module:
    """The denoiser: ``model`` with a timestep embedding, the mixture as condition and a linear output."""
    if config.model.init_from:
        raise ConfigError("diffusion_separation builds its denoiser from model.name/preset; init_from is not supported")
    base = config.model.build(config.seed, num_bins=config.data.spectrogram.num_bins)
    denoiser = diffusion.denoiser_config(base.config, condition_channels=base.config.in_channels)
    torch.manual_seed(config.seed)
    return type(base)(denoiser)


def build(config: Config) -> Parts:
    train_data, valid_data = separation.build_data(config.separation_config())
    return Parts(build_denoiser(config), config.objective_fn(), train_data, valid_data)


def train(config: Config, run_dir: str | Path, stop_after: int | None = None) -> nn.Module:
    """Train the denoiser into ``run_dir`` (resuming it); returns the denoiser."""
    return train_parts(NAME, config, build, run_dir, stop_after)


def evaluate(model: nn.Module, config: Config, run_dir: str | Path) -> dict[str, Any]:
    """Validation-song scores for every sampler setting (``"samplers"``: one dict per setting)."""
    if not config.evaluation.songs:
        return {}
    rows = evaluate_samplers(model, config, config.evaluation.samplers)
    return {"samplers": rows, **{f"sdr_vocals_{r['sampler']}_{r['steps']}": r["sdr_vocals"] for r in rows}}


def evaluate_samplers(denoiser: nn.Module, config: Config, settings: Sequence[tuple[str, int]],
                      eta: float | None = None, **options: Any) -> list[dict]:
    """Whole-track scores of the validation songs for every ``(sampler, steps)`` of ``settings``.

    Returns one dict per setting: ``sampler``, ``steps`` (forward passes per chunk), ``seconds``,
    the summary scores (``sdr_vocals``, ``input_sdr_vocals``, ...) and the per-song ``rows``.
    """
    folder = config.data.dataset_root() / config.data.valid_folder
    objective, mask_config = config.objective_fn(), config.separation_config()
    out = []
    for sampler, steps in settings:
        model = DiffusionSeparator(denoiser, objective, sampler, steps, eta, config.seed)
        started = time.time()
        rows = evaluate_folder(folder, separator=separation.separator(model, mask_config, **options),
                               limit=config.evaluation.songs)
        summary = {k: v for k, v in rows[-1].items() if k != "song"}
        out.append({"sampler": sampler, "steps": len(objective.process.sample_steps(sampler, steps)),
                    "seconds": time.time() - started, **summary, "rows": rows[:-1]})
    return out

