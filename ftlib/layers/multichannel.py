"""Per-channel linear layers and norms over the frequency axis of ``[B, C, F, T]`` volumes."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def mix_channels(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``weight [C_out, C_in]`` applied to the channels of ``x [B, C_in, F, T]`` -> ``[B, C_out, F, T]``.

    One ``bmm`` against the weight expanded over the batch: ``torch.matmul`` of a matrix with a
    batch of matrices folds the batch through a transposed copy of the whole activation.
    """
    b, c, f, t = x.shape
    return torch.bmm(weight.expand(b, -1, -1), x.reshape(b, c, f * t)).view(b, -1, f, t)


class MultichannelLinear(nn.Module):
    """A separate linear map ``F_in -> F_out`` for every channel, applied to every frame.

    ``[B, C_in, F_in, T] -> [B, C_out, F_out, T]``. When ``in_channels != out_channels`` (or
    ``mix_channels=True``) a channel-mixing matrix (a bias-free 1x1 convolution) first maps
    ``C_in -> C_out``; the per-channel maps then run as one batched matmul over channels.
    """

    def __init__(self, in_channels: int, out_channels: int, in_features: int, out_features: int,
                 bias: bool = True, mix_channels: bool | None = None):
        super().__init__()
        mix = in_channels != out_channels if mix_channels is None else mix_channels
        if not mix and in_channels != out_channels:
            raise ValueError("channel counts differ, so channels must be mixed")
        self.mix = nn.Parameter(torch.empty(out_channels, in_channels)) if mix else None
        self.weight = nn.Parameter(torch.empty(out_channels, out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_channels, out_features, 1)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.mix is not None:
            nn.init.uniform_(self.mix, -1 / math.sqrt(self.mix.shape[1]), 1 / math.sqrt(self.mix.shape[1]))
        bound = 1 / math.sqrt(self.weight.shape[-1])
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mix is not None:
            x = mix_channels(self.mix, x)
        # one GEMM per channel over all B * T frames; torch.matmul would broadcast (copy) the weight
        # once per batch item and keep the copies for the backward pass
        x = torch.einsum("cof,bcft->bcot", self.weight, x)
        # the bias in the activation's dtype: under autocast a float32 bias would promote every
        # output (q, k, v, feed-forward hidden, the residual stream) back to float32
        return x if self.bias is None else x + self.bias.to(x.dtype)


class MultichannelLayerNorm(nn.Module):
    """LayerNorm over the frequency axis of each frame, with per-channel affine parameters.

    ``[B, C, F, T] -> [B, C, F, T]``; statistics are taken per (b, c, t), so it is local in time.
    """

    def __init__(self, channels: int, features: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels, features, 1))
        self.bias = nn.Parameter(torch.zeros(channels, features, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # layer_norm over a transposed view is one fused pass; the per-channel affine follows
        x = F.layer_norm(x.transpose(2, 3), x.shape[2:3], eps=self.eps).transpose(2, 3)
        return torch.addcmul(self.bias, x, self.weight)


class ChannelMix(nn.Module):
    """Bias-free 1x1 convolution ``[B, C_in, F, T] -> [B, C_out, F, T]`` as one matmul.

    (A matmul is several times faster than a 1x1 ``Conv2d`` on CPU for few channels.)
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels))
        nn.init.uniform_(self.weight, -1 / math.sqrt(in_channels), 1 / math.sqrt(in_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mix_channels(self.weight, x)
