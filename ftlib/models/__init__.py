"""Model registry: a name maps to ``(ConfigDataclass, nn.Module)``.

    >>> from ftlib import models
    >>> models.list_models()
    ['asym_unet_mct', 'frame_primer', 'frame_transformer', 'patch_discriminator', 'temporal_unet', ...]
    >>> model = models.build("frame_transformer", preset="tiny", channels=8)

A separation model (``model.task == "separation"``) takes a magnitude ``[B, C, F, T]``
(``C = config.in_channels``, ``F = config.num_bins``) and returns a mask in [0, 1] of the same
shape; a discriminator (``task == "discriminator"``) takes ``(mixture, candidate)``.
"""
from __future__ import annotations

# importing a family registers it
from ftlib.models import asym_unet_mct, discriminators, frame_transformer, mel_reformer, temporal_unet  # noqa: F401
from ftlib.models.registry import build, from_config, list_models, lookup, mask_of, register

__all__ = ["build", "from_config", "list_models", "lookup", "mask_of", "register"]
