"""Model registry: a name maps to ``(ConfigDataclass, nn.Module)``.

    >>> from ftlib import models
    >>> models.list_models()
    ['asym_unet_mct', 'frame_primer', 'frame_transformer', 'patch_discriminator', 'temporal_unet', ...]
    >>> model = models.build("frame_transformer", preset="tiny", channels=8)

A separation model (``model.task == "separation"``) takes a magnitude ``[B, C, F, T]``
(``C = config.in_channels``, ``F = config.num_bins``) and returns a mask in [0, 1] of the same
shape; a discriminator (``task == "discriminator"``) takes ``(mixture, candidate)``.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from ftlib.config import Config
from ftlib.errors import ConfigError

_REGISTRY: dict[str, tuple[type[Config], type[nn.Module]]] = {}


def register(name: str, config_cls: type[Config]):
    """Class decorator adding a model family to the registry under ``name``."""

    def wrap(module_cls: type[nn.Module]) -> type[nn.Module]:
        module_cls.model_name = name
        _REGISTRY[name] = (config_cls, module_cls)
        return module_cls

    return wrap


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def lookup(name: str) -> tuple[type[Config], type[nn.Module]]:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    return _REGISTRY[name]


def build(name: str, preset: str = "tiny", **overrides: Any) -> nn.Module:
    """Build model ``name`` from one of its config presets with field overrides."""
    config_cls, module_cls = lookup(name)
    return module_cls(config_cls.preset(preset, **overrides))


def from_config(name: str, config: Config | dict[str, Any], strict: bool = True) -> nn.Module:
    """Build model ``name`` from a config object or dict (``strict=False`` drops unknown keys)."""
    config_cls, module_cls = lookup(name)
    return module_cls(config if isinstance(config, config_cls) else config_cls.from_dict(dict(config), strict))


# importing a family registers it
from ftlib.models import asym_unet_mct, discriminators, frame_transformer, mel_reformer, temporal_unet  # noqa: E402,F401
