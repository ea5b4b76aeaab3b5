"""mel_reformer: expands a fixed-width mel "idea" back into a full-length log-mel.

The encoder reads the log-mel resized (linear interpolation along time) to ``idea_width`` columns
and predicts the number of frames of the original (as ``log(frames)``). The decoder is causal over
*folded* tokens: ``fold`` adjacent mel columns stacked into one vector of ``n_mels * fold``
values. It starts from a learned start token, is teacher-forced in training and generates token by
token, with a key/value cache, at inference.

Positions: decoder steps have a learned embedding (up to ``max_tokens``); encoder columns and
decoder tokens also share an *alignment* embedding, a sinusoid of where each sits on the idea's
time axis (a token's centre frame mapped through the known or predicted length), so
cross-attention can find the idea columns a token expands whatever the length.

Shapes: log-mel ``[B, 1, n_mels, T]``, idea ``[B, 1, n_mels, idea_width]``, tokens
``[B, L, n_mels * fold]`` with ``L = ceil(T / fold)``.
"""
from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from ftlib.config import Config
from ftlib.errors import ConfigError
from ftlib.layers.transformer import sinusoid
from ftlib.mel import resize_width
from ftlib.models.registry import register

__all__ = ["MelReformerConfig", "MelReformer", "Attention", "LayerCache"]


@dataclasses.dataclass
class MelReformerConfig(Config):
    """Args:
        n_mels: mel bands of the log-mel.
        fold: mel columns stacked into one decoder token (n).
        idea_width: columns of the resized "idea" the encoder reads.
        dim: transformer width.
        num_heads: attention heads (``dim`` must divide evenly).
        encoder_layers / decoder_layers: pre-LN transformer blocks.
        expansion: feed-forward hidden size as a multiple of ``dim``.
        dropout: dropout in attention and feed-forward (training only).
        max_tokens: longest decoder sequence (so at most ``max_tokens * fold`` frames).
        mel_mean / mel_std: the log-mel is standardised with these before the model sees it.
        floor: log-mel value of silence, fills frames past an item's length (log of MelConfig.log_floor).
    """

    n_mels: int = 128
    fold: int = 32
    idea_width: int = 256
    dim: int = 512
    num_heads: int = 8
    encoder_layers: int = 4
    decoder_layers: int = 4
    expansion: float = 2.0
    dropout: float = 0.1
    max_tokens: int = 64
    mel_mean: float = -5.0
    mel_std: float = 3.0
    floor: float = -11.512925

    PRESETS = {
        "tiny": dict(n_mels=32, fold=4, idea_width=16, dim=32, num_heads=2, encoder_layers=1, decoder_layers=1,
                     dropout=0.0, max_tokens=64),
        "small": dict(n_mels=64, fold=8, idea_width=64, dim=128, num_heads=4, encoder_layers=2, decoder_layers=2,
                      dropout=0.0, max_tokens=64),
    }

    def validate(self) -> None:
        for name in ("n_mels", "fold", "idea_width", "dim", "num_heads", "max_tokens"):
            self.require(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        self.require(self.encoder_layers >= 1 and self.decoder_layers >= 1, "encoder_layers and decoder_layers must be >= 1")
        self.require(self.dim % self.num_heads == 0, f"dim={self.dim} is not divisible by num_heads={self.num_heads}")
        self.require(self.dim % 2 == 0, f"dim must be even (sinusoidal alignment features), got {self.dim}")
        self.require(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")
        self.require(self.mel_std > 0, f"mel_std must be positive, got {self.mel_std}")

    @property
    def max_frames(self) -> int:
        return self.max_tokens * self.fold


@dataclasses.dataclass
class LayerCache:
    """Keys/values of one decoder layer during generation: self-attention ones grow by a token per
    step, cross-attention ones are computed once from the encoder output. Each ``[B, H, S, head_dim]``."""

    cross: tuple[torch.Tensor, torch.Tensor]
    keys: torch.Tensor | None = None
    values: torch.Tensor | None = None

    def append(self, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.keys = keys if self.keys is None else torch.cat([self.keys, keys], dim=2)
        self.values = values if self.values is None else torch.cat([self.values, values], dim=2)
        return self.keys, self.values


class Attention(nn.Module):
    """Multi-head attention with ``scaled_dot_product_attention``: queries ``[B, Tq, D]`` over
    keys/values ``[B, H, Tk, D / H]`` (from :meth:`keys_values`); returns ``[B, Tq, D]``."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        self.num_heads, self.dropout = num_heads, dropout
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.o = nn.Linear(dim, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, D] -> [B, H, T, D / H]
        return x.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)

    def keys_values(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = self.kv(source).chunk(2, dim=-1)
        return self._split(keys), self._split(values)

    def forward(self, x: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, causal: bool = False) -> torch.Tensor:
        out = F.scaled_dot_product_attention(self._split(self.q(x)), keys, values, is_causal=causal,
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.o(out.transpose(1, 2).flatten(2))


def _feed_forward(config: MelReformerConfig) -> nn.Sequential:
    hidden = int(config.dim * config.expansion)
    return nn.Sequential(nn.LayerNorm(config.dim), nn.Linear(config.dim, hidden), nn.GELU(), nn.Dropout(config.dropout),
                         nn.Linear(hidden, config.dim), nn.Dropout(config.dropout))


class EncoderBlock(nn.Module):
    """Pre-LN block: bidirectional self-attention, feed-forward. ``[B, W, D] -> [B, W, D]``."""

    def __init__(self, config: MelReformerConfig):
        super().__init__()
        self.norm = nn.LayerNorm(config.dim)
        self.attn = Attention(config.dim, config.num_heads, config.dropout)
        self.ff = _feed_forward(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        x = x + self.attn(h, *self.attn.keys_values(h))
        return x + self.ff(x)


class DecoderBlock(nn.Module):
    """Pre-LN block: causal self-attention, cross-attention to the encoder, feed-forward.

    Without a cache ``x [B, L, D]`` is the whole sequence (causal mask); with one, ``x [B, 1, D]``
    is the next token and its keys/values are appended to the cache.
    """

    def __init__(self, config: MelReformerConfig):
        super().__init__()
        self.norm_self, self.norm_cross = nn.LayerNorm(config.dim), nn.LayerNorm(config.dim)
        self.self_attn = Attention(config.dim, config.num_heads, config.dropout)
        self.cross_attn = Attention(config.dim, config.num_heads, config.dropout)
        self.ff = _feed_forward(config)

    def forward(self, x: torch.Tensor, cross: tuple[torch.Tensor, torch.Tensor],
                cache: LayerCache | None = None) -> torch.Tensor:
        h = self.norm_self(x)
        keys, values = self.self_attn.keys_values(h)
        if cache is not None:
            keys, values = cache.append(keys, values)
        x = x + self.self_attn(h, keys, values, causal=cache is None)
        x = x + self.cross_attn(self.norm_cross(x), *cross)
        return x + self.ff(x)


@register("mel_reformer", MelReformerConfig)
class MelReformer(nn.Module):
    """Folded mel-expansion transformer (see module docstring).

    ``forward(mel, frames)`` is the teacher-forced pass, ``generate(idea)`` the free-running one.
    """

    task = "mel_expansion"

    def __init__(self, config: MelReformerConfig | None = None):
        super().__init__()
        self.config = cfg = config or MelReformerConfig()
        token = cfg.n_mels * cfg.fold
        self.idea_in = nn.Linear(cfg.n_mels, cfg.dim)
        self.idea_pos = nn.Parameter(torch.randn(cfg.idea_width, cfg.dim) * 0.02)
        self.align = nn.Linear(cfg.dim, cfg.dim)
        self.encoder = nn.ModuleList([EncoderBlock(cfg) for _ in range(cfg.encoder_layers)])
        self.encoder_norm = nn.LayerNorm(cfg.dim)
        self.length_head = nn.Sequential(nn.Linear(cfg.dim, cfg.dim), nn.GELU(), nn.Linear(cfg.dim, 1))
        nn.init.constant_(self.length_head[-1].bias, math.log(cfg.max_frames / 2))
        self.start = nn.Parameter(torch.randn(token) * 0.02)
        self.token_in = nn.Linear(token, cfg.dim)
        self.token_pos = nn.Parameter(torch.randn(cfg.max_tokens, cfg.dim) * 0.02)
        self.decoder = nn.ModuleList([DecoderBlock(cfg) for _ in range(cfg.decoder_layers)])
        self.decoder_norm = nn.LayerNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, token)

    # ------------------------------------------------------------------------ mel <-> tokens
    def fold_tokens(self, mel: torch.Tensor) -> torch.Tensor:
        """``[B, 1, M, T] -> [B, ceil(T / fold), M * fold]`` (the end padded with ``floor``)."""
        n = self.config.fold
        mel = F.pad(mel, (0, -mel.shape[-1] % n), value=self.config.floor)
        return mel[:, 0].unflatten(-1, (-1, n)).permute(0, 2, 1, 3).flatten(2)

    def unfold_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[B, L, M * fold] -> [B, 1, M, L * fold]`` (inverse of :meth:`fold_tokens`)."""
        b, length, _ = tokens.shape
        n_mels, fold = self.config.n_mels, self.config.fold
        return tokens.unflatten(-1, (n_mels, fold)).permute(0, 2, 1, 3).reshape(b, 1, n_mels, length * fold)

    def standardise(self, mel: torch.Tensor) -> torch.Tensor:
        return (mel - self.config.mel_mean) / self.config.mel_std

    def unstandardise(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.config.mel_std + self.config.mel_mean

    def idea(self, mel: torch.Tensor, frames: torch.Tensor | None = None) -> torch.Tensor:
        """The encoder input: each item's first ``frames`` columns resized to ``idea_width``.
        ``[B, 1, M, T]`` (+ ``frames [B]``) -> ``[B, 1, M, idea_width]``."""
        width = self.config.idea_width
        if frames is None or bool((frames == mel.shape[-1]).all()):
            return resize_width(mel, width)
        return torch.cat([resize_width(mel[i:i + 1, ..., :int(n)], width) for i, n in enumerate(frames)])

    # ------------------------------------------------------------------------------- passes
    def _check(self, mel: torch.Tensor, what: str) -> None:
        if mel.ndim != 4 or mel.shape[1] != 1 or mel.shape[2] != self.config.n_mels:
            raise ConfigError(f"mel_reformer expects {what} [B, 1, {self.config.n_mels}, T], got shape {tuple(mel.shape)}")

    def encode(self, idea: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Idea ``[B, 1, M, idea_width]`` -> encoder output ``[B, W, D]`` and predicted ``log(frames)`` ``[B]``."""
        self._check(idea, "an idea")
        if idea.shape[-1] != self.config.idea_width:
            raise ConfigError(f"the idea must have idea_width={self.config.idea_width} columns, got {idea.shape[-1]}; "
                              f"make it with ftlib.mel.resize_width or model.idea")
        columns = torch.arange(self.config.idea_width, device=idea.device) + 0.5
        x = self.idea_in(self.standardise(idea)[:, 0].transpose(1, 2))
        x = x + self.idea_pos + self.align(sinusoid(columns, self.config.dim))
        for block in self.encoder:
            x = block(x)
        x = self.encoder_norm(x)
        return x, self.length_head(x.mean(dim=1))[:, 0]

    def cross_keys_values(self, memory: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Cross-attention keys/values of every decoder layer, from the encoder output ``[B, W, D]``."""
        return [block.cross_attn.keys_values(memory) for block in self.decoder]

    def decode(self, inputs: torch.Tensor, cross: list[tuple[torch.Tensor, torch.Tensor]], frames: torch.Tensor,
               offset: int = 0, caches: list[LayerCache] | None = None) -> torch.Tensor:
        """Decoder input tokens ``[B, L, M * fold]`` at steps ``offset..offset + L - 1`` -> next tokens
        (standardised) ``[B, L, M * fold]``. ``frames [B]`` places the steps on the idea's time axis."""
        cfg = self.config
        steps = torch.arange(offset, offset + inputs.shape[1], device=inputs.device)
        centre = (steps + 0.5) * cfg.fold / frames.to(inputs.device, torch.float32)[:, None] * cfg.idea_width
        x = self.token_in(inputs) + self.token_pos[steps] + self.align(sinusoid(centre, cfg.dim))
        for i, block in enumerate(self.decoder):
            x = block(x, cross[i], None if caches is None else caches[i])
        return self.head(self.decoder_norm(x))

    def forward(self, mel: torch.Tensor, frames: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced reconstruction. ``mel [B, 1, M, T]`` (log), ``frames [B]`` real frames per
        item (default ``T``) -> reconstruction ``[B, 1, M, T]`` and predicted ``log(frames)`` ``[B]``."""
        self._check(mel, "a log-mel")
        b, t = mel.shape[0], mel.shape[-1]
        if frames is None:
            frames = torch.full((b,), t, device=mel.device)
        tokens = self.fold_tokens(self.standardise(mel))
        if tokens.shape[1] > self.config.max_tokens:
            raise ConfigError(f"{t} frames make {tokens.shape[1]} tokens, more than max_tokens={self.config.max_tokens}; "
                              f"use shorter chunks or a larger max_tokens")
        memory, log_frames = self.encode(self.idea(mel, frames))
        inputs = torch.cat([self.start.expand(b, 1, -1), tokens[:, :-1]], dim=1)
        out = self.decode(inputs, self.cross_keys_values(memory), frames)
        return self.unstandardise(self.unfold_tokens(out))[..., :t], log_frames

    def predicted_frames(self, log_frames: torch.Tensor) -> torch.Tensor:
        """Frame counts ``[B]`` (int64, in ``[1, max_frames]``) from predicted ``log(frames)``."""
        return torch.exp(log_frames).round().clamp(1, self.config.max_frames).long()

    @torch.no_grad()
    def generate(self, idea: torch.Tensor, frames: torch.Tensor | int | None = None,
                 use_cache: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Free-running expansion of ``idea [B, 1, M, idea_width]``.

        The length is ``frames`` when given, else the length head's prediction. With ``use_cache``
        each step runs the new token only (keys/values kept per layer); without, every step reruns
        the whole prefix. Returns the log-mel ``[B, 1, M, max(frames)]`` (past an item's own length:
        ``floor``) and ``frames [B]``.
        """
        memory, log_frames = self.encode(idea)
        b = idea.shape[0]
        if frames is None:
            frames = self.predicted_frames(log_frames)
        frames = torch.as_tensor(frames, device=idea.device).long().expand(b).clone()
        steps = math.ceil(int(frames.max()) / self.config.fold)
        if steps > self.config.max_tokens:
            raise ConfigError(f"{int(frames.max())} frames need {steps} tokens, more than max_tokens={self.config.max_tokens}")
        cross = self.cross_keys_values(memory)
        caches = [LayerCache(kv) for kv in cross] if use_cache else None
        tokens = [self.start.expand(b, 1, -1)]
        for step in range(steps):
            if use_cache:
                out = self.decode(tokens[-1], cross, frames, offset=step, caches=caches)
            else:
                out = self.decode(torch.cat(tokens, dim=1), cross, frames)[:, -1:]
            tokens.append(out)
        mel = self.unstandardise(self.unfold_tokens(torch.cat(tokens[1:], dim=1)))[..., :int(frames.max())]
        past = torch.arange(mel.shape[-1], device=mel.device) >= frames[:, None]
        return mel.masked_fill(past[:, None, None], self.config.floor), frames
