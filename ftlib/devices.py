"""Which device and which precision: the rules training and separation share."""
from __future__ import annotations

import contextlib

import torch


def default_device() -> torch.device:
    """CUDA when there is a GPU, else Apple MPS, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def native_bf16(device: torch.device | str) -> bool:
    """True on a CUDA device with bf16 tensor cores (compute capability >= 8.0); ``torch.cuda.
    is_bf16_supported()`` also counts emulation, which is slow and keeps flash attention off."""
    device = torch.device(device)
    return device.type == "cuda" and torch.cuda.is_available() and torch.cuda.get_device_capability(device) >= (8, 0)


def autocast_available(device_type: str) -> bool:
    """Whether ``torch.autocast`` supports ``device_type`` in this torch build (not the meta device)."""
    check = getattr(torch.amp, "is_autocast_available", None)
    return bool(check(device_type)) if check is not None else device_type in ("cpu", "cuda")


def float32_scope(device_type: str):
    """A context in which autocast is off on ``device_type`` (e.g. to compute attention scores in float32)."""
    return torch.autocast(device_type, enabled=False) if autocast_available(device_type) else contextlib.nullcontext()
