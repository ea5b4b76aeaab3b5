"""Adversarial finetuning: a separation generator against a discriminator conditioned on the mixture.

Steps alternate: even optimizer steps train the discriminator, odd steps the generator (the
``begin_step`` hook of :class:`AdversarialLoss` picks the phase from the step, so a resumed run
alternates exactly like an uninterrupted one).

- Discriminator step: ``D(mixture, target)`` is labelled real (1) and ``D(mixture, estimate)``
  fake (0); the estimate is computed without gradient, so the generator is untouched.
- Generator step: ``D(mixture, estimate)`` is labelled real (1) (non-saturating loss), so the
  adversarial gradient flows through the discriminator into the generator; the discriminator's
  weights enter that graph detached, so they do not move. The L1 term is added.

Both networks live in one :class:`AdversarialSeparation` module so the engine, DDP and checkpoints
treat them as one model; checkpoints export the generator.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ftlib.config import Config
from ftlib.losses import separation_l1
from ftlib.models import mask_of

PHASES = ("discriminator", "generator")


@dataclasses.dataclass
class AdversarialConfig(Config):
    """Args:
        adversarial_weight: weight of the generator's adversarial term.
        l1_weight: weight of the generator's L1 term (mask * mixture vs target).
        objective: "bce" (non-saturating, logits) or "lsgan" (least squares).
        discriminator_every: train the discriminator on one step out of this many (2 = alternate).
    """

    adversarial_weight: float = 0.01
    l1_weight: float = 1.0
    objective: str = "bce"
    discriminator_every: int = 2

    def validate(self) -> None:
        self.require(self.adversarial_weight >= 0 and self.l1_weight >= 0, "loss weights must be >= 0")
        self.require(self.objective in ("bce", "lsgan"), "objective must be 'bce' or 'lsgan'")
        self.require(self.discriminator_every >= 2, "discriminator_every must be >= 2 (the generator needs steps)")


def _gan_loss(logits: torch.Tensor, real: bool, objective: str) -> torch.Tensor:
    label = torch.full_like(logits, 1.0 if real else 0.0)
    if objective == "bce":
        return F.binary_cross_entropy_with_logits(logits.float(), label.float())
    return F.mse_loss(logits.float(), label.float())


class AdversarialSeparation(nn.Module):
    """Generator (separation model) + discriminator; ``forward`` returns a phase's ``(loss, metrics)``.

    Args:
        generator: separation model ``[B, C, F, T]`` magnitude -> mask (or tuple with it first).
        discriminator: ``(mixture, candidate)`` ``[B, C, F, T]`` each -> logits.
    """

    find_unused_parameters = True  # each phase leaves the other network's parameters out of the graph

    def __init__(self, generator: nn.Module, discriminator: nn.Module, config: AdversarialConfig | None = None):
        super().__init__()
        self.generator, self.discriminator = generator, discriminator
        self.settings = config or AdversarialConfig()

    def export(self) -> nn.Module:
        """The model a checkpoint holds: the generator."""
        return self.generator

    def forward(self, mixture: torch.Tensor, target: torch.Tensor, phase: str) -> tuple[torch.Tensor, dict]:
        cfg = self.settings
        if phase == "discriminator":
            with torch.no_grad():
                estimate = mask_of(self.generator(mixture)) * mixture
            real = _gan_loss(self.discriminator(mixture, target), True, cfg.objective)
            fake = _gan_loss(self.discriminator(mixture, estimate), False, cfg.objective)
            loss = 0.5 * (real + fake)
            return loss, {"d_real": real.detach(), "d_fake": fake.detach()}
        if phase != "generator":
            raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
        estimate = mask_of(self.generator(mixture)) * mixture
        frozen = {name: p.detach() for name, p in self.discriminator.named_parameters()}
        adversarial = _gan_loss(functional_call(self.discriminator, frozen, (mixture, estimate)), True, cfg.objective)
        l1 = F.l1_loss(estimate.float(), target.float())
        loss = cfg.l1_weight * l1 + cfg.adversarial_weight * adversarial
        return loss, {"g_adversarial": adversarial.detach(), "g_l1": l1.detach()}


class AdversarialLoss:
    """The engine's loss for :class:`AdversarialSeparation`: the phase follows the optimizer step."""

    def __init__(self, discriminator_every: int = 2):
        self.discriminator_every, self.phase = discriminator_every, "discriminator"

    def begin_step(self, step: int) -> None:
        self.phase = "discriminator" if step % self.discriminator_every == 0 else "generator"

    def __call__(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        return model(batch["mixture"], batch["target"], self.phase)

    @staticmethod
    def validation(model: AdversarialSeparation, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        """Validation scores the generator alone, with the plain separation L1."""
        return separation_l1(model.generator, batch)
