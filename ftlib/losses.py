"""Losses. A training loss takes ``(model, batch)`` and returns ``(loss, metrics)``; the terms it
combines are free functions of tensors.

Separation batches hold magnitudes without the Nyquist bin, ``[B, C, F, T]``: ``mixture`` (the
model input) and ``target``; masked pretraining adds ``token_mask`` ``[B, T]``. The waveform terms
of :class:`SeparationLoss` on magnitudes also need the mixture's ``phase`` ``[B, C, F, T]``
(voxaug's ``return_phase``) to turn them back into waveforms. For complex-mask models the batch
holds complex spectra instead (voxaug's ``return_complex``): the estimate ``mask * mixture`` is
complex, the L1 compares real and imaginary parts, the magnitude terms compare magnitudes and the
waveform terms need no phase. A real mask of a complex batch (a model that reads the complex STFT
for its features, :func:`~ftlib.models.has_complex_mask`) cannot change the phase: it is scored on
magnitudes, as a magnitude model is. Mel-expansion terms compare log-mels
``[B, 1, M, T]`` over each item's real frames (``frame_mask``).
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ftlib.config import Config
from ftlib.devices import float32_scope
from ftlib.mel import MelConfig, mel_filterbank
from ftlib.models import instrumental_mask, mask_of


def full_precision(x: torch.Tensor) -> torch.Tensor:
    """float32, or complex64 for complex tensors (``.float()`` would drop the imaginary part)."""
    return x.to(torch.complex64) if x.is_complex() else x.float()


def spectral_l1(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between ``[B, C, F, T]`` spectrograms: magnitudes, or the real and imaginary parts of complex ones."""
    estimate, target = full_precision(estimate), full_precision(target)
    if estimate.is_complex() or target.is_complex():
        estimate, target = (torch.view_as_real(x.to(torch.complex64)) for x in (estimate, target))
    return F.l1_loss(estimate, target)


def masked_mixture(model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``{"estimate": mask * mixture, "target", "mixture"}`` ``[B, C, F, T]`` for a separation batch,
    plus the mixture's ``"phase"`` when the batch has one. A real mask of a complex batch turns the
    batch into magnitudes (the target clamped to the mixture's, as voxaug's magnitude items are) and
    the phase."""
    mixture, target = batch["mixture"], batch["target"]
    mask = instrumental_mask(model, model(mixture))
    if mixture.is_complex() and not mask.is_complex():
        magnitude = mixture.abs()
        return dict(estimate=mask * magnitude, target=torch.minimum(target.abs(), magnitude), mixture=magnitude,
                    phase=mixture.angle())
    out = dict(estimate=mask * mixture, target=target, mixture=mixture)
    return out | ({"phase": batch["phase"]} if "phase" in batch else {})


def separation_l1(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """L1 between ``mask * mixture`` and the target (all ``[B, C, F, T]``; complex for complex-mask
    models; see :func:`masked_mixture`)."""
    parts = masked_mixture(model, batch)
    return spectral_l1(parts["estimate"], parts["target"]), {}


def pretraining_l1(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """Masked pretraining: L1 of ``mask * input`` against the clean magnitude on masked frames only.

    ``batch["token_mask"]`` is bool ``[B, T]``; unmasked frames do not count at all (the model could
    copy them), so the loss is the mean over the ``C * F`` values of every masked frame.
    """
    mixture, target, frames = batch["mixture"], batch["target"], batch["token_mask"]
    estimate = mask_of(model(mixture)) * mixture
    error = (estimate.float() - target.float()).abs().mean(dim=(1, 2))  # [B, T]
    weight = frames.float()
    loss = (error * weight).sum() / weight.sum().clamp_min(1.0)
    unmasked = (error * (1 - weight)).sum() / (1 - weight).sum().clamp_min(1.0)
    return loss, {"unmasked_l1": unmasked.detach()}


# ------------------------------------------------------------------------------ spectral terms

def multi_resolution_l1(estimate: torch.Tensor, target: torch.Tensor, scales: tuple[int, ...]) -> torch.Tensor:
    """Mean over ``scales`` of spectral convergence + log-magnitude L1 on ``[B, C, F, T]`` magnitudes
    average-pooled by ``s x s`` (coarser time-frequency resolutions of the same spectrogram)."""
    total = estimate.new_zeros(())
    for s in scales:
        est = F.avg_pool2d(estimate.flatten(0, 1)[:, None], s, ceil_mode=True) if s > 1 else estimate
        tgt = F.avg_pool2d(target.flatten(0, 1)[:, None], s, ceil_mode=True) if s > 1 else target
        convergence = torch.linalg.vector_norm(tgt - est) / torch.linalg.vector_norm(tgt).clamp_min(1e-8)
        log_l1 = F.l1_loss(torch.log(est.clamp_min(1e-5)), torch.log(tgt.clamp_min(1e-5)))
        total = total + convergence + log_l1
    return total / len(scales)


def multi_resolution_stft(estimate: torch.Tensor, target: torch.Tensor, resolutions: tuple[tuple[int, ...], ...]
                          ) -> torch.Tensor:
    """Multi-resolution STFT loss between waveforms ``[N, S]``: mean over ``(n_fft, hop)`` resolutions
    of spectral convergence + log-magnitude L1 (Yamamoto et al., Parallel WaveGAN)."""
    total = estimate.new_zeros(())
    for n_fft, hop in resolutions:
        window = torch.hann_window(n_fft, device=estimate.device)
        est, tgt = (torch.stft(x, n_fft, hop, window=window, pad_mode="constant", return_complex=True)
                    .abs().clamp_min(1e-7) for x in (estimate, target))  # zero padding: any crop length
        convergence = torch.linalg.vector_norm(tgt - est) / torch.linalg.vector_norm(tgt).clamp_min(1e-8)
        total = total + convergence + F.l1_loss(est.log(), tgt.log())
    return total / len(resolutions)


def inverse_stft(spec: torch.Tensor, n_fft: int, hop_length: int) -> torch.Tensor:
    """Waveforms ``[B * C, S]`` of complex ``[B, C, F, T]`` spectra (Nyquist bin dropped; restored as
    zero), by the inverse STFT (Hann window)."""
    spec = F.pad(spec.to(torch.complex64).flatten(0, 1), (0, 0, 0, 1))
    return torch.istft(spec, n_fft, hop_length, window=torch.hann_window(n_fft, device=spec.device))


def resynthesise(magnitude: torch.Tensor, phase: torch.Tensor, n_fft: int, hop_length: int) -> torch.Tensor:
    """Waveforms ``[B * C, S]`` of ``[B, C, F, T]`` magnitudes with the given phase (:func:`inverse_stft`)."""
    return inverse_stft(torch.polar(magnitude.float(), phase.float()), n_fft, hop_length)


def negative_sdr(estimate: torch.Tensor, target: torch.Tensor, floor: torch.Tensor) -> torch.Tensor:
    """Negative SDR in dB of waveforms ``[N, S]``, the mean over N. ``floor [N]`` is added to both
    energies, so a silent reference gives a bounded loss (at most ``10 log10(1 + |estimate|^2 / floor)``)."""
    num = target.square().sum(-1) + floor
    den = (target - estimate).square().sum(-1) + floor
    return 10 * torch.log10(den / num).mean()


@dataclasses.dataclass
class SeparationLossConfig(Config):
    """Args:
        l1: weight of the L1 on ``mask * mixture`` vs target (linear magnitude).
        mel: weight of an L1 on mel-scale magnitudes (more weight on low frequencies, like hearing).
        n_mels: mel bands of the mel term.
        sample_rate: sample rate of the audio behind the spectrogram (mel band edges).
        multi_resolution: weight of the multi-resolution spectral term (spectral convergence + log
            magnitude L1 at several pooled resolutions).
        scales: pooling factors of the multi-resolution term (1 = full resolution).
        stft: weight of the multi-resolution STFT loss on waveforms: estimate and target magnitudes
            are resynthesised with the mixture's phase (the batch needs ``phase``) and compared at
            ``stft_resolutions``.
        stft_resolutions: ``(n_fft, hop)`` pairs of that loss.
        sdr: weight of a waveform SDR loss: the negative SDR (dB) of both stems, the target and the
            residual (mixture - target: the vocals when the target is the instrumental), all
            resynthesised with the mixture's phase, with energies floored at -30 dB of the
            mixture's; the batch needs ``phase``.
        n_fft: STFT size of the training spectrogram (for the resynthesis).
        hop_length: its hop.
    """

    l1: float = 1.0
    mel: float = 0.0
    n_mels: int = 128
    sample_rate: int = 44100
    multi_resolution: float = 0.0
    scales: tuple[int, ...] = (1, 2, 4, 8)
    stft: float = 0.0
    stft_resolutions: tuple[tuple[int, ...], ...] = ((512, 128), (1024, 256), (2048, 512))
    sdr: float = 0.0
    n_fft: int = 2048
    hop_length: int = 1024

    PRESETS = {"spectral": dict(mel=1.0, multi_resolution=0.1), "stft": dict(stft=0.1), "sdr": dict(l1=0.0, sdr=1.0)}

    @property
    def needs_phase(self) -> bool:
        """Whether the batch must carry the mixture phase (the waveform terms)."""
        return bool(self.stft or self.sdr)

    def validate(self) -> None:
        weights = (self.l1, self.mel, self.multi_resolution, self.stft, self.sdr)
        self.require(min(weights) >= 0, "loss weights must be >= 0")
        self.require(sum(weights) > 0, "at least one loss weight must be > 0")
        self.require(all(len(r) == 2 and min(r) >= 1 for r in self.stft_resolutions),
                     "stft_resolutions must be (n_fft, hop) pairs")
        self.require(self.n_mels >= 1 and all(s >= 1 for s in self.scales), "n_mels and scales must be >= 1")


class SeparationLoss:
    """Supervised separation loss: weighted L1 + mel L1 + multi-resolution spectral term.

    ``SeparationLoss()`` (defaults) equals :func:`separation_l1`. Reported metrics: each active term.
    """

    def __init__(self, config: SeparationLossConfig | None = None, **overrides):
        self.config = config or SeparationLossConfig.preset("default", **overrides)
        self._banks: dict[tuple, torch.Tensor] = {}

    def _bank(self, num_bins: int, device: torch.device) -> torch.Tensor:
        key = (num_bins, str(device))
        if key not in self._banks:
            n_fft = 2 * num_bins  # the Nyquist bin was dropped: leave out its filter column
            bank = mel_filterbank(MelConfig(sample_rate=self.config.sample_rate, n_fft=n_fft, hop_length=n_fft // 4,
                                            n_mels=self.config.n_mels))
            self._banks[key] = bank[:, :num_bins].to(device)
        return self._banks[key]

    def terms(self, estimate: torch.Tensor, target: torch.Tensor, phase: torch.Tensor | None = None,
              mixture: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Each weighted term's unweighted value, for ``[B, C, F, T]`` magnitudes (the waveform terms
        also need the mixture ``phase``, the SDR term the ``mixture`` magnitude) or complex spectra
        (then the mixture's spectrum, no phase)."""
        cfg, out = self.config, {}
        spectra = estimate.is_complex()
        if cfg.l1:
            out["l1"] = spectral_l1(estimate, target)
        complex_pair = (estimate, target)
        if spectra:  # the magnitude terms compare magnitudes
            estimate, target = estimate.abs(), target.abs()
        if cfg.mel:
            bank = self._bank(estimate.shape[-2], estimate.device)
            with float32_scope(estimate.device.type):  # autocast would round the projections to half precision
                out["mel"] = F.l1_loss(torch.einsum("mf,bcft->bcmt", bank, estimate),
                                       torch.einsum("mf,bcft->bcmt", bank, target))
        if cfg.multi_resolution:
            out["multi_resolution"] = multi_resolution_l1(estimate, target, cfg.scales)
        if cfg.needs_phase and phase is None and not spectra:
            raise ValueError("the waveform loss terms need the mixture phase in the batch: "
                             "build the dataset with VoxAugConfig(return_phase=True)")
        if not cfg.needs_phase:
            return out
        if spectra:
            to_wave = functools.partial(inverse_stft, n_fft=cfg.n_fft, hop_length=cfg.hop_length)
            est, tgt = map(to_wave, complex_pair)
        else:
            to_wave = functools.partial(resynthesise, phase=phase, n_fft=cfg.n_fft, hop_length=cfg.hop_length)
            est, tgt = to_wave(estimate), to_wave(target)
        if cfg.stft:
            out["stft"] = multi_resolution_stft(est, tgt, cfg.stft_resolutions)
        if cfg.sdr:
            if mixture is None:
                raise ValueError("the SDR loss term needs the mixture (its magnitude or spectrum)")
            mix = to_wave(full_precision(mixture))
            floor = 1e-3 * mix.square().sum(-1)
            out["sdr"] = (negative_sdr(est, tgt, floor) + negative_sdr(mix - est, mix - tgt, floor)) / 2
        return out

    def __call__(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        parts = masked_mixture(model, batch)
        estimate, target = full_precision(parts["estimate"]), full_precision(parts["target"])
        terms = self.terms(estimate, target, parts.get("phase"), parts["mixture"])
        loss = sum(getattr(self.config, name) * value for name, value in terms.items())
        return loss, {name: value.detach() for name, value in terms.items()} if len(terms) > 1 else {}


# --------------------------------------------------------------------------- mel expansion

def frame_mask(frames: torch.Tensor, width: int) -> torch.Tensor:
    """``[B, 1, 1, width]`` bool: True on each item's first ``frames`` columns."""
    return (torch.arange(width, device=frames.device) < frames[:, None])[:, None, None]


def masked_mean_l1(estimate: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute error of ``[B, 1, M, T]`` tensors over the columns where ``mask`` is True."""
    weight = mask.expand_as(target).to(torch.float32)  # a weighted mean: no data-dependent shapes, no sync
    return ((estimate - target).abs() * weight).sum() / weight.sum().clamp_min(1.0)


def multiscale_l1(estimate: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                  scales: Sequence[int] = (2, 4, 8)) -> torch.Tensor:
    """Mean over ``scales`` of the L1 between ``s x s`` average-pooled copies (padding copied from
    the target so it adds no error), scaled by the valid fraction."""
    estimate = torch.where(mask, estimate, target)
    valid = mask.float().mean().clamp(min=1e-8)
    terms = [F.l1_loss(F.avg_pool2d(estimate, s, ceil_mode=True), F.avg_pool2d(target, s, ceil_mode=True)) / valid
             for s in scales]
    return torch.stack(terms).mean()


def spectral_gradient_l1(estimate: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L1 between the frequency and time differences of ``estimate`` and ``target`` (real columns only)."""
    df = lambda x: x[..., 1:, :] - x[..., :-1, :]  # noqa: E731
    dt = lambda x: x[..., 1:] - x[..., :-1]  # noqa: E731
    both = mask[..., 1:] & mask[..., :-1]
    return masked_mean_l1(df(estimate), df(target), mask) + masked_mean_l1(dt(estimate), dt(target), both)


def length_l1(log_frames: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """L1 between predicted ``log(frames)`` ``[B]`` and the true length's log."""
    return (log_frames - frames.float().log()).abs().mean()
