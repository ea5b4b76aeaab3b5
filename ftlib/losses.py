"""Loss functions. A training loss takes ``(model, batch)`` and returns ``(loss, metrics)``."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def first(output):
    """A model's mask: the output itself, or the first item of a tuple output."""
    return output[0] if isinstance(output, (tuple, list)) else output


def separation_l1(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """L1 between ``mask * mixture`` and the target magnitude (all ``[B, C, F, T]``)."""
    mixture, target = batch["mixture"], batch["target"]
    estimate = first(model(mixture)) * mixture
    return F.l1_loss(estimate.float(), target.float()), {}
