"""AsymUNetMCT (2023): asymmetrically downsampled U-Net multi-channel transformer.

The U-Net halves only the frequency axis (stride (2, 1)), so every level keeps all T frames.

- A :class:`ConvolutionalEmbedding` appends one learned position channel to the input.
- After each encoder an evolved-transformer block (So et al. 2019, "The Evolved Transformer")
  extracts ``attention_maps`` channels: GLU, parallel linear / separable-conv branches, a separable
  convolution, self-attention across frames, squared-ReLU feed-forward; all per channel.
- The deepest level is a bridge of :class:`ConvolutionalTransformerEncoder` layers attending over
  all (f, t) positions of the bottleneck volume.
- Each decoder is followed by an evolved decoder block that also cross-attends to the encoder's
  maps of its level. With residual attention (RealFormer), its cross-attention starts from a
  3-D-conv gate mixing the decoder chain's scores with the encoder's scores at that level.
- Optional per-frame vocal-activity logits in 4 frequency bands, returned beside the mask.

Fixes over the seed: 1/sqrt(head_dim) scaling by default, heads adapted to each level's width,
the bridge residual keeps its sub-layers, no dtype casts inside modules.

Input ``[B, C, F, T]`` magnitude -> ``[B, C, F, T]`` mask in [0, 1]
(and ``[B, 4, T]`` activity logits with ``activity_head=True``).
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from ftlib.config import Config
from ftlib.devices import float32_scope
from ftlib.layers import (ChannelMix, FeedForward, FrameDecoder, FrameEncoder, MultichannelLayerNorm,
                          MultichannelLinear, MultichannelMultiheadAttention, SquaredReLU, heads_for)
from ftlib.layers.convolutional import ConvolutionalEmbedding, ConvolutionalTransformerEncoder, FrameConv
from ftlib.layers.transformer import ACTIVATIONS
from ftlib.models.registry import register
from ftlib.models.frame_transformer import per_level


@dataclasses.dataclass
class AsymUNetMCTConfig(Config):
    """Args:
        in_channels: audio channels C of the input magnitude (2 for stereo).
        num_bins: frequency bins F (n_fft // 2); divisible by 2^(levels - 1).
        channels: feature maps of the first level.
        channel_multipliers: one per level (at least 2); the last level is the bottleneck bridge.
        attention_maps: maps each evolved block extracts (one value, or one per non-bottleneck level).
        num_heads: attention heads (fewer at narrow levels so heads keep >= 16 features).
        expansion: evolved blocks' feed-forward hidden size as a multiple of the level's bins.
        activation: "relu2" (squared ReLU, the seed's), "gelu" or "relu".
        dropout: dropout in the transformer blocks.
        attention_dropout: dropout on the attention weights (the seed had none). Above 0, training on
            CPU leaves the fused kernel for PyTorch's math path (CUDA kernels support dropout).
        rotary: rotary position embedding in the evolved blocks' attention.
        attention_scale: "head" (1/sqrt(head_dim)) or "features" (1/sqrt(width), the seed's).
        residual_attention: pass pre-softmax scores along the encoder and decoder chains (RealFormer);
            disables the fused attention kernel in the evolved blocks.
        gated_attention: with residual attention, gate the decoders' cross-attention scores between
            the decoder chain and the encoder (else the encoder's scores are used alone).
        gate_channels: hidden channels of the 3-D convolution gate.
        bridge_layers: ConvolutionalTransformerEncoder layers at the bottleneck.
        bridge_heads: heads of the bridge attention (heads split the bottleneck's channels).
        bridge_expansion: bridge feed-forward width as a multiple of the bottleneck's channels.
        embedding_channels: channels of the convolutional position embedding's encoder.
        embedding_scales: scales of that encoder (stride (2, 2) between them).
        activity_head: also return per-frame vocal-activity logits ``[B, 4, T]`` (4 bands).
    """

    in_channels: int = 2
    num_bins: int = 1024
    channels: int = 8
    channel_multipliers: tuple[int, ...] = (1, 2, 4, 6, 8, 10, 12, 14, 16)
    attention_maps: tuple[int, ...] = (2,)
    num_heads: int = 8
    expansion: float = 4.0
    activation: str = "relu2"
    dropout: float = 0.1
    attention_dropout: float = 0.0
    rotary: bool = True
    attention_scale: str = "head"
    residual_attention: bool = True
    gated_attention: bool = True
    gate_channels: int = 4
    bridge_layers: int = 4
    bridge_heads: int = 8
    bridge_expansion: float = 4.0
    embedding_channels: int = 8
    embedding_scales: int = 4
    activity_head: bool = False

    PRESETS = {
        "tiny": dict(num_bins=64, channels=4, channel_multipliers=(1, 2, 3), attention_maps=(1,), num_heads=2,
                     expansion=1.0, dropout=0.0, bridge_layers=1, bridge_heads=2, bridge_expansion=1.0,
                     embedding_channels=2, embedding_scales=2, gate_channels=2),
    }

    @property
    def levels(self) -> int:
        return len(self.channel_multipliers)

    def validate(self) -> None:
        levels = self.levels
        self.require(levels >= 2, "channel_multipliers needs at least two levels (the last is the bridge)")
        self.require(min(self.in_channels, self.channels, self.num_heads, self.bridge_heads, self.gate_channels,
                         self.embedding_channels, self.embedding_scales, *self.channel_multipliers) >= 1,
                     "channel counts, head counts and embedding_scales must be >= 1")
        self.require(self.num_bins % 2 ** (levels - 1) == 0,
                     f"num_bins={self.num_bins} must be divisible by 2^(levels-1)={2 ** (levels - 1)}")
        self.require(len(self.attention_maps) in (1, levels - 1),
                     f"attention_maps needs 1 or {levels - 1} (one per non-bottleneck level) values")
        self.require(min(self.attention_maps) >= 1, "attention_maps must be >= 1")
        self.require(self.bridge_layers >= 0, "bridge_layers must be >= 0")
        self.require(self.expansion > 0 and self.bridge_expansion > 0, "expansions must be > 0")
        self.require(self.activation in ACTIVATIONS, f"unknown activation {self.activation!r}")
        self.require(self.attention_scale in ("head", "features"), "attention_scale must be 'head' or 'features'")
        self.require(0 <= self.dropout < 1 and 0 <= self.attention_dropout < 1, "dropouts must be in [0, 1)")


# ------------------------------------------------------------------------------ evolved blocks

def _fits(scores: torch.Tensor | None, attn: MultichannelMultiheadAttention) -> torch.Tensor | None:
    """``scores`` if ``attn`` accepts their shape, else None (heads adapt per level)."""
    return scores if attn.accepts(scores) else None


class ScoreGate(nn.Module):
    """``g * chain + (1 - g) * encoder`` for scores ``[B, M, H, T, Tm]``; ``g`` in (0, 1) comes from
    a 3-D convolution over the two score volumes stacked as channels of ``[M * H, T, Tm]``."""

    def __init__(self, hidden: int = 4, kernel: int = 3):
        super().__init__()
        self.net = nn.Sequential(nn.Conv3d(2, hidden, kernel, padding=kernel // 2), SquaredReLU(),
                                 nn.Conv3d(hidden, 1, 1), nn.Sigmoid())

    def forward(self, chain: torch.Tensor, encoder: torch.Tensor) -> torch.Tensor:
        with float32_scope(chain.device.type):  # scores stay float32 (see ftlib.layers.attention)
            g = self.net(torch.stack([chain, encoder], dim=1).float().flatten(2, 3)).view_as(chain)
            return encoder + g * (chain - encoder)


class _EvolvedBase(nn.Module):
    """Shared parts: channel-mixing embedding, attention factory, squared-ReLU feed-forward."""

    def __init__(self, in_channels: int, maps: int, features: int, num_heads: int, expansion: float,
                 activation: str, dropout: float, attention_dropout: float, attention: dict):
        super().__init__()
        self.heads = heads_for(features, num_heads)
        self._attention = lambda: MultichannelMultiheadAttention(maps, features, self.heads, dropout=attention_dropout,
                                                                 **attention)
        self._norm = lambda: MultichannelLayerNorm(maps, features)
        self.act = ACTIVATIONS[activation]()
        self.drop = nn.Dropout(dropout)
        self.embed = ChannelMix(in_channels, maps)
        self.norm_ffn = self._norm()
        self.ffn = FeedForward(maps, features, expansion, activation, dropout)


class EvolvedEncoderBlock(_EvolvedBase):
    """Evolved transformer encoder cell (So et al. 2019, fig. 3) on ``maps`` per-channel frame sequences.

    ``x [B, C_in, F, T] -> ([B, maps, F, T], scores [B, maps, H, T, T] or None)``.
    """

    def __init__(self, in_channels: int, maps: int, features: int, num_heads: int = 4, expansion: float = 4.0,
                 activation: str = "relu2", dropout: float = 0.0, attention_dropout: float = 0.0, **attention):
        super().__init__(in_channels, maps, features, num_heads, expansion, activation, dropout, attention_dropout,
                         attention)
        self.norm_glu, self.glu = self._norm(), MultichannelLinear(maps, maps, features, 2 * features)
        self.norm_branch = self._norm()
        self.branch_linear = MultichannelLinear(maps, maps, features, features)
        self.branch_conv = FrameConv(maps, features, 3)
        self.norm_conv, self.conv = self._norm(), FrameConv(maps, features, 9)
        self.norm_attn, self.attn = self._norm(), self._attention()

    def forward(self, x: torch.Tensor, prev_scores: torch.Tensor | None = None, return_scores: bool = False):
        h = self.embed(x)
        h = h + self.drop(F.glu(self.glu(self.norm_glu(h)), dim=2))
        z = self.norm_branch(h)
        h = h + self.drop(self.act(self.branch_linear(z)) + self.act(self.branch_conv(z)))
        h = h + self.drop(self.conv(self.norm_conv(h)))
        a, scores = self.attn(self.norm_attn(h), prev_scores=prev_scores, return_scores=return_scores)
        h = h + self.drop(a)
        return h + self.drop(self.ffn(self.norm_ffn(h))), scores


class EvolvedDecoderBlock(_EvolvedBase):
    """Evolved transformer decoder cell (So et al. 2019, fig. 3) with cross-attention to ``memory``
    (the encoder's maps at this level, ``[B, maps, F, T]``).

    ``forward(x, memory, prev_self, prev_cross, encoder_scores, return_scores)`` returns
    ``([B, maps, F, T], self_scores, cross_scores)``. The first cross-attention starts from the
    encoder's scores, gated with the decoder chain's ``prev_cross`` when ``gate=True``.
    """

    def __init__(self, in_channels: int, maps: int, features: int, num_heads: int = 4, expansion: float = 4.0,
                 activation: str = "relu2", dropout: float = 0.0, attention_dropout: float = 0.0, gate: bool = False,
                 gate_channels: int = 4, **attention):
        super().__init__(in_channels, maps, features, num_heads, expansion, activation, dropout, attention_dropout,
                         attention)
        self.gate = ScoreGate(gate_channels) if gate else None
        self.norm_memory = self._norm()
        self.norm_attn1, self.self_attn1, self.cross_attn1 = self._norm(), self._attention(), self._attention()
        self.norm_branch = self._norm()
        self.branch_wide, self.branch_narrow = FrameConv(maps, features, 11), FrameConv(maps, features, 7)
        self.norm_conv, self.conv = self._norm(), FrameConv(maps, features, 7)
        self.norm_attn2, self.self_attn2 = self._norm(), self._attention()
        self.norm_cross2, self.cross_attn2 = self._norm(), self._attention()

    def forward(self, x: torch.Tensor, memory: torch.Tensor, prev_self: torch.Tensor | None = None,
                prev_cross: torch.Tensor | None = None, encoder_scores: torch.Tensor | None = None,
                return_scores: bool = False):
        if self.gate is not None and prev_cross is not None and encoder_scores is not None:
            prev_cross = self.gate(prev_cross, encoder_scores)
        elif encoder_scores is not None:
            prev_cross = encoder_scores
        memory = self.norm_memory(memory)
        h = self.embed(x)
        z = self.norm_attn1(h)
        a, s_self = self.self_attn1(z, prev_scores=prev_self, return_scores=return_scores)
        c, s_cross = self.cross_attn1(z, memory=memory, prev_scores=prev_cross, return_scores=return_scores)
        h = h + self.drop(a) + self.drop(c)
        z = self.norm_branch(h)
        h = h + self.drop(self.conv(self.norm_conv(self.act(self.branch_wide(z)) + self.branch_narrow(z))))
        a, s_self = self.self_attn2(self.norm_attn2(h), prev_scores=s_self, return_scores=return_scores)
        h = h + self.drop(a)
        c, s_cross = self.cross_attn2(self.norm_cross2(h), memory=memory, prev_scores=s_cross,
                                      return_scores=return_scores)
        h = h + self.drop(c)
        return h + self.drop(self.ffn(self.norm_ffn(h))), s_self, s_cross


# ------------------------------------------------------------------------------- main class

@register("asym_unet_mct", AsymUNetMCTConfig)
class AsymUNetMCT(nn.Module):
    """AsymUNetMCT (see module docstring). ``config``: AsymUNetMCTConfig."""

    task = "separation"

    def __init__(self, config: AsymUNetMCTConfig):
        super().__init__()
        self.config = cfg = config
        levels = cfg.levels
        widths = [cfg.channels * m for m in cfg.channel_multipliers]
        bins = [cfg.num_bins // 2 ** i for i in range(levels)]
        maps = per_level(cfg.attention_maps, levels - 1)
        heads = [heads_for(f, cfg.num_heads) for f in bins]
        block = dict(num_heads=cfg.num_heads, expansion=cfg.expansion, activation=cfg.activation,
                     dropout=cfg.dropout, attention_dropout=cfg.attention_dropout, rotary=cfg.rotary,
                     scale=cfg.attention_scale)

        self.embedding = ConvolutionalEmbedding(cfg.in_channels, cfg.num_bins, cfg.embedding_channels,
                                                cfg.embedding_scales, activation=cfg.activation)
        in_ch = cfg.in_channels + 1
        self.encoders, self.encoder_blocks = nn.ModuleList(), nn.ModuleList()
        for i, width in enumerate(widths):
            stride = (2, 1) if i else (1, 1)
            self.encoders.append(FrameEncoder(in_ch, width, bins[max(i - 1, 0)], stride, cfg.activation))
            in_ch = width
            if i < levels - 1:
                self.encoder_blocks.append(EvolvedEncoderBlock(width, maps[i], bins[i], **block))
                in_ch += maps[i]
        self.bridge = nn.Sequential(*(ConvolutionalTransformerEncoder(
            in_ch, cfg.bridge_heads, cfg.bridge_expansion, cfg.activation, cfg.dropout, cfg.attention_scale,
            attention_dropout=cfg.attention_dropout)
            for _ in range(cfg.bridge_layers)))

        skip_channels = [w + m for w, m in zip(widths, maps)]
        self.decoders, self.decoder_blocks = nn.ModuleList(), nn.ModuleList()
        gated = cfg.residual_attention and cfg.gated_attention
        for j, i in enumerate(reversed(range(levels - 1))):
            # a gate only where the chain's cross scores (from the level below) match this level's
            gate = gated and j > 0 and (maps[i + 1], heads[i + 1]) == (maps[i], heads[i])
            self.decoders.append(FrameDecoder(in_ch, skip_channels[i], widths[i], bins[i], cfg.activation))
            self.decoder_blocks.append(EvolvedDecoderBlock(widths[i], maps[i], bins[i], gate=gate,
                                                           gate_channels=cfg.gate_channels, **block))
            in_ch = widths[i] + maps[i]
        # normalising the last volume keeps the mask logits out of sigmoid saturation
        self.out_norm = MultichannelLayerNorm(in_ch, cfg.num_bins)
        self.out = ChannelMix(in_ch, cfg.in_channels)
        if cfg.activity_head:
            self.activity = nn.Sequential(ChannelMix(in_ch, 1), MultichannelLinear(1, 1, cfg.num_bins, 4))
        # the separation losses use the mask only: DDP must not wait for the activity head's gradients
        self.find_unused_parameters = cfg.activity_head

    def forward(self, x: torch.Tensor):
        """``x [B, C, F, T]`` magnitude -> mask ``[B, C, F, T]`` in [0, 1], or ``(mask, activity [B, 4, T])``."""
        residual = self.config.residual_attention
        x = torch.cat([x, self.embedding(x)], dim=1)
        scores, skips, maps, encoder_scores = None, [], [], []
        for encoder, block in zip(self.encoders, self.encoder_blocks):
            x = encoder(x)
            h, scores = block(x, prev_scores=_fits(scores, block.attn), return_scores=residual)
            x = torch.cat([x, h], dim=1)
            skips.append(x)
            maps.append(h)
            encoder_scores.append(scores)
        x = self.bridge(self.encoders[-1](x))

        s_self = s_cross = None
        for j, (decoder, block) in enumerate(zip(self.decoders, self.decoder_blocks)):
            level = len(skips) - 1 - j
            x = decoder(x, skips[level])
            h, s_self, s_cross = block(x, maps[level], _fits(s_self, block.self_attn1),
                                       _fits(s_cross, block.cross_attn1), encoder_scores[level], residual)
            x = torch.cat([x, h], dim=1)
        h = self.out_norm(x)
        mask = torch.sigmoid(self.out(h))
        if self.config.activity_head:
            return mask, self.activity(h).squeeze(1)
        return mask
