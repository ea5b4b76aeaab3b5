"""Rotary position embedding (Su et al. 2021, RoFormer) over the frame axis."""
from __future__ import annotations

import torch
from torch import nn


class RotaryEmbedding(nn.Module):
    """Rotates pairs of features of ``[..., T, D]`` by position-dependent angles.

    Works for any sequence length: angles are computed for the length at hand, so relative
    positions are never tied to the training crop size.
    """

    def __init__(self, dim: int, base: float = 10000.0):
        super().__init__()
        if dim % 2:
            raise ValueError(f"rotary dimension must be even, got {dim}")
        inv_freq = base ** (-torch.arange(0, dim, 2, dtype=torch.float32) / dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def angles(self, length: int, device: torch.device, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        pos = torch.arange(offset, offset + length, device=device, dtype=torch.float32)
        freqs = torch.outer(pos, self.inv_freq.to(device))  # [T, D/2]
        return freqs.cos(), freqs.sin()

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        cos, sin = self.angles(x.shape[-2], x.device, offset)
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)
        x1, x2 = x[..., 0::2], x[..., 1::2]
        rotated = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
        return rotated.flatten(-2)
