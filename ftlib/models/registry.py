"""The model registry: a name maps to ``(ConfigDataclass, nn.Module)``; families register themselves
with :func:`register` (see :mod:`ftlib.models`)."""
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


def mask_of(output):
    """A separation model's mask: its output, or the first item of a tuple output (e.g. with a
    vocal-activity head)."""
    return output[0] if isinstance(output, (tuple, list)) else output


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
