"""Conditional diffusion separation: denoise the instrumental, conditioned on the mixture.

Training batches are the voxaug/validation magnitudes ``mixture`` and ``target`` ``[B, C, F, T]``,
divided by the mixture crop's maximum (so in [0, 1]). The denoiser sees, concatenated on the
channel axis, the noisy instrumental and the mixture as a condition in the normalised log domain
(:func:`to_log`). The instrumental ``x0`` is, by ``domain``:

- ``"mask"``: the ratio mask ``target / mixture`` mapped from [0, 1] to [-1, 1];
- ``"log"``: the instrumental's normalised log magnitude, ``floor`` (-80 dB) .. 1 -> -1 .. 1.

:class:`DiffusionSeparator` turns a trained denoiser into a mask model that
:class:`ftlib.separate.Separator` chunks, batches and streams like any other.
"""
from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ftlib.config import Config
from ftlib.diffusion.core import Diffusion, denoiser_device
from ftlib.errors import ConfigError

EPS = 1e-8


@dataclasses.dataclass
class SeparationDiffusionConfig(Config):
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

    ``loss = SeparationDiffusion(diffusion, config)``; ``fit(denoiser, loss, voxaug_data, ...)``. The
    denoiser is a frame transformer with ``time_embedding=True``, ``condition_channels = in_channels``
    and ``output="linear"``.
    """

    def __init__(self, diffusion: Diffusion, config: SeparationDiffusionConfig | None = None):
        self.diffusion, self.config = diffusion, config or SeparationDiffusionConfig()

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
        return self.diffusion.training_loss(model, self.encode(mixture, target), self.condition(mixture))

    @torch.no_grad()
    def sample(self, denoiser: nn.Module, mixture: torch.Tensor, sampler: str | None = None, steps: int | None = None,
               eta: float | None = None, seed: int = 0, trajectory: bool = False):
        """Instrumental mask ``[B, C, F, T]`` for ``mixture [B, C, F, T]``, sampled with ``seed`` on the
        denoiser's device and returned on the mixture's; with ``trajectory``: ``(mask, history)`` as
        :meth:`Diffusion.sample` gives it."""
        generator = torch.Generator().manual_seed(seed)
        source, mixture = mixture.device, mixture.to(denoiser_device(denoiser, mixture))
        out = self.diffusion.sample(denoiser, mixture.shape, self.condition(mixture), sampler, steps, eta,
                                    generator, mixture.device, trajectory)
        x0, history = out if trajectory else (out, None)
        mask = self.mask(mixture, x0).to(source)
        return (mask, history) if trajectory else mask


class DiffusionSeparator(nn.Module):
    """A denoiser and its sampler as a mask model: ``forward(mixture [B, C, F, T]) -> mask [B, C, F, T]``.

    ``Separator(DiffusionSeparator(denoiser, recipe, "ddim", 20))`` separates songs in chunks like a
    mask model. Every chunk batch starts from the noise of ``seed``, so results are deterministic.
    """

    task = "separation"

    def __init__(self, denoiser: nn.Module, recipe: SeparationDiffusion, sampler: str | None = None,
                 steps: int | None = None, eta: float | None = None, seed: int = 0):
        super().__init__()
        cfg = denoiser.config
        if not (getattr(cfg, "time_embedding", False) and getattr(cfg, "condition_channels", 0) == cfg.in_channels):
            raise ConfigError("the denoiser needs time_embedding=True and condition_channels == in_channels "
                              f"(got {type(cfg).__name__} without them); build it with denoiser_config()")
        self.denoiser, self.recipe = denoiser, recipe
        self.config = cfg  # num_bins and in_channels, as the separator reads them
        self.sampler, self.steps, self.eta, self.seed = sampler, steps, eta, seed

    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        return self.recipe.sample(self.denoiser, mixture, self.sampler, self.steps, self.eta, self.seed)


def evaluate_samplers(denoiser: nn.Module, recipe: SeparationDiffusion, folder: str | Path,
                      settings: Sequence[tuple[str, int]], eta: float | None = None, seed: int = 0,
                      **separator: object) -> list[dict]:
    """Whole-track SDR of ``folder``'s songs (:func:`ftlib.evaluate.evaluate_folder`) for every
    ``(sampler, steps)`` of ``settings`` (DDPM ignores ``steps`` and runs all T). ``separator``:
    :class:`~ftlib.separate.Separator` arguments (cropsize, padding, ...).

    Returns one dict per setting: ``sampler``, ``steps`` (forward passes per chunk), ``seconds``,
    the summary row's scores (``sdr_vocals``, ``input_sdr_vocals``, ...) and the per-song ``rows``.
    """
    from ftlib.evaluate import evaluate_folder
    from ftlib.separate import Separator

    out = []
    for sampler, steps in settings:
        model = DiffusionSeparator(denoiser, recipe, sampler, steps, eta, seed)
        started = time.time()
        rows = evaluate_folder(folder, separator=Separator(model, **separator))
        summary = {k: v for k, v in rows[-1].items() if k != "song"}
        out.append({"sampler": sampler, "steps": len(recipe.diffusion.sample_steps(sampler, steps)),
                    "seconds": time.time() - started, **summary, "rows": rows[:-1]})
    return out
