"""Mixed precision for the training engine: autocast and, for fp16, a dynamic loss scaler.

The same ``torch.amp`` code runs on CPU and GPU (Accelerate's fp16 needs CUDA and silently trains
in fp32 on a CPU). ``"auto"`` picks bf16 on GPUs that compute it natively (compute capability 8.0
and up: A100, H100, RTX 30xx and later), fp16 with a loss scaler on older GPUs (T4, V100: they
emulate bf16 without tensor cores, and the fused attention kernels refuse it) and fp32 on the CPU.

Steps are skipped without a host synchronisation: the engine passes a device-side "found
inf/NaN" flag, and the optimizer (fused AdamW) or the loss scaler skips the update on the device.
Under DDP every process sees the same flag, because gradients are all-reduced before it is computed.
"""
from __future__ import annotations

import contextlib
from typing import Any

import torch

from ftlib.devices import native_bf16

DTYPES = {"no": None, "bf16": torch.bfloat16, "fp16": torch.float16}
MODES = ("auto", *DTYPES)


def resolve(mode: str, device: torch.device | str) -> str:
    """``"auto"`` made concrete for ``device`` (see the module docstring); other modes unchanged."""
    if mode != "auto":
        return mode
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if native_bf16(device) else "fp16"
    return "no"


class Precision:
    """``mode`` is ``"auto"``, ``"no"``, ``"bf16"`` or ``"fp16"``; ``device`` the training device."""

    def __init__(self, mode: str, device: torch.device | str):
        self.device_type = torch.device(device).type
        self.mode = resolve(mode, device)
        self.dtype = DTYPES[self.mode]
        self.scaler = torch.amp.GradScaler(self.device_type) if self.mode == "fp16" else None

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

    def step(self, optimizer: torch.optim.Optimizer, found_inf: torch.Tensor) -> None:
        """Optimizer step, skipped on the device where ``found_inf`` (a 0-dim tensor) is nonzero.

        The optimizer must support device-side skipping (``fused=True`` AdamW); with fp16 the
        loss scaler finds the overflow itself and halves its scale.
        """
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
            return
        optimizer.grad_scale, optimizer.found_inf = None, found_inf.float()
        try:
            optimizer.step()
        finally:
            del optimizer.grad_scale, optimizer.found_inf

    def state_dict(self) -> dict[str, Any] | None:
        return None if self.scaler is None else self.scaler.state_dict()

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
