"""Multichannel multi-head attention: independent attention across frames for every channel.

Each channel of ``[B, C, F, T]`` is a sequence of T frames with F features. Heads split F.
Scaling is ``1/sqrt(head_dim)`` by default (``scale="features"`` gives the older ``1/sqrt(F)``).
Optional convolutions around the q/k/v projections: ``"primer"`` (a depthwise 1 x k convolution
over frames after each projection, So et al. 2021) or ``"kxk"`` (a k x k convolution before each
projection).
With residual attention (He et al. 2020, RealFormer) the pre-softmax scores of one block are
added to the next block's; that needs the explicit path, which computes and carries the scores in
float32 (under autocast too: half-precision logits lose resolution, and fp16 ones overflow).
Otherwise the fused ``scaled_dot_product_attention`` kernel runs.

Memory of the explicit path: every layer keeps its ``[B, C, H, T, Tm]`` attention weights for the
backward pass, in float32 plus a copy in the activations' dtype (6 bytes per score with bf16 or
fp16 activations, 8 in float32); :func:`ftlib.models.inspect.score_memory` adds them up for a model.
"""
from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ftlib.devices import float32_scope
from ftlib.layers.multichannel import MultichannelLinear
from ftlib.layers.rotary import RotaryEmbedding


def fused_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                    dropout: float = 0.0) -> torch.Tensor:
    """``scaled_dot_product_attention`` on ``[N, H, T, D]`` queries, keys and values.

    The fused kernels (flash, memory-efficient) need unit stride along D; with any other layout
    (a head view of a ``[B, C, F, T]`` volume, say) PyTorch silently takes its unfused math path,
    so the inputs are made contiguous first.
    """
    return F.scaled_dot_product_attention(q.contiguous(), k.contiguous(), v.contiguous(),
                                          dropout_p=dropout, scale=scale)


def residual_links(enabled: bool, signatures: Sequence[Hashable]) -> tuple[list[bool], list[bool]]:
    """Which layers of a residual-attention chain take the previous layer's scores and which must
    return theirs, for layers run in this order whose score shapes are described by ``signatures``
    (e.g. ``(channels, heads, frames)``): scores flow between neighbours of equal signature only, so
    a layer whose neighbours differ from it runs the fused kernel. Returns ``(receives, returns)``."""
    n = len(signatures)
    same = [enabled and signatures[i] == signatures[i + 1] for i in range(n - 1)]
    return [False, *same], [*same, False]


def heads_for(features: int, num_heads: int, min_head_dim: int = 16) -> int:
    """The largest head count ``<= num_heads`` that divides ``features`` with heads of at least
    ``min_head_dim`` features (at least one head), so narrow levels never get degenerate heads."""
    for heads in range(min(num_heads, max(1, features // min_head_dim)), 0, -1):
        if features % heads == 0 and (features // heads) % 2 == 0:
            return heads
    return 1


class MultichannelMultiheadAttention(nn.Module):
    """Attention across frames, in parallel over channels.

    Args:
        channels: C, attention runs independently for each channel.
        features: F, the embedding size of a frame (split across heads).
        num_heads: heads per channel (``features`` must divide evenly).
        rotary: rotary position embedding on queries and keys.
        scale: ``"head"`` (1/sqrt(head_dim)) or ``"features"`` (1/sqrt(F), the seed's choice).
        dropout: dropout on the attention weights (training only). PyTorch's CPU flash kernel has no
            dropout, so above 0 training on CPU takes the unfused math path; CUDA kernels support it.
        qkv_conv: ``"none"``, ``"primer"`` or ``"kxk"`` (see the module docstring).
        qkv_kernel: kernel size of that convolution.

    Set ``capture = True`` to keep the last attention weights ``[B, C, H, T, Tm]`` in ``weights``.
    """

    def __init__(self, channels: int, features: int, num_heads: int, rotary: bool = True,
                 scale: str = "head", dropout: float = 0.0, qkv_conv: str = "none", qkv_kernel: int = 3):
        super().__init__()
        if features % num_heads:
            raise ValueError(f"features={features} is not divisible by num_heads={num_heads}")
        self.channels, self.num_heads = channels, num_heads
        self.head_dim = features // num_heads
        self.scale = 1 / math.sqrt(self.head_dim if scale == "head" else features)
        self.dropout = dropout
        self.q = MultichannelLinear(channels, channels, features, features)
        self.k = MultichannelLinear(channels, channels, features, features)
        self.v = MultichannelLinear(channels, channels, features, features)
        self.o = MultichannelLinear(channels, channels, features, features)
        if qkv_conv not in ("none", "primer", "kxk"):
            raise ValueError(f"qkv_conv must be 'none', 'primer' or 'kxk', got {qkv_conv!r}")
        self.qkv_conv = qkv_conv
        if qkv_conv == "primer":  # depthwise over frames, after the projection
            conv = lambda: nn.Conv2d(channels, channels, (1, qkv_kernel), padding=(0, qkv_kernel // 2), groups=channels)
        else:  # full k x k over (frequency, frames), before the projection
            conv = lambda: nn.Conv2d(channels, channels, qkv_kernel, padding=qkv_kernel // 2, bias=False)
        self.convs = nn.ModuleList([conv() for _ in range(3)]) if qkv_conv != "none" else None
        self.rotary = RotaryEmbedding(self.head_dim) if rotary else None
        self.force_explicit = False  # for tests and benchmarks: skip the fused kernel
        self.capture = False
        self.weights: torch.Tensor | None = None

    def accepts(self, scores: torch.Tensor | None) -> bool:
        """Whether ``scores`` (a previous layer's, ``[B, C, H, T, Tm]``) fit this layer's shape."""
        return scores is not None and tuple(scores.shape[1:3]) == (self.channels, self.num_heads)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return rearrange(x, "b c (h d) t -> b c h t d", h=self.num_heads)

    def _project(self, i: int, linear: MultichannelLinear, x: torch.Tensor) -> torch.Tensor:
        if self.qkv_conv == "kxk":
            return linear(self.convs[i](x))
        if self.qkv_conv == "primer":
            return self.convs[i](linear(x))
        return linear(x)

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None,
                prev_scores: torch.Tensor | None = None, return_scores: bool = False):
        """``x [B, C, F, T]``, optional ``memory [B, C, F, Tm]`` for cross-attention,
        optional ``prev_scores [B, C, H, T, Tm]``. Returns ``[B, C, F, T]`` and the
        pre-softmax scores (or None when not requested)."""
        source = x if memory is None else memory
        q, k, v = (self._heads(self._project(i, proj, inp)) for i, (proj, inp) in
                   enumerate(((self.q, x), (self.k, source), (self.v, source))))
        if self.rotary is not None:
            q, k = self.rotary(q), self.rotary(k)
        dropout = self.dropout if self.training else 0.0
        scores = None
        if prev_scores is not None or return_scores or self.force_explicit or self.capture:
            with float32_scope(q.device.type):
                scores = torch.matmul(q.float() * self.scale, k.float().transpose(-1, -2))
                if prev_scores is not None:
                    scores = scores + prev_scores
                weights = scores.softmax(dim=-1)
            if self.capture:
                self.weights = weights.detach()
            out = torch.matmul(F.dropout(weights, dropout, self.training).to(v.dtype), v)
        else:
            b, c = q.shape[:2]
            out = fused_attention(q.flatten(0, 1), k.flatten(0, 1), v.flatten(0, 1), self.scale,
                                  dropout).unflatten(0, (b, c))
        out = self.o(rearrange(out, "b c h t d -> b c (h d) t"))
        return out, (scores if return_scores else None)
