"""Nearest-neighbour speed trick: run a separation model at half the frequency resolution.

The input magnitude's frequency axis is downsampled by 2 (nearest neighbour: every other bin),
the wrapped model predicts a mask at ``F / 2`` bins, and the mask is upsampled back to ``F`` bins
(bicubic, clamped to [0, 1]). The loss is computed at full resolution as usual; attention and
convolutions cost about half (or a quarter, for F x F weights) of the full-resolution model.

    inner = models.build("frame_transformer", "tiny", num_bins=32)
    model = HalfResolution(inner)          # takes [B, C, 64, T], returns a [B, C, 64, T] mask

Checkpoints save the inner model: ``model.config`` is the inner config, ``model.model_name`` the
inner name and ``state_dict`` / ``load_state_dict`` are the inner model's, so ``checkpoint.save(model)``
writes an ordinary checkpoint of the inner model, ``checkpoint.load`` gives the inner model back
(wrap it again for full-resolution input) and the training engine resumes a wrapped run unchanged.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ftlib.models.registry import mask_of


class HalfResolution(nn.Module):
    """Wrap ``inner`` (a separation model with ``config.num_bins = F / 2``) to take ``[B, C, F, T]``."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    @property
    def config(self):
        return self.inner.config

    @property
    def model_name(self) -> str:
        return self.inner.model_name

    def forward(self, x: torch.Tensor):
        """``[B, C, F, T]`` magnitude -> ``[B, C, F, T]`` mask (a tuple stays a tuple, mask first)."""
        num_bins = x.shape[-2]
        if num_bins != 2 * self.config.num_bins:
            raise ValueError(f"HalfResolution expects {2 * self.config.num_bins} bins (twice the inner model's "
                             f"num_bins={self.config.num_bins}), got input of shape {tuple(x.shape)}")
        output = self.inner(x[..., ::2, :])  # nearest-neighbour downsampling of F by 2
        half = mask_of(output)
        mask = F.interpolate(half, size=x.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1)
        return (mask, *output[1:]) if isinstance(output, (tuple, list)) else mask

    # the inner model's weights, unprefixed (see module docstring)
    def state_dict(self, *args, **kwargs):
        return self.inner.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.inner.load_state_dict(state_dict, strict=strict, assign=assign)
