"""Exponential moving average of model weights."""
from __future__ import annotations

import torch
from torch import nn


class EMA:
    """Shadow copy of a model's floating-point parameters and buffers, ``w <- d * w + (1 - d) * model``.

    The decay ramps up as ``min(decay, (1 + n) / (10 + n))`` over the first updates so the average
    is not dominated by the random initialisation. Shadows are float32 whatever the model's dtype
    and live on the model's device (build the EMA after moving the model there; a loaded state is
    moved to the shadows' device).
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay, self.updates = decay, 0
        self.shadow = {k: v.detach().float().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    @property
    def device(self) -> torch.device:
        return next(iter(self.shadow.values())).device

    @torch.no_grad()
    def update(self, model: nn.Module, keep: torch.Tensor | None = None) -> None:
        """Move the shadows towards ``model``'s weights; ``keep`` (a 0-dim bool tensor on the device,
        e.g. "this step was finite") gates the update without a host synchronisation."""
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        state = model.state_dict()
        names = list(self.shadow)
        shadows = [self.shadow[n] for n in names]
        deltas = torch._foreach_sub([state[n].detach().float() for n in names], shadows)
        torch._foreach_mul_(deltas, 1 - d if keep is None else keep.float() * (1 - d))
        torch._foreach_add_(shadows, deltas)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> nn.Module:
        """Load the averaged weights into ``model`` (in place) and return it."""
        state = model.state_dict()
        for name, value in self.shadow.items():
            state[name].copy_(value.to(state[name].dtype))
        return model

    def state_dict(self) -> dict:
        return {"updates": self.updates, "shadow": dict(self.shadow)}

    def load_state_dict(self, state: dict) -> None:
        device = self.device
        self.updates = int(state["updates"])
        self.shadow = {k: v.float().to(device).clone() for k, v in state["shadow"].items()}
