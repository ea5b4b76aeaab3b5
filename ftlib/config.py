"""Dataclass configs: JSON round trip, validation on construction, named presets.

Every model, dataset and recipe config subclasses :class:`Config`::

    @dataclass
    class MyConfig(Config):
        channels: int = 32   # feature maps of the first level
        PRESETS = {"tiny": dict(channels=4)}

    MyConfig.preset("tiny", channels=8).to_json()
"""
from __future__ import annotations

import dataclasses
import json
import typing
import warnings
from pathlib import Path
from typing import Any, ClassVar

from ftlib.errors import ConfigError


def _check_type(cls_name: str, name: str, value: Any, annotation: Any) -> Any:
    """Coerce JSON-ish values to the annotated scalar type, or raise a ConfigError."""
    origin = typing.get_origin(annotation)
    if annotation is bool:
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
            setattr(self, f.name, _check_type(type(self).__name__, f.name, value, hints[f.name]))
        self.validate()

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
        values = {**cls.PRESETS.get(name, {}), **overrides}
        return cls.from_dict(values)

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
        return type(self).from_dict({**self.to_dict(), **changes})

    # serialisation
    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    @classmethod
    def from_json(cls, text_or_path: str | Path):
        path = Path(text_or_path) if not str(text_or_path).lstrip().startswith("{") else None
        try:
            values = json.loads(path.read_text() if path else str(text_or_path))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read {cls.__name__} from {path or 'text'}: {exc}") from exc
        return cls.from_dict(values)
