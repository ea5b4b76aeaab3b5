"""Stereo input features for mask models that read the complex STFT."""
from __future__ import annotations

import torch


def mid_side_magnitudes(x: torch.Tensor) -> torch.Tensor:
    """Complex stereo STFT ``[B, 2, F, T]`` -> magnitudes ``[B, 4, F, T]``: left, right, mid
    ``(L + R) / 2`` and side ``(L - R) / 2``.

    Two magnitudes alone do not say how the channels' phases agree; the mid and side do: a source
    panned to the centre (as lead vocals usually are) adds to the mid and cancels in the side.
    """
    if not x.is_complex() or x.ndim != 4 or x.shape[1] != 2:
        raise ValueError(f"mid/side features need a complex stereo STFT [B, 2, F, T], got {x.dtype} {tuple(x.shape)}")
    left, right = x[:, :1], x[:, 1:]
    return torch.cat([x.abs(), ((left + right) / 2).abs(), ((left - right) / 2).abs()], dim=1)
