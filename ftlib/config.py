"""Dataclass configs: JSON round trip, validation on construction, named presets.

Every model, dataset and recipe config subclasses :class:`Config`::

    @dataclass
    class MyConfig(Config):
        channels: int = 32   # feature maps of the first level
        PRESETS = {"tiny": dict(channels=4)}

    MyConfig.preset("tiny", channels=8).to_json()

A field may itself be a Config (a nested section, ``train: TrainConfig = field(default_factory=...)``):
dicts given for it (in presets, overrides, JSON) are merged into its defaults key by key, so a
preset names only what differs, however deep.
"""
from __future__ import annotations

import dataclasses
import json
import typing
import warnings
from pathlib import Path
from typing import Any, ClassVar

from ftlib import atomic
from ftlib.errors import ConfigError


def _is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, Config)


def merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``changes``, recursing into values that are dicts on both sides."""
    out = dict(base)
    for key, value in changes.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def given(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` without its None entries (recursively): the ones a caller actually set."""
    return {k: given(v) if isinstance(v, dict) else v for k, v in values.items() if v is not None}


def _check_type(cls_name: str, name: str, value: Any, annotation: Any) -> Any:
    """Coerce JSON-ish values to the annotated type (a nested Config from a dict), or raise a ConfigError."""
    origin = typing.get_origin(annotation)
    if _is_section(annotation):
        if isinstance(value, annotation):
            return value
    elif annotation is dict or origin is dict:
        if isinstance(value, dict):
            return dict(value)
    elif annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif annotation is str:
        if isinstance(value, str):
            return value
    elif origin in (tuple, list):
        if isinstance(value, (bool, int, float, str)):  # one value for a per-level field
            value = (value,)
        if isinstance(value, (list, tuple)):
            args = typing.get_args(annotation)
            if len(args) > 1 and Ellipsis not in args:  # fixed length, one type per position
                if len(value) == len(args):
                    return tuple(_check_type(cls_name, name, v, a) for v, a in zip(value, args))
            else:
                item = args[0] if args else Any
                if item is Any:
                    return tuple(value)
                return tuple(_check_type(cls_name, name, v, item) for v in value)
    elif origin is typing.Union:
        args = typing.get_args(annotation)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(cls_name, name, value, arg)
            except ConfigError:
                pass
    else:
        return value
    raise ConfigError(f"{cls_name}.{name} must be {getattr(annotation, '__name__', annotation)}, got {value!r}")


@dataclasses.dataclass
class Config:
    """Base of every ftlib config. Subclasses define fields, ``PRESETS`` and ``validate``."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if _is_section(hints[f.name]) and isinstance(value, dict):
                value = self._section(f, hints[f.name], value)
            setattr(self, f.name, _check_type(type(self).__name__, f.name, value, hints[f.name]))
        self.validate()

    def _section(self, field: dataclasses.Field, cls: type[Config], changes: dict[str, Any]) -> Config:
        """A nested section from a dict of changes to the field's default."""
        has_factory = field.default_factory is not dataclasses.MISSING
        default = field.default_factory() if has_factory else cls()
        try:
            return cls.from_dict(merge(default.to_dict(), changes))
        except ConfigError as exc:
            raise ConfigError(f"{type(self).__name__}.{field.name}: {exc}") from None

    def validate(self) -> None:
        """Raise ConfigError on inconsistent values (override in subclasses)."""

    def require(self, condition: bool, message: str) -> None:
        if not condition:
            raise ConfigError(f"{type(self).__name__}: {message}")

    # presets and construction
    @classmethod
    def preset(cls, name: str = "default", **overrides: Any):
        """A named preset (``"default"`` = the dataclass defaults) with field overrides."""
        if name != "default" and name not in cls.PRESETS:
            known = ", ".join(["default", *cls.PRESETS])
            raise ConfigError(f"{cls.__name__} has no preset {name!r}; known presets: {known}")
        return cls.from_dict(merge(cls.PRESETS.get(name, {}), overrides))

    @classmethod
    def from_dict(cls, values: dict[str, Any], strict: bool = True):
        """Build from a dict; unknown keys are an error, or with ``strict=False`` (loading configs
        saved by older versions) dropped with a warning."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown and strict:
            raise ConfigError(f"{cls.__name__} has no field(s) {', '.join(unknown)}; fields: {', '.join(sorted(names))}")
        if unknown:
            warnings.warn(f"{cls.__name__}: ignoring unknown field(s) {', '.join(unknown)}", stacklevel=2)
        return cls(**{k: v for k, v in values.items() if k in names})

    def replace(self, **changes: Any):
        """A copy with ``changes``; dicts merge into nested sections."""
        return type(self).from_dict(merge(self.to_dict(), changes))

    # serialisation
    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Config):
                value = value.to_dict()
            out[f.name] = _plain(value)
        return out

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            atomic.write_text(path, text + "\n")
        return text

    @classmethod
    def from_json(cls, text_or_path: str | Path):
        path = Path(text_or_path) if not str(text_or_path).lstrip().startswith("{") else None
        try:
            values = json.loads(path.read_text() if path else str(text_or_path))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read {cls.__name__} from {path or 'text'}: {exc}") from exc
        return cls.from_dict(values)


def _plain(value: Any) -> Any:
    """Tuples (at any depth) as lists, for JSON."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value
