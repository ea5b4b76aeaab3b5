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


COMPLEX = "complex_separation"  # the task of complex-mask models
VOCAL_STEMS = ("vocals", "vocal")
INSTRUMENTAL_STEMS = ("instrumental", "other", "accompaniment")


def is_complex(model: nn.Module) -> bool:
    """Whether ``model`` reads the complex STFT (its mask is complex unless :func:`has_complex_mask` says not)."""
    return getattr(model, "task", None) == COMPLEX


def has_complex_mask(model: nn.Module) -> bool:
    """Whether ``model`` returns a complex mask: a model of the complex STFT does unless its
    ``complex_mask`` attribute is False (a conv U-Net that reads it for mid/side features)."""
    return is_complex(model) and getattr(model, "complex_mask", True)


def instrumental_mask(model: nn.Module, output) -> Any:
    """The instrumental mask ``[B, C, F, T]`` in a separation model's output.

    Magnitude models and ftlib's complex-mask heads predict it directly. A complex-mask model with
    stems (the RoFormers) predicts ``config.target_stem``: the mask of the vocals becomes ``1 - mask``
    (exact, the STFT being linear); one that returns every stem ``[B, S, C, F, T]`` gives its vocals'.
    """
    mask = mask_of(output)
    config = getattr(model, "config", None)
    stems = getattr(config, "stems", None)
    if stems is None:
        return mask
    stem = config.target_stem
    if not stem:
        stem = next((s for s in stems if s in VOCAL_STEMS + INSTRUMENTAL_STEMS), None)
        if stem is None:
            raise ConfigError(f"the model's stems {tuple(stems)} include neither vocals nor an instrumental")
        mask = mask[:, list(stems).index(stem)]
    if stem in VOCAL_STEMS:
        return 1 - mask
    if stem in INSTRUMENTAL_STEMS:
        return mask
    raise ConfigError(f"the model separates {stem!r}; vocal removal needs a model of the vocals or the instrumental")


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
