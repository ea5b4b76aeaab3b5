"""Finetuning a pretrained U-Net separation model: which parameters train, at which learning rate.

Methods (the seed project's three, plus plain full finetuning):

- ``"full"``: every parameter at the base learning rate.
- ``"llrd"``: layer-wise learning-rate decay. Parameters are ordered by depth along the U-Net's
  signal path (input embedding, encoder levels, bridge, decoder levels, output head); the output
  gets the base rate and each step towards the input multiplies it by ``decay``.
- ``"transformer"``: only the transformer modules (attention blocks, transformer encoders) train.
- ``"last_decoders"``: only the last ``n`` decoder levels (with their transformer blocks) and the
  output head train.

Frozen parameters get ``requires_grad = False``; :func:`param_groups` returns the optimizer groups
with an ``lr_scale`` that the engine multiplies into its schedule.
"""
from __future__ import annotations

import re

from torch import nn

METHODS = ("full", "llrd", "transformer", "last_decoders")
_STAGES = (("embedding", 0), ("encoder", 1), ("bridge", 2), ("decoder", 3), ("out", 4))


def _depth(name: str) -> tuple[int, int]:
    """(stage, level) of a parameter name like ``encoder_tfs.2.attn.q.weight``; unknown names count
    as the input side."""
    head = name.split(".")[0]
    level = re.match(r"[^.]+\.(\d+)\.", name)
    for prefix, stage in _STAGES:
        if head.startswith(prefix):
            return stage, int(level.group(1)) if level else 0
    return 0, 0


def _is_transformer(module: nn.Module) -> bool:
    name = type(module).__name__
    return "Transformer" in name or "Attention" in name


def _transformer_parameters(model: nn.Module) -> set[str]:
    names = set()
    for prefix, module in model.named_modules():
        if prefix and _is_transformer(module):  # the root may be called a "...Transformer" itself
            names.update(f"{prefix}.{n}" if prefix else n for n, _ in module.named_parameters())
    return names


def _last_decoder_parameters(model: nn.Module, n: int) -> set[str]:
    depth = {name: _depth(name) for name, _ in model.named_parameters()}
    levels = sorted({level for stage, level in depth.values() if stage == 3})
    if not levels:
        raise ValueError(f"{type(model).__name__} has no decoder levels (parameters named decoder*.<i>.*)")
    keep = set(levels[-n:])
    return {name for name, (stage, level) in depth.items() if stage == 4 or (stage == 3 and level in keep)}


def param_groups(model: nn.Module, method: str = "full", decay: float = 0.8, last_decoders: int = 1) -> list[dict]:
    """Optimizer parameter groups for ``method`` (see module docstring); freezes what does not train.

    Returns ``[{"params": [...], "lr_scale": s, "name": ...}, ...]`` covering the trainable parameters.
    """
    if method not in METHODS:
        raise ValueError(f"finetuning method must be one of {METHODS}, got {method!r}")
    named = list(model.named_parameters())
    if method == "llrd":
        depths = sorted({_depth(name) for name, _ in named})
        groups = {d: {"params": [], "lr_scale": decay ** (len(depths) - 1 - i), "name": f"depth-{i}"}
                  for i, d in enumerate(depths)}
        for name, p in named:
            p.requires_grad_(True)
            groups[_depth(name)]["params"].append(p)
        return list(groups.values())
    trainable = {"full": lambda: {n for n, _ in named},
                 "transformer": lambda: _transformer_parameters(model),
                 "last_decoders": lambda: _last_decoder_parameters(model, last_decoders)}[method]()
    if not trainable:
        raise ValueError(f"finetuning method {method!r} leaves no trainable parameter in {type(model).__name__}")
    for name, p in named:
        p.requires_grad_(name in trainable)
    return [{"params": [p for n, p in named if n in trainable], "lr_scale": 1.0, "name": method}]
