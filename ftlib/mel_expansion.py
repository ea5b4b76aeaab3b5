"""Mel expansion recipe: losses, the batch -> loss function, generation helpers and the fold sweep.

A batch is ``{"mel": [B, 1, M, T], "frames": [B]}`` (see :mod:`ftlib.data.mel_chunks`); frames past
an item's ``frames`` are padding and never count in a loss.

Losses: L1 on the teacher-forced reconstruction (the plain objective, which gives blurry mels),
optionally an L1 on average-pooled copies at several scales and an L1 on the spectral gradients
(time and frequency differences) that penalise smearing of edges, plus an L1 on the predicted
``log(frames)`` that trains the length head.

    loss_fn = MelExpansionLoss(MelLossConfig(multiscale_weight=1.0))
    model = fit(model, loss_fn, train_data, TrainConfig(...), run_dir, valid_data=valid)
    mel, frames = expand(model, batch["mel"], batch["frames"])     # free-running, predicted length
"""
from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ftlib.config import Config
from ftlib.mel import Vocoder
from ftlib.models.mel_reformer import MelReformer, MelReformerConfig
from ftlib.train import TrainConfig, evaluate, fit
from ftlib.train.engine import LossFn

__all__ = ["MelLossConfig", "MelExpansionLoss", "frame_mask", "masked_l1", "multiscale_l1", "spectral_gradient_l1",
           "length_l1", "mel_l1", "reconstruct", "expand", "to_audio", "free_running_l1", "fold_sweep"]


@dataclasses.dataclass
class MelLossConfig(Config):
    """Weights of the mel-expansion loss terms (0 disables a term)."""

    l1_weight: float = 1.0  # L1 on the reconstructed log-mel
    multiscale_weight: float = 0.0  # L1 on average-pooled copies at ``scales``
    scales: tuple[int, ...] = (2, 4, 8)  # pooling sizes (mel bands x frames) of the multi-scale term
    gradient_weight: float = 0.0  # L1 on time and frequency differences
    length_weight: float = 0.1  # L1 on the predicted log(frames)

    PRESETS = {"sharp": dict(multiscale_weight=0.5, gradient_weight=1.0)}

    def validate(self) -> None:
        for name in ("l1_weight", "multiscale_weight", "gradient_weight", "length_weight"):
            self.require(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        self.require(all(s >= 1 for s in self.scales), f"scales must be >= 1, got {self.scales}")


def frame_mask(frames: torch.Tensor, width: int) -> torch.Tensor:
    """``[B, 1, 1, width]`` bool: True on each item's first ``frames`` columns."""
    return (torch.arange(width, device=frames.device) < frames[:, None])[:, None, None]


def masked_l1(estimate: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
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
    return masked_l1(df(estimate), df(target), mask) + masked_l1(dt(estimate), dt(target), both)


def length_l1(log_frames: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """L1 between predicted ``log(frames)`` ``[B]`` and the true length's log."""
    return (log_frames - frames.float().log()).abs().mean()


class MelExpansionLoss:
    """``loss_fn(model, batch) -> (loss, metrics)`` for :func:`ftlib.train.fit`; the metrics are every term."""

    def __init__(self, config: MelLossConfig | None = None):
        self.config = config or MelLossConfig()

    def __call__(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        cfg, mel, frames = self.config, batch["mel"], batch["frames"]
        estimate, log_frames = model(mel, frames)
        mask = frame_mask(frames, mel.shape[-1])
        terms = {"l1": masked_l1(estimate, mel, mask), "length": length_l1(log_frames, frames)}
        if cfg.multiscale_weight:
            terms["multiscale"] = multiscale_l1(estimate, mel, mask, cfg.scales)
        if cfg.gradient_weight:
            terms["gradient"] = spectral_gradient_l1(estimate, mel, mask)
        weights = {"l1": cfg.l1_weight, "length": cfg.length_weight, "multiscale": cfg.multiscale_weight,
                   "gradient": cfg.gradient_weight}
        loss = sum(weights[k] * v for k, v in terms.items())
        return loss, {k: v.detach() for k, v in terms.items()}


def mel_l1(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """Teacher-forced reconstruction L1 alone (a validation score comparable across loss settings)."""
    estimate, _ = model(batch["mel"], batch["frames"])
    loss = masked_l1(estimate, batch["mel"], frame_mask(batch["frames"], batch["mel"].shape[-1]))
    return loss, {"l1": loss.detach()}


# ------------------------------------------------------------------------------- generation

@torch.no_grad()
def reconstruct(model: MelReformer, mel: torch.Tensor, frames: torch.Tensor | None = None) -> torch.Tensor:
    """Teacher-forced reconstruction ``[B, 1, M, T]`` of ``mel`` (eval mode)."""
    was_training = model.training
    model.eval()
    try:
        return model(mel, frames)[0]
    finally:
        model.train(was_training)


@torch.no_grad()
def expand(model: MelReformer, mel: torch.Tensor, frames: torch.Tensor | None = None, known_length: bool = False,
           use_cache: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Free-running expansion of ``mel [B, 1, M, T]``'s idea (its first ``frames`` columns resized).

    The length comes from the length head, or with ``known_length`` from ``frames``. Returns the
    generated log-mel ``[B, 1, M, T']`` and its ``frames [B]``.
    """
    was_training = model.training
    model.eval()
    try:
        return model.generate(model.idea(mel, frames), frames if known_length else None, use_cache=use_cache)
    finally:
        model.train(was_training)


def to_audio(vocoder: Vocoder, mel: torch.Tensor, frames: torch.Tensor | None = None) -> list[np.ndarray]:
    """Audio of each item of ``mel [B, 1, M, T]`` (its first ``frames`` columns): float32 ``[S]`` arrays."""
    frames = frames if frames is not None else torch.full((mel.shape[0],), mel.shape[-1])
    return [vocoder(mel[i:i + 1, ..., :max(2, int(n))])[0].cpu().numpy() for i, n in enumerate(frames)]


def free_running_l1(model: MelReformer, data: Dataset, batch_size: int = 8) -> float:
    """Mean L1 between free-running generations (at the true length) and the originals over ``data``."""
    total, count = 0.0, 0
    device = next(model.parameters()).device
    for batch in DataLoader(data, batch_size=batch_size):
        mel, frames = batch["mel"].to(device), batch["frames"].to(device)
        generated, _ = expand(model, mel, frames, known_length=True)
        width = generated.shape[-1]
        error = masked_l1(generated, mel[..., :width], frame_mask(frames, width))
        total, count = total + float(error) * len(frames), count + len(frames)
    return total / max(1, count)


def fold_sweep(folds: Sequence[int], model_config: MelReformerConfig, train_data: Dataset, valid_data: Dataset,
               train_config: TrainConfig, run_dir: str | Path, loss_fn: LossFn | None = None) -> list[dict]:
    """Train one model per fold size ``n`` (same data, seed and steps; ``max_tokens`` scaled so the
    longest sequence in frames stays the same) into ``run_dir/fold-<n>``, and score each on
    ``valid_data``. Returns ``[{"fold", "parameters", "train_seconds", "valid_l1", "free_running_l1"}]``.
    """
    rows = []
    for n in folds:
        config = model_config.replace(fold=n, max_tokens=math.ceil(model_config.max_frames / n))
        torch.manual_seed(train_config.seed)
        started = time.perf_counter()
        model = fit(MelReformer(config), loss_fn or MelExpansionLoss(), train_data, train_config,
                    Path(run_dir) / f"fold-{n}")
        rows.append({"fold": n, "parameters": sum(p.numel() for p in model.parameters()),
                     "train_seconds": time.perf_counter() - started,
                     "valid_l1": evaluate(model, valid_data, mel_l1, train_config.batch_size,
                                          next(model.parameters()).device),
                     "free_running_l1": free_running_l1(model, valid_data, train_config.batch_size)})
    return rows
