"""Band-split RoFormers: BS-RoFormer (Lu et al. 2023) and Mel-Band RoFormer (Wang et al. 2023).

Both read the complex STFT of every audio channel, cut it by frequency into bands, embed each band
(its bins' real and imaginary parts in all channels) as one token with RMSNorm + Linear, run
``depth`` blocks of axial transformers (across the frames of each band, then across the bands of
each frame; rotary positions, gated multi-head attention, GELU feed-forward) and turn every band's
token back into a complex mask for its bins with a per-band tanh MLP ending in a GLU. The two
families differ only in their bands:

- ``bs_roformer``: contiguous ranges of ``freqs_per_bands`` bins, 62 bands by default (2 bins per
  band below 1 kHz, then 4, 12, 24, 48 and two wide top bands; paper, Section 3.1).
- ``mel_roformer``: ``num_bands`` overlapping bands, the bins under each triangle of librosa's mel
  filterbank; a bin shared by several bands gets the average of their masks (paper, Section 2).

Interface, ``task = "complex_separation"`` (the magnitude-mask separator refuses these models)::

    spec = model.stft(audio)            # [B, C, S] -> complex64 [B, C, F, T], F = config.num_bins
    mask = model(spec)                  # complex mask [B, C, F, T] of config.target_stem
    stem = model.istft(mask * spec, S)  # [B, C, S]

With ``target_stem=""`` the model returns every stem's mask, ``[B, S, C, F, T]`` in the order of
``config.stems``. The mask is unbounded and complex (it corrects phase as well as level), every
bin including DC and Nyquist is kept, and the STFT the weights expect is part of the config
(``stft_n_fft``, ``stft_hop_length``, ``stft_win_length``, Hann window, centred frames, not
normalised), so a separator builds it from the checkpoint alone. Training needs a loss on
``istft(mask * spec)`` or on complex spectrograms; nothing here assumes one.

Checkpoints of Music-Source-Separation-Training (MSST) load through :mod:`ftlib.msst`.

Axis legend: b batch, c audio channels, f bins, t frames, k bands, d features, h heads, e head
features, r real/imaginary, n sequences (batch x frames or batch x bands), l sequence length.
"""
from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ftlib.config import Config
from ftlib.devices import float32_scope
from ftlib.errors import ConfigError
from ftlib.layers import RMSNorm, RotaryEmbedding, fused_attention
from ftlib.mel import MelConfig, mel_filterbank
from ftlib.models.registry import register

# the paper's 62 bands for n_fft 2048 (1025 bins): 24 x 2, 12 x 4, 8 x 12, 8 x 24, 8 x 48, 128, 129
PAPER_FREQS_PER_BANDS = (2,) * 24 + (4,) * 12 + (12,) * 8 + (24,) * 8 + (48,) * 8 + (128, 129)


# ----------------------------------------------------------------------------------------- bands

def fixed_bands(freqs_per_bands: Sequence[int]) -> list[list[int]]:
    """Contiguous bands of ``freqs_per_bands[k]`` bins each, from DC up."""
    edges = np.cumsum([0, *freqs_per_bands])
    return [list(range(lo, hi)) for lo, hi in zip(edges[:-1], edges[1:])]


@functools.lru_cache(maxsize=16)
def _mel_bands(sample_rate: int, n_fft: int, num_bands: int) -> tuple[tuple[int, ...], ...]:
    config = MelConfig(sample_rate=sample_rate, n_fft=n_fft, hop_length=max(1, n_fft // 4), n_mels=num_bands)
    with warnings.catch_warnings():  # librosa warns about empty filters; they are reported below
        warnings.simplefilter("ignore")
        fb = mel_filterbank(config).numpy()
    # the first triangle starts at 0 on the DC bin and the last ends at 0 (or ~1e-18) on the
    # Nyquist bin: give both to their band so that every bin is covered (as MSST does)
    fb[0, 0] = fb[-1, -1] = 1.0
    return tuple(tuple(np.flatnonzero(row > 0).tolist()) for row in fb)


def mel_bands(sample_rate: int, n_fft: int, num_bands: int) -> list[list[int]]:
    """The bins of each band: those where the band's mel triangle (librosa, Slaney) is positive.
    Bands overlap; every bin lies in at least one band (ConfigError otherwise)."""
    bands = [list(band) for band in _mel_bands(sample_rate, n_fft, num_bands)]
    empty = [k for k, band in enumerate(bands) if not band]
    if empty:
        raise ConfigError(f"{num_bands} mel bands over {n_fft // 2 + 1} bins leave band(s) {empty} empty; "
                          "use fewer bands or a larger stft_n_fft")
    uncovered = sorted(set(range(n_fft // 2 + 1)) - {i for band in bands for i in band})
    if uncovered:
        raise ConfigError(f"{num_bands} mel bands leave bin(s) {uncovered} uncovered")
    return bands


# ---------------------------------------------------------------------------------------- config

@dataclasses.dataclass
class RoformerConfig(Config):
    """Fields shared by both band-split RoFormers (each family adds its bands).

    Args:
        in_channels: audio channels C (2 stereo, 1 mono); each band token holds all of them.
        sample_rate: audio rate in Hz the model was trained at (the mel bands depend on it).
        stft_n_fft: STFT size; the model sees all ``stft_n_fft // 2 + 1`` bins (see ``nyquist``).
        stft_hop_length: STFT hop in samples (441 = 10 ms at 44.1 kHz, papers and MSST vocals).
        stft_win_length: Hann window length (<= stft_n_fft).
        nyquist: the model sees the Nyquist bin (MSST's models); False: ``stft_n_fft // 2`` bins like
            ftlib's datasets and other families (the separation recipe's choice), the top band
            one bin narrower.
        dim: token width D of every band.
        depth: axial blocks (time transformer, then band transformer).
        time_depth: transformer layers across frames in each block.
        freq_depth: transformer layers across bands in each block.
        num_heads: attention heads.
        head_dim: features per head (even: rotary pairs); heads x head_dim need not equal dim.
        ff_mult: feed-forward hidden width as a multiple of dim.
        attention_dropout: dropout on the attention weights and the attention output (training).
            Above 0, training on CPU leaves the fused kernel for PyTorch's math path.
        ff_dropout: dropout inside and after the feed-forward (training).
        mask_hidden_layers: tanh hidden layers of each band's mask MLP (MSST's BS-RoFormer
            ``mask_estimator_depth - 1``, its Mel-Band RoFormer ``mask_estimator_depth``).
        mask_expansion: width of those hidden layers as a multiple of dim.
        output_norm: "final" (one RMSNorm after the last block, BS-RoFormer) or "each" (an RMSNorm
            closing every time and band transformer, Mel-Band RoFormer).
        skip_connections: every block's input also adds the outputs of all earlier blocks (MSST's
            ``skip_connection``).
        stems: names of the stems with a mask estimator each (num_stems = len(stems)).
        target_stem: the stem ``forward`` returns (``[B, C, F, T]``); "" returns every stem
            (``[B, S, C, F, T]``, in the order of ``stems``).
    """

    in_channels: int = 2
    sample_rate: int = 44100
    stft_n_fft: int = 2048
    stft_hop_length: int = 441
    stft_win_length: int = 2048
    dim: int = 512
    depth: int = 12
    time_depth: int = 1
    freq_depth: int = 1
    num_heads: int = 8
    head_dim: int = 64
    ff_mult: float = 4.0
    attention_dropout: float = 0.0
    ff_dropout: float = 0.0
    mask_hidden_layers: int = 1
    mask_expansion: int = 4
    output_norm: str = "final"
    skip_connections: bool = False
    stems: tuple[str, ...] = ("vocals",)
    target_stem: str = "vocals"
    nyquist: bool = True

    @property
    def num_bins(self) -> int:
        return self.stft_n_fft // 2 + int(self.nyquist)

    @property
    def num_stems(self) -> int:
        return len(self.stems)

    def bands(self) -> list[list[int]]:
        """The bins of every band the model sees, lowest band first."""
        bands = self.stft_bands()
        if not self.nyquist:
            top = self.stft_n_fft // 2
            bands = [kept for band in bands if (kept := [i for i in band if i != top])]
        return bands

    def stft_bands(self) -> list[list[int]]:
        """The bins of every band over all ``stft_n_fft // 2 + 1`` bins, lowest band first."""
        raise NotImplementedError

    def validate(self) -> None:
        self.require(self.in_channels >= 1 and self.sample_rate > 0, "in_channels and sample_rate must be positive")
        self.require(self.stft_n_fft >= 16, f"stft_n_fft must be >= 16, got {self.stft_n_fft}")
        self.require(0 < self.stft_hop_length <= self.stft_win_length <= self.stft_n_fft,
                     "need 0 < stft_hop_length <= stft_win_length <= stft_n_fft")
        self.require(min(self.dim, self.depth, self.num_heads, self.time_depth, self.freq_depth) >= 1,
                     "dim, depth, num_heads, time_depth and freq_depth must be >= 1")
        self.require(self.head_dim >= 2 and self.head_dim % 2 == 0, "head_dim must be even (rotary pairs)")
        self.require(self.ff_mult > 0 and self.mask_expansion >= 1 and self.mask_hidden_layers >= 0,
                     "ff_mult > 0, mask_expansion >= 1 and mask_hidden_layers >= 0 needed")
        self.require(0 <= self.attention_dropout < 1 and 0 <= self.ff_dropout < 1, "dropouts must be in [0, 1)")
        self.require(self.output_norm in ("final", "each"), "output_norm must be 'final' or 'each'")
        self.require(len(self.stems) >= 1 and len(set(self.stems)) == len(self.stems) and all(self.stems),
                     f"stems must be distinct non-empty names, got {self.stems}")
        self.require(self.target_stem == "" or self.target_stem in self.stems,
                     f"target_stem {self.target_stem!r} is not one of stems {self.stems} (or '' for all)")


@dataclasses.dataclass
class BSRoformerConfig(RoformerConfig):
    """BS-RoFormer: ``RoformerConfig`` fields plus

    Args:
        freqs_per_bands: bins of each contiguous band, lowest first; they sum to stft_n_fft // 2 + 1.

    The default is ViperX's vocals BS-RoFormer as MSST publishes it
    (``configs/viperx/model_bs_roformer_ep_317_sdr_12.9755.yaml``): D 512, 12 blocks of one time and
    one band layer, 8 x 64 heads, the paper's 62 bands, hop 441, one stem (vocals).
    """

    freqs_per_bands: tuple[int, ...] = PAPER_FREQS_PER_BANDS

    PRESETS = {
        # 65 bins in 14 bands: seconds on a CPU
        "tiny": dict(stft_n_fft=128, stft_hop_length=32, stft_win_length=128, dim=16, depth=1, num_heads=2,
                     head_dim=8, ff_mult=2.0, mask_expansion=2, freqs_per_bands=(2,) * 8 + (4,) * 4 + (16, 17)),
        # sized for CPU experiments
        "small": dict(dim=128, depth=4, num_heads=4, head_dim=32),
        # a training step as costly as the full-band conv_unet "cpu" (max_bin 0) on a 2-core CPU
        "cpu": dict(dim=64, depth=2, num_heads=2, head_dim=32, ff_mult=2.0, mask_expansion=1),
        # MSST's configs/config_vocals_bs_roformer.yaml (dim 192, depth 6, hop 512)
        "msst_vocals": dict(dim=192, depth=6, stft_hop_length=512),
        # four stems (MUSDB18 order), forward returns the vocals
        "four_stems": dict(stems=("bass", "drums", "other", "vocals")),
    }

    def stft_bands(self) -> list[list[int]]:
        return fixed_bands(self.freqs_per_bands)

    def validate(self) -> None:
        super().validate()
        self.require(len(self.freqs_per_bands) >= 1 and min(self.freqs_per_bands) >= 1,
                     "freqs_per_bands needs at least one band of at least one bin")
        self.require(sum(self.freqs_per_bands) == self.stft_n_fft // 2 + 1,
                     f"freqs_per_bands sum to {sum(self.freqs_per_bands)} bins; stft_n_fft={self.stft_n_fft} "
                     f"gives {self.stft_n_fft // 2 + 1}")


@dataclasses.dataclass
class MelRoformerConfig(RoformerConfig):
    """Mel-Band RoFormer: ``RoformerConfig`` fields plus

    Args:
        num_bands: overlapping mel bands (librosa Slaney filterbank at ``sample_rate``).

    The default is Kimberley Jensen's vocals Mel-Band RoFormer as MSST publishes it
    (``configs/KimberleyJensen/config_vocals_mel_band_roformer_kj.yaml``): D 384, 6 blocks, 8 x 64
    heads, 60 bands, mask MLPs with two hidden layers, an RMSNorm closing every transformer, hop 441.
    """

    dim: int = 384
    depth: int = 6
    mask_hidden_layers: int = 2
    output_norm: str = "each"
    num_bands: int = 60

    PRESETS = {
        "tiny": dict(stft_n_fft=128, stft_hop_length=32, stft_win_length=128, dim=16, depth=1, num_heads=2,
                     head_dim=8, ff_mult=2.0, mask_expansion=2, mask_hidden_layers=1, num_bands=8),
        "small": dict(dim=128, depth=4, num_heads=4, head_dim=32),
        # a training step as costly as the full-band conv_unet "cpu" (max_bin 0) on a 2-core CPU
        "cpu": dict(dim=64, depth=2, num_heads=2, head_dim=32, ff_mult=2.0, mask_expansion=1, mask_hidden_layers=1),
        # ViperX's Mel-Band RoFormer (configs/viperx/model_mel_band_roformer_ep_3005_sdr_11.4360.yaml)
        "viperx": dict(depth=12),
        # MSST's configs/config_musdb18_mel_band_roformer_all_stems.yaml, forward returns the vocals
        "four_stems": dict(stems=("drums", "bass", "other", "vocals")),
    }

    def stft_bands(self) -> list[list[int]]:
        return mel_bands(self.sample_rate, self.stft_n_fft, self.num_bands)

    def validate(self) -> None:
        super().validate()
        self.require(self.num_bands >= 1, "num_bands must be >= 1")
        self.stft_bands()  # raises a ConfigError naming empty bands or uncovered bins


# -------------------------------------------------------------------------------------- attention

class GatedAttention(nn.Module):
    """Pre-norm multi-head self-attention over ``[N, L, D]`` with rotary positions and a sigmoid
    gate per head and position on its output (as in the BS-RoFormer reference code)."""

    def __init__(self, dim: int, num_heads: int, head_dim: int, rotary: RotaryEmbedding, dropout: float = 0.0):
        super().__init__()
        self.num_heads, self.scale, self.dropout = num_heads, head_dim ** -0.5, dropout
        self.norm = RMSNorm(dim)
        self.qkv = nn.Linear(dim, 3 * num_heads * head_dim, bias=False)
        self.gates = nn.Linear(dim, num_heads)
        self.out = nn.Linear(num_heads * head_dim, dim, bias=False)
        self.out_dropout = nn.Dropout(dropout)
        self.rotary = rotary
        self.force_explicit = False  # tests and benchmarks: softmax(q k^T) v instead of the fused kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        q, k, v = rearrange(self.qkv(x), "n l (three h e) -> three n h l e", three=3, h=self.num_heads)
        q, k = self.rotary(q), self.rotary(k)
        dropout = self.dropout if self.training else 0.0
        if self.force_explicit:
            with float32_scope(q.device.type):
                weights = torch.matmul(q.float() * self.scale, k.float().transpose(-1, -2)).softmax(dim=-1)
            out = torch.matmul(F.dropout(weights, dropout, self.training).to(v.dtype), v)
        else:
            out = fused_attention(q, k, v, self.scale, dropout)
        out = out * rearrange(self.gates(x), "n l h -> n h l 1").sigmoid()
        return self.out_dropout(self.out(rearrange(out, "n h l e -> n l (h e)")))


class FeedForwardLayer(nn.Module):
    """Pre-norm GELU MLP over the last axis."""

    def __init__(self, dim: int, mult: float, dropout: float = 0.0):
        super().__init__()
        hidden = int(dim * mult)
        self.norm = RMSNorm(dim)
        self.up = nn.Linear(dim, hidden)
        self.down = nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.down(self.dropout(F.gelu(self.up(self.norm(x))))))


class TransformerLayer(nn.Module):
    def __init__(self, cfg: RoformerConfig, rotary: RotaryEmbedding):
        super().__init__()
        self.attn = GatedAttention(cfg.dim, cfg.num_heads, cfg.head_dim, rotary, cfg.attention_dropout)
        self.ff = FeedForwardLayer(cfg.dim, cfg.ff_mult, cfg.ff_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.ff(x)


class Transformer(nn.Module):
    """``depth`` residual layers over sequences ``[N, L, D]``, optionally closed by an RMSNorm."""

    def __init__(self, cfg: RoformerConfig, depth: int, rotary: RotaryEmbedding, norm: bool):
        super().__init__()
        self.layers = nn.ModuleList(TransformerLayer(cfg, rotary) for _ in range(depth))
        self.norm = RMSNorm(cfg.dim) if norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.norm(x) if self.norm is not None else x


class AxialBlock(nn.Module):
    """A transformer across the frames of every band, then one across the bands of every frame."""

    def __init__(self, cfg: RoformerConfig, time_rotary: RotaryEmbedding, band_rotary: RotaryEmbedding):
        super().__init__()
        norm = cfg.output_norm == "each"
        self.time = Transformer(cfg, cfg.time_depth, time_rotary, norm)
        self.freq = Transformer(cfg, cfg.freq_depth, band_rotary, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        x = self.time(rearrange(x, "b t k d -> (b k) t d"))
        x = self.freq(rearrange(x, "(b k) t d -> (b t) k d", b=b))
        return rearrange(x, "(b t) k d -> b t k d", b=b)


# ------------------------------------------------------------------------ band embedding and masks

class BandEmbedding(nn.Module):
    """One band's ``[..., width]`` bin features -> a ``[..., dim]`` token (RMSNorm + Linear)."""

    def __init__(self, width: int, dim: int):
        super().__init__()
        self.norm = RMSNorm(width)
        self.proj = nn.Linear(width, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.norm(x))


class BandMask(nn.Module):
    """One band's token ``[..., dim]`` -> its mask features ``[..., width]``: tanh MLP, then a GLU."""

    def __init__(self, dim: int, width: int, hidden: int, hidden_layers: int):
        super().__init__()
        sizes = [dim, *[hidden] * hidden_layers, 2 * width]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = torch.tanh(layer(x))
        return F.glu(self.layers[-1](x), dim=-1)


# ------------------------------------------------------------------------------------ main class

class BandRoformer(nn.Module):
    """The band-split RoFormer network for any bands (``config.bands()``); see the module docstring.

    Parameters: ``band_split.{k}`` embeds band k, ``blocks.{i}.time`` / ``blocks.{i}.freq`` are the
    axial transformers, ``final_norm`` (``output_norm="final"``), ``mask_estimators.{s}.{k}`` the
    mask MLP of stem s and band k.
    """

    task = "complex_separation"

    def __init__(self, config: RoformerConfig):
        super().__init__()
        self.config = cfg = config
        bands = cfg.bands()
        index = [i for band in bands for i in band]
        counts = [0] * cfg.num_bins
        for i in index:
            counts[i] += 1
        # the bins of every band, concatenated, and how many bands share each bin (mask averaging)
        self.register_buffer("band_index", torch.tensor(index, dtype=torch.long), persistent=False)
        self.register_buffer("bands_per_bin", torch.tensor(counts, dtype=torch.float32), persistent=False)
        # a band's features are its (bin, channel, real/imaginary) values, bin-major
        self.band_widths = [2 * cfg.in_channels * len(band) for band in bands]
        self.band_split = nn.ModuleList(BandEmbedding(w, cfg.dim) for w in self.band_widths)
        time_rotary, band_rotary = RotaryEmbedding(cfg.head_dim), RotaryEmbedding(cfg.head_dim)
        self.blocks = nn.ModuleList(AxialBlock(cfg, time_rotary, band_rotary) for _ in range(cfg.depth))
        self.final_norm = RMSNorm(cfg.dim) if cfg.output_norm == "final" else None
        hidden = cfg.dim * cfg.mask_expansion
        self.mask_estimators = nn.ModuleList(
            nn.ModuleList(BandMask(cfg.dim, w, hidden, cfg.mask_hidden_layers) for w in self.band_widths)
            for _ in cfg.stems)

    # STFT with the settings the weights expect
    def _window(self, device: torch.device) -> torch.Tensor:
        return torch.hann_window(self.config.stft_win_length, device=device)

    def stft(self, audio: torch.Tensor) -> torch.Tensor:
        """Audio ``[B, C, S]`` (or ``[C, S]``) -> complex ``[B, C, F, T]`` (``[C, F, T]``), centred Hann frames."""
        cfg = self.config
        spec = torch.stft(audio.reshape(-1, audio.shape[-1]).float(), cfg.stft_n_fft, cfg.stft_hop_length,
                          cfg.stft_win_length, self._window(audio.device), return_complex=True)[:, :cfg.num_bins]
        return spec.reshape(*audio.shape[:-1], *spec.shape[-2:])

    def istft(self, spec: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """Complex ``[..., F, T]`` -> audio ``[..., S]`` (``length`` samples when given; a missing
        Nyquist bin is zero)."""
        cfg = self.config
        if not cfg.nyquist:
            spec = F.pad(spec, (0, 0, 0, 1))
        audio = torch.istft(spec.reshape(-1, *spec.shape[-2:]), cfg.stft_n_fft, cfg.stft_hop_length,
                            cfg.stft_win_length, self._window(spec.device), length=length)
        return audio.reshape(*spec.shape[:-2], audio.shape[-1])

    def _check(self, spec: torch.Tensor) -> None:
        cfg = self.config
        if not spec.is_complex() or spec.ndim != 4 or tuple(spec.shape[1:3]) != (cfg.in_channels, cfg.num_bins):
            raise ValueError(f"{type(self).__name__} takes a complex STFT [B, {cfg.in_channels}, {cfg.num_bins}, T] "
                             f"(model.stft(audio)); got {spec.dtype} {tuple(spec.shape)}")

    def _mask(self, estimator: nn.ModuleList, x: torch.Tensor, frames: int) -> torch.Tensor:
        """Band tokens ``[B, T, K, D]`` -> the complex mask ``[B, C, F, T]`` of one stem."""
        cfg = self.config
        features = torch.cat([mlp(x[:, :, k]) for k, mlp in enumerate(estimator)], dim=-1)
        per_band = rearrange(features.float(), "b t (f c r) -> b c f t r", c=cfg.in_channels, r=2)
        summed = per_band.new_zeros(x.shape[0], cfg.in_channels, cfg.num_bins, frames, 2)
        summed = summed.index_add(2, self.band_index, per_band)
        return torch.view_as_complex(summed / self.bands_per_bin[:, None, None])

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        """Complex STFT ``[B, C, F, T]`` -> complex mask ``[B, C, F, T]`` of ``config.target_stem``,
        or ``[B, S, C, F, T]`` for every stem when ``target_stem`` is ""."""
        cfg = self.config
        self._check(spec)
        x = torch.view_as_real(spec).index_select(2, self.band_index)
        x = rearrange(x, "b c f t r -> b t (f c r)")
        x = torch.stack([embed(part) for embed, part in zip(self.band_split, x.split(self.band_widths, dim=-1))],
                        dim=2)
        outputs: list[torch.Tensor] = []
        for block in self.blocks:
            if cfg.skip_connections:
                for previous in outputs:
                    x = x + previous
            x = block(x)
            if cfg.skip_connections:
                outputs.append(x)
        if self.final_norm is not None:
            x = self.final_norm(x)
        frames = spec.shape[-1]
        if cfg.target_stem:
            return self._mask(self.mask_estimators[cfg.stems.index(cfg.target_stem)], x, frames)
        return torch.stack([self._mask(estimator, x, frames) for estimator in self.mask_estimators], dim=1)


@register("bs_roformer", BSRoformerConfig)
class BSRoformer(BandRoformer):
    """BS-RoFormer (Lu et al. 2023): contiguous bands. ``config``: BSRoformerConfig."""


@register("mel_roformer", MelRoformerConfig)
class MelRoformer(BandRoformer):
    """Mel-Band RoFormer (Wang et al. 2023): overlapping mel bands. ``config``: MelRoformerConfig."""
