"""Looking inside models: parameter counts of every preset, the attention maps of a forward pass and
the memory the explicit (residual-attention) path needs for its score maps."""
from __future__ import annotations

import torch
from torch import nn

from ftlib.layers import MultichannelMultiheadAttention
from ftlib.models.registry import list_models, lookup


def _on_meta(name: str, preset: str = "default", **overrides) -> nn.Module:
    """A model of a preset on the meta device (no memory is allocated)."""
    config_cls, module_cls = lookup(name)
    with torch.device("meta"):
        return module_cls(config_cls.preset(preset, **overrides))


def count_parameters(name: str, preset: str = "default", **overrides) -> int:
    """Parameters of a preset, counted on the meta device."""
    return sum(p.numel() for p in _on_meta(name, preset, **overrides).parameters())


def preset_table() -> list[dict]:
    """One row per (model, preset): ``{"model", "preset", "parameters", "task"}``."""
    rows = []
    for name in list_models():
        for preset in ("default", *lookup(name)[0].PRESETS):
            model = _on_meta(name, preset)
            rows.append({"model": name, "preset": preset, "parameters": sum(p.numel() for p in model.parameters()),
                         "task": getattr(model, "task", "")})
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


def score_memory(name: str, preset: str = "default", batch_size: int = 8, frames: int = 1024,
                 bytes_per_score: int = 6, **overrides) -> int:
    """Bytes that the attention layers running the explicit path (residual attention chains) keep
    for the backward pass in one training step of ``batch_size`` crops of ``frames`` frames: every
    such layer holds its ``[B, C, H, T, Tm]`` attention weights, ``bytes_per_score`` per score (6 with
    bf16/fp16 activations: float32 weights and a half-precision copy; 4 in float32). Layers on the
    fused kernel keep no score maps. Computed on the meta device: nothing is allocated."""
    model = _on_meta(name, preset, **overrides).train()
    scores = []

    def hook(layer, args, kwargs, output):
        x, memory = args[0], kwargs.get("memory")
        if kwargs.get("prev_scores") is not None or kwargs.get("return_scores") or layer.force_explicit:
            frames_in = x.shape[-1] if memory is None else memory.shape[-1]
            scores.append(x.shape[0] * layer.channels * layer.num_heads * x.shape[-1] * frames_in)

    handles = [m.register_forward_hook(hook, with_kwargs=True) for m in model.modules()
               if isinstance(m, MultichannelMultiheadAttention)]
    try:
        model(torch.empty(batch_size, model.config.in_channels, model.config.num_bins, frames, device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    return sum(scores) * bytes_per_score
