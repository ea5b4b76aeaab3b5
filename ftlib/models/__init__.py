"""Model registry: a name maps to ``(ConfigDataclass, nn.Module)``.

    >>> from ftlib import models
    >>> models.list_models()
    ['asym_unet_mct', 'frame_primer', 'frame_transformer', 'patch_discriminator', 'temporal_unet', ...]
    >>> model = models.build("frame_transformer", preset="tiny", channels=8)

A separation model (``model.task == "separation"``) takes a magnitude ``[B, C, F, T]``
(``C = config.in_channels``, ``F = config.num_bins``) and returns a mask in [0, 1] of the same
shape; a discriminator (``task == "discriminator"``) takes ``(mixture, candidate)``; a complex-mask
model (``task == "complex_separation"``: ``bs_roformer``, ``mel_roformer``, a frame transformer
with ``output="complex_mask"``) takes the complex STFT ``[B, C, F, T]`` and returns a complex mask,
or a real one where :func:`has_complex_mask` says so (``conv_unet`` with ``mid_side``);
:func:`instrumental_mask` reads the instrumental's from any separation model's output.
"""
from __future__ import annotations

# importing a family registers it
from ftlib.models import (asym_unet_mct, bs_roformer, conv_unet, discriminators, frame_transformer,  # noqa: F401
                          mel_reformer, temporal_unet)
from ftlib.models.registry import (build, from_config, has_complex_mask, instrumental_mask, is_complex, list_models,
                                   lookup, mask_of, register)

__all__ = ["build", "from_config", "has_complex_mask", "instrumental_mask", "is_complex", "list_models", "lookup",
           "mask_of", "register"]
