"""Frame transformer: an asymmetric U-Net with frame transformer blocks at every level.

The U-Net halves only the frequency axis (stride (2, 1)), so every level keeps all T frames.
After each encoder a :class:`FrameTransformerBlock` extracts ``attention_maps[i]`` channels that
attend across frames and are concatenated to the volume; each decoder is followed by a block that
also cross-attends to the skip connection (``decoder_attention="skip"``, the seed's v4) or only
self-attends (``"self"``, v8). Options reproduce the rest of the v4 / v8 / v8.1 line:

- v4: Primer depthwise convolutions after the q/k/v projections, squared-ReLU feed-forward.
- v8: a transformer on the raw input (``input_attention_maps``), one residual-attention chain
  through every block (RealFormer), a k x k convolution before the q/k/v projections.
- v8.1: every block also attends to the input spectrogram pooled to its level (``source_attention``),
  per-level feed-forward expansion.

``frame_primer`` (2022) is the same network configured as the FramePrimer: frequency-only (N x 1)
frame convolutions, densely connected stacks of blocks per level, each squeezing the volume to a
few maps attended as one flattened frame vector, Primer q/k/v convolutions and squared ReLU.

A per-frame norm, a bias-free 1x1 projection and a sigmoid give the magnitude mask.
Input ``[B, C, F, T]`` magnitude -> output ``[B, C, F, T]`` mask in [0, 1].

With ``output="complex_mask"`` the model is phase-aware (``task = "complex_separation"``): it
reads the complex STFT ``[B, C, F, T]`` (as its magnitude, real and imaginary parts: 3C input
maps) and returns an unbounded complex mask ``[B, C, F, T]`` (2C output maps, real and
imaginary), so ``mask * spec`` can correct the phase as well as the level. With ``mid_side`` it
reads the complex stereo STFT too but sees the magnitudes of left, right, mid and side
(:func:`~ftlib.layers.mid_side_magnitudes`, 4 input maps) and returns a magnitude mask.

As a diffusion denoiser (:mod:`ftlib.diffusion`) the same network takes a timestep ``t [B]``
(``time_embedding``: sinusoids + MLP, projected by every block onto its extracted maps), optional
conditioning channels concatenated to the input (``condition_channels``, e.g. the mixture) and has
an unbounded output (``output="linear"``, no sigmoid).
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from ftlib.config import Config
from ftlib.layers import (ChannelMix, FrameDecoder, FrameEncoder, FrameTransformerBlock, MultichannelLayerNorm,
                          TimestepEmbedding, mid_side_magnitudes, residual_links)
from ftlib.models.registry import COMPLEX, register


def per_level(values: tuple, levels: int) -> tuple:
    """One value per level: a single value is repeated."""
    return tuple(values) * levels if len(values) == 1 else tuple(values)


@dataclasses.dataclass
class FrameTransformerConfig(Config):
    """Args:
        in_channels: audio channels C of the input magnitude (2 for stereo).
        num_bins: frequency bins F of the input (n_fft // 2); divisible by 2^(levels - 1).
        channels: feature maps of the first U-Net level.
        channel_multipliers: one entry per level; level i has ``channels * m[i]`` maps at F / 2^i bins.
        attention_maps: maps each level's blocks extract (one value for all levels, or one per level).
        input_attention_maps: maps of a block on the raw input before the first encoder (0: none; v8).
        decoder_attention: "skip" (decoder blocks cross-attend to the skip, v4) or "self" (v8).
        source_attention: every block also cross-attends to the input magnitude pooled to its level (v8.1).
        num_heads: attention heads (fewer at narrow levels so heads keep >= 16 features).
        expansion: feed-forward hidden size as a multiple of the level's bins (one value or one per level).
        activation: "gelu", "relu2" (squared ReLU, Primer) or "relu", in blocks and convolutions.
        dropout: dropout in the transformer blocks.
        attention_dropout: dropout on the attention weights (the seed had none). Above 0, training on
            CPU leaves the fused kernel for PyTorch's math path (CUDA kernels support dropout).
        rotary: rotary position embedding on queries and keys.
        attention_scale: "head" (1/sqrt(head_dim)) or "features" (1/sqrt(F), the seed's).
        qkv_conv: "none", "primer" (depthwise 1 x k after q/k/v, v4) or "kxk" (k x k before, v8).
        qkv_kernel: kernel size of that convolution.
        residual_attention: add each block's pre-softmax scores to the next one's (RealFormer) while
            shapes match; blocks in such a chain run the explicit attention path (see
            :mod:`ftlib.layers.attention` for its memory).
        transformer_from_level: levels below this one get no transformer blocks (the full-resolution
            levels are the most expensive).
        blocks_per_level: densely connected blocks per level (each sees the maps of the ones before).
        flatten_maps: blocks attend over their maps flattened into one vector per frame.
        conv_kernel: kernel of the U-Net convolutions, (3, 3) or frequency-only (3, 1).
        time_embedding: take a diffusion timestep ``t`` (sinusoidal embedding + MLP, added by a
            per-block projection to every block's extracted maps); the model is then a denoiser.
        time_features: width of the timestep embedding.
        condition_channels: channels of a ``condition [B, Cc, F, T]`` concatenated to the input.
        output: "mask" (sigmoid, in [0, 1]), "linear" (unbounded: denoisers) or "complex_mask"
            (complex STFT in, complex mask out).
        mid_side: read the complex stereo STFT and see the magnitudes of its mid ``(L + R) / 2`` and
            side ``(L - R) / 2`` beside those of left and right (``in_channels`` 2, ``output="mask"``).
    """

    in_channels: int = 2
    num_bins: int = 1024
    channels: int = 16
    channel_multipliers: tuple[int, ...] = (1, 2, 4, 6, 8, 10)
    attention_maps: tuple[int, ...] = (2,)
    input_attention_maps: int = 0
    decoder_attention: str = "skip"
    source_attention: bool = False
    num_heads: int = 8
    expansion: tuple[float, ...] = (2.0,)
    activation: str = "gelu"
    dropout: float = 0.0
    attention_dropout: float = 0.0
    rotary: bool = True
    attention_scale: str = "head"
    qkv_conv: str = "none"
    qkv_kernel: int = 3
    residual_attention: bool = False
    transformer_from_level: int = 0
    blocks_per_level: int = 1
    flatten_maps: bool = False
    conv_kernel: tuple[int, int] = (3, 3)
    time_embedding: bool = False
    time_features: int = 64
    condition_channels: int = 0
    output: str = "mask"
    mid_side: bool = False

    PRESETS = {
        "tiny": dict(num_bins=64, channels=4, channel_multipliers=(1, 2, 3), attention_maps=(1,), num_heads=2),
        # the quickstart model: no attention at the two full-resolution levels, fits a 2-core CPU
        "small": dict(channels=4, channel_multipliers=(1, 2, 3, 4, 5, 6), attention_maps=(1,), num_heads=4,
                      expansion=(1.0,), transformer_from_level=2),
        # the quickstart model with a complex-mask head (phase-aware)
        "small_complex": dict(channels=4, channel_multipliers=(1, 2, 3, 4, 5, 6), attention_maps=(1,), num_heads=4,
                              expansion=(1.0,), transformer_from_level=2, output="complex_mask"),
        # attention at every level, for benchmarks and GPU experiments
        "medium": dict(channels=8, attention_maps=(2,), num_heads=4, expansion=(2.0,)),
        # the seed's frame_transformer_v4 at 32 channels (192.7 M parameters published)
        "v4": dict(channels=32, attention_maps=(4, 6, 8, 12, 14, 16), num_heads=4, expansion=(4.0,),
                   activation="relu2", qkv_conv="primer", attention_scale="features", dropout=0.1),
        # v8 at 16 channels: input transformer, encoder-style decoder blocks, one residual chain
        "v8": dict(channels=16, attention_maps=(8,), input_attention_maps=8, decoder_attention="self", num_heads=4,
                   expansion=(2.0,), activation="relu2", qkv_conv="kxk", residual_attention=True, dropout=0.1),
        # v8.1: v8 plus source attention and feed-forward expansion growing towards the narrow levels
        "v8.1": dict(channels=16, attention_maps=(8,), input_attention_maps=8, decoder_attention="self",
                     source_attention=True, num_heads=4, expansion=(1.0, 1.0, 2.0, 2.0, 4.0, 4.0),
                     activation="relu2", qkv_conv="kxk", residual_attention=True, dropout=0.1),
    }

    @property
    def levels(self) -> int:
        return len(self.channel_multipliers)

    def validate(self) -> None:
        levels = self.levels
        self.require(levels >= 1, "channel_multipliers needs at least one level")
        self.require(min(self.in_channels, self.channels, self.num_heads, *self.channel_multipliers) >= 1,
                     "in_channels, channels, channel_multipliers and num_heads must be >= 1")
        self.require(self.num_bins % 2 ** (levels - 1) == 0,
                     f"num_bins={self.num_bins} must be divisible by 2^(levels-1)={2 ** (levels - 1)}")
        for name in ("attention_maps", "expansion"):
            self.require(len(getattr(self, name)) in (1, levels), f"{name} needs 1 or {levels} (one per level) values")
        self.require(min(self.attention_maps) >= 1 and self.input_attention_maps >= 0, "attention maps must be >= 1")
        self.require(self.decoder_attention in ("skip", "self"), "decoder_attention must be 'skip' or 'self'")
        self.require(self.activation in ("gelu", "relu2", "relu"), f"unknown activation {self.activation!r}")
        self.require(self.attention_scale in ("head", "features"), "attention_scale must be 'head' or 'features'")
        self.require(self.qkv_conv in ("none", "primer", "kxk"), "qkv_conv must be 'none', 'primer' or 'kxk'")
        self.require(0 <= self.dropout < 1 and 0 <= self.attention_dropout < 1, "dropouts must be in [0, 1)")
        self.require(self.blocks_per_level >= 1, "blocks_per_level must be >= 1")
        self.require(len(self.conv_kernel) == 2 and all(k % 2 for k in self.conv_kernel), "conv_kernel: two odd sizes")
        self.require(self.time_features >= 2 and self.time_features % 2 == 0, "time_features must be even and >= 2")
        self.require(self.condition_channels >= 0, "condition_channels must be >= 0")
        self.require(self.output in ("mask", "linear", "complex_mask"),
                     "output must be 'mask', 'linear' or 'complex_mask'")
        self.require(self.output != "complex_mask" or not (self.time_embedding or self.condition_channels),
                     "a complex-mask head is for separation: no time embedding or condition channels")
        self.require(not self.mid_side or (self.in_channels == 2 and self.output == "mask"
                                           and not (self.time_embedding or self.condition_channels)),
                     "mid_side is for stereo separation: in_channels 2, output 'mask', no time embedding or condition")
        self.require(not self.time_embedding or self.transformer_from_level < levels,
                     "time_embedding needs transformer blocks (transformer_from_level < levels): blocks inject it")

    @property
    def input_maps(self) -> int:
        """Maps the network reads: C magnitudes, or C magnitudes + C real + C imaginary parts, or the
        4 magnitudes of left, right, mid and side."""
        per_channel = 3 if self.output == "complex_mask" else 2 if self.mid_side else 1
        return self.in_channels * per_channel + self.condition_channels

    @property
    def reads_complex(self) -> bool:
        """Whether the model's input is the complex STFT."""
        return self.output == "complex_mask" or self.mid_side


@register("frame_transformer", FrameTransformerConfig)
class FrameTransformer(nn.Module):
    """Asymmetric U-Net frame transformer (see module docstring). ``config``: FrameTransformerConfig."""

    def __init__(self, config: FrameTransformerConfig):
        super().__init__()
        self.config = cfg = config
        levels = cfg.levels
        widths = [cfg.channels * m for m in cfg.channel_multipliers]
        bins = [cfg.num_bins // 2 ** i for i in range(levels)]
        expansion = per_level(cfg.expansion, levels)
        has_tf = [i >= cfg.transformer_from_level for i in range(levels)]
        maps = [m if t else 0 for m, t in zip(per_level(cfg.attention_maps, levels), has_tf)]
        source = (cfg.input_maps,) if cfg.source_attention else ()
        self.time_embed = TimestepEmbedding(cfg.time_features) if cfg.time_embedding else None

        def block(in_ch: int, level: int, skip: tuple = (), out: int | None = None) -> FrameTransformerBlock:
            return FrameTransformerBlock(
                in_ch, out or maps[level], bins[level], memory_channels=skip + source, num_heads=cfg.num_heads,
                expansion=expansion[level], activation=cfg.activation, dropout=cfg.dropout,
                attention_dropout=cfg.attention_dropout, rotary=cfg.rotary,
                attention_scale=cfg.attention_scale, qkv_conv=cfg.qkv_conv, qkv_kernel=cfg.qkv_kernel,
                flatten=cfg.flatten_maps, time_channels=cfg.time_features if cfg.time_embedding else 0)

        def stack(in_ch: int, level: int, skip: tuple = ()) -> nn.ModuleList:
            """Densely connected blocks: block j sees the input plus the maps of blocks 0..j-1."""
            count = cfg.blocks_per_level if has_tf[level] else 0
            return nn.ModuleList(block(in_ch + j * maps[level], level, skip) for j in range(count))

        conv = dict(activation=cfg.activation, kernel=cfg.conv_kernel)
        in_ch = cfg.input_maps
        self.input_tf = None
        if cfg.input_attention_maps:
            self.input_tf = block(in_ch, 0, out=cfg.input_attention_maps)
            in_ch += cfg.input_attention_maps

        self.encoders, self.encoder_tfs = nn.ModuleList(), nn.ModuleList()
        for i, width in enumerate(widths):
            stride = (2, 1) if i else (1, 1)
            self.encoders.append(FrameEncoder(in_ch, width, bins[i - 1] if i else bins[0], stride, **conv))
            self.encoder_tfs.append(stack(width, i))
            in_ch = width + len(self.encoder_tfs[-1]) * maps[i]
        skip_channels = [w + len(tfs) * m for w, tfs, m in zip(widths, self.encoder_tfs, maps)]

        self.decoders, self.decoder_tfs = nn.ModuleList(), nn.ModuleList()
        for i in reversed(range(levels - 1)):
            self.decoders.append(FrameDecoder(in_ch, skip_channels[i], widths[i], bins[i], **conv))
            skip = (skip_channels[i],) if cfg.decoder_attention == "skip" else ()
            self.decoder_tfs.append(stack(widths[i], i, skip))
            in_ch = widths[i] + len(self.decoder_tfs[-1]) * maps[i]
        # normalising the last volume keeps the mask logits from drifting into sigmoid saturation,
        # where training stalls at a mask of all ones
        self.out_norm = MultichannelLayerNorm(in_ch, cfg.num_bins)
        self.out = ChannelMix(in_ch, cfg.in_channels * (2 if cfg.output == "complex_mask" else 1))
        order = ([self.input_tf] if self.input_tf is not None else []) + \
            [tf for stack_ in (*self.encoder_tfs, *self.decoder_tfs) for tf in stack_]
        self._receives, self._returns = residual_links(
            cfg.residual_attention, [(tf.attn.channels, tf.attn.num_heads) for tf in order])

    @property
    def task(self) -> str:
        """"separation" (a magnitude-mask model), "complex_separation" (complex STFT in: complex-mask
        head or ``mid_side``), or "denoiser" with a timestep or a linear output (the separator refuses it)."""
        if self.config.reads_complex:
            return COMPLEX
        return "denoiser" if self.config.time_embedding or self.config.output != "mask" else "separation"

    @property
    def complex_mask(self) -> bool:
        """Whether the mask is complex (the complex-mask head; ``mid_side`` gives a real one)."""
        return self.config.output == "complex_mask"

    def _run(self, index: int, block: FrameTransformerBlock, x: torch.Tensor, memories: list,
             scores: torch.Tensor | None, time: torch.Tensor | None):
        """Run the ``index``-th block (in execution order), continuing the residual-score chain."""
        prev = scores if self._receives[index] else None
        h, new = block(x, memories, prev_scores=prev, return_scores=self._returns[index], time=time)
        return torch.cat([x, h], dim=1), new

    def _inputs(self, x: torch.Tensor, t: torch.Tensor | None, condition: torch.Tensor | None):
        """Check the optional inputs against the config: ``(x with the condition concatenated, time vector)``."""
        cfg = self.config
        if x.is_complex() != cfg.reads_complex:
            raise ValueError("this frame transformer takes " + ("a complex STFT" if cfg.reads_complex
                             else "a real magnitude") + f" [B, C, F, T]; got {x.dtype}")
        if cfg.mid_side:
            x = mid_side_magnitudes(x)
        elif x.is_complex():
            x = torch.cat([x.abs(), x.real, x.imag], dim=1)
        if (t is None) == cfg.time_embedding:
            raise ValueError("this frame transformer " + ("is a diffusion denoiser: pass the timestep t [B]"
                             if cfg.time_embedding else "has no time embedding (time_embedding=False): do not pass t"))
        if (condition is None) != (cfg.condition_channels == 0):
            raise ValueError(f"the model takes {cfg.condition_channels} condition channels; "
                             f"got {'none' if condition is None else tuple(condition.shape)}")
        if condition is not None:
            if condition.shape[1] != cfg.condition_channels or condition.shape[2:] != x.shape[2:]:
                raise ValueError(f"condition must be [B, {cfg.condition_channels}, {x.shape[2]}, {x.shape[3]}], "
                                 f"got {tuple(condition.shape)}")
            x = torch.cat([x, condition], dim=1)
        if t is not None:
            t = self.time_embed(t.expand(x.shape[0]) if t.ndim == 0 else t)
        return x, t

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None, condition: torch.Tensor | None = None):
        """``x [B, C, F, T]`` magnitude (with ``mid_side``: complex STFT) -> ``[B, C, F, T]`` mask in
        [0, 1] (``output="mask"``); with ``output="complex_mask"`` complex STFT ``[B, C, F, T]`` ->
        complex mask ``[B, C, F, T]``.

        A denoiser also takes the timestep ``t [B]`` (``time_embedding``) and ``condition [B, Cc, F, T]``
        (``condition_channels``), and returns unbounded ``[B, C, F, T]`` with ``output="linear"``.
        """
        cfg = self.config
        x, time = self._inputs(x, t, condition)
        sources = [F.avg_pool2d(x, (2 ** i, 1)) if i else x for i in range(cfg.levels)] if cfg.source_attention else None

        def memories(level: int, *skip: torch.Tensor) -> list:
            return [*skip, sources[level]] if sources else [*skip]

        scores, skips, index = None, [], 0
        if self.input_tf is not None:
            x, scores = self._run(index, self.input_tf, x, memories(0), scores, time)
            index += 1
        for i, (encoder, tfs) in enumerate(zip(self.encoders, self.encoder_tfs)):
            x = encoder(x)
            for tf in tfs:
                x, scores = self._run(index, tf, x, memories(i), scores, time)
                index += 1
            skips.append(x)
        for j, (decoder, tfs) in enumerate(zip(self.decoders, self.decoder_tfs)):
            level = cfg.levels - 2 - j
            x = decoder(x, skips[level])
            skip = (skips[level],) if cfg.decoder_attention == "skip" else ()
            for tf in tfs:
                x, scores = self._run(index, tf, x, memories(level, *skip), scores, time)
                index += 1
        out = self.out(self.out_norm(x))
        if cfg.output == "complex_mask":
            b, _, f, t = out.shape
            return torch.view_as_complex(out.float().view(b, 2, cfg.in_channels, f, t).movedim(1, -1).contiguous())
        return torch.sigmoid(out) if cfg.output == "mask" else out


# ------------------------------------------------------------------------------- frame primer

@dataclasses.dataclass
class FramePrimerConfig(FrameTransformerConfig):
    """The FramePrimer (2022) as a frame transformer configuration; fields as in FrameTransformerConfig.

    The default is the seed's FramePrimer2: per-level bottlenecks of 1-10 maps flattened into
    1024/1024/1024/768/512/320-feature frame vectors and a 2048-wide feed-forward everywhere. Its
    learned relative-position table (tied to the crop size) is replaced by rotary embeddings.
    """

    channels: int = 8
    attention_maps: tuple[int, ...] = (1, 2, 4, 6, 8, 10)
    flatten_maps: bool = True
    num_heads: int = 16
    expansion: tuple[float, ...] = (2.0, 2.0, 2.0, 2048 / 768, 4.0, 6.4)
    activation: str = "relu2"
    qkv_conv: str = "primer"
    conv_kernel: tuple[int, int] = (3, 1)
    dropout: float = 0.1

    PRESETS = {
        "tiny": dict(num_bins=64, channels=4, channel_multipliers=(1, 2, 3), attention_maps=(1, 2, 2), num_heads=2,
                     expansion=(2.0,), blocks_per_level=2, dropout=0.0),
        # FramePrimer (v1): dense stacks of single-map blocks at every level
        "dense": dict(attention_maps=(1,), blocks_per_level=4, expansion=(2.0,)),
    }


@register("frame_primer", FramePrimerConfig)
class FramePrimer(FrameTransformer):
    """The frame transformer network built from a :class:`FramePrimerConfig`."""
