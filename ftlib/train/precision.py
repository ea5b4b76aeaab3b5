"""Mixed precision for the training engine: autocast and, for fp16, a dynamic loss scaler.

The same ``torch.amp`` code runs on CPU and GPU (Accelerate's fp16 needs CUDA and silently trains
in fp32 on a CPU). Under DDP the scaler stays in step across processes: gradients are all-reduced
before it looks for inf/NaN, so every process sees the same overflow and skips the same steps.
"""
from __future__ import annotations

import contextlib
from typing import Any

import torch

DTYPES = {"no": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    """``mode`` is ``"no"``, ``"bf16"`` or ``"fp16"``; ``device`` the training device."""

    def __init__(self, mode: str, device: torch.device):
        self.device_type = torch.device(device).type
        self.dtype = DTYPES[mode]
        self.scaler = torch.amp.GradScaler(self.device_type) if mode == "fp16" else None

    def autocast(self):
        """Context for the forward pass and the loss."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        """The loss to call ``backward`` on."""
        return loss if self.scaler is None else self.scaler.scale(loss)

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Bring gradients back to their true size (before clipping or reading their norm)."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> bool:
        """Optimizer step; False when the loss scaler skipped it for inf/NaN gradients."""
        if self.scaler is None:
            optimizer.step()
            return True
        scale = self.scaler.get_scale()
        self.scaler.step(optimizer)
        self.scaler.update()
        return self.scaler.get_scale() >= scale  # the scale only shrinks after an overflow

    def state_dict(self) -> dict[str, Any] | None:
        return None if self.scaler is None else self.scaler.state_dict()

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
