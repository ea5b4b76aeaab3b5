"""Denoising diffusion (DDPM / DDIM) with frame transformers as denoisers.

    >>> from ftlib import diffusion, models
    >>> process = diffusion.Diffusion(diffusion.DiffusionConfig(schedule="cosine", objective="v"))
    >>> config = diffusion.denoiser_config(models.lookup("frame_transformer")[0].preset("tiny"), condition_channels=2)
    >>> recipe = diffusion.SeparationDiffusion(process)           # loss_fn for ftlib.train.fit
    >>> separator = Separator(diffusion.DiffusionSeparator(denoiser, recipe, "ddim", steps=20))

- :mod:`~ftlib.diffusion.core`: schedule, forward noising, eps/v/x0 conversions, loss, samplers.
- :mod:`~ftlib.diffusion.separation`: the instrumental conditioned on the mixture, as a mask model.
- :mod:`~ftlib.diffusion.idea`: unconditional fixed-size log-mel images (the "idea" stage).
"""
from ftlib.diffusion.core import Diffusion, DiffusionConfig, betas, denoiser_config
from ftlib.diffusion.idea import IdeaConfig, MelIdeaDataset, mel_to_x0, x0_to_mel
from ftlib.diffusion.separation import (DiffusionSeparator, SeparationDiffusion, SeparationDiffusionConfig,
                                        evaluate_samplers, from_log, to_log)

__all__ = ["Diffusion", "DiffusionConfig", "DiffusionSeparator", "IdeaConfig", "MelIdeaDataset", "SeparationDiffusion",
           "SeparationDiffusionConfig", "betas", "denoiser_config", "evaluate_samplers", "from_log", "mel_to_x0",
           "to_log", "x0_to_mel"]
