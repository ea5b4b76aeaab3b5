"""Looking inside models: parameter counts of every preset and the attention maps of a forward pass."""
from __future__ import annotations

import torch
from torch import nn

from ftlib.layers import MultichannelMultiheadAttention
from ftlib.models import list_models, lookup


def count_parameters(name: str, preset: str = "default", **overrides) -> int:
    """Parameters of a preset, counted on the meta device (no memory is allocated)."""
    config_cls, module_cls = lookup(name)
    with torch.device("meta"):
        model = module_cls(config_cls.preset(preset, **overrides))
    return sum(p.numel() for p in model.parameters())


def preset_table() -> list[dict]:
    """One row per (model, preset): ``{"model", "preset", "parameters", "task"}``."""
    rows = []
    for name in list_models():
        config_cls, module_cls = lookup(name)
        for preset in ("default", *config_cls.PRESETS):
            rows.append({"model": name, "preset": preset, "parameters": count_parameters(name, preset),
                         "task": getattr(module_cls, "task", "")})
    return rows


@torch.no_grad()
def attention_maps(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Attention weights ``[C, H, T, Tm]`` of the first batch item for every attention layer, by
    module name, from one forward pass of ``model`` on ``x [B, C, F, T]``."""
    layers = {name: m for name, m in model.named_modules() if isinstance(m, MultichannelMultiheadAttention)}
    was_training = model.training
    model.eval()
    for layer in layers.values():
        layer.capture = True
    try:
        model(x)
        return {name: layer.weights[0].cpu() for name, layer in layers.items() if layer.weights is not None}
    finally:
        for layer in layers.values():
            layer.capture, layer.weights = False, None
        model.train(was_training)
