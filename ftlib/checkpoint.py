"""Checkpoints: safetensors weights + JSON, never pickle.

A checkpoint is a folder::

    model.safetensors   weights; its metadata repeats the model name and config
    config.json         {"model": name, "config": {...}, "format": 1, "inference": {...}}
    state.safetensors   (optional) every tensor of the training state
    state.json          (optional) the rest of the training state, tensors replaced by references

``inference`` (optional) holds how the model was trained to be run: ``cropsize`` (the training crop
size), ``padding``, and after a context-length study ``best_cropsize``; separation uses them unless
told otherwise. It is written into a temporary sibling folder and renamed into place, so a crash never
leaves a half-written checkpoint under the final name.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ftlib import atomic
from ftlib.atomic import replacing
from ftlib.errors import CheckpointError

FORMAT = 1
_TENSOR = "__tensor__"


# ------------------------------------------------------------------------- nested state <-> flat

def _flatten(obj: Any, tensors: dict[str, torch.Tensor], prefix: str = "") -> Any:
    """Replace every tensor in a nested dict/list structure by a reference into ``tensors``."""
    if isinstance(obj, torch.Tensor):
        key = prefix or "tensor"
        tensors[key] = obj.detach().cpu().contiguous()
        return {_TENSOR: key}
    if isinstance(obj, dict):
        return {"__dict__": [[_flatten(k, tensors, f"{prefix}.k{i}"), _flatten(v, tensors, f"{prefix}.{i}")]
                             for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, (list, tuple)):
        items = [_flatten(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]
        return {"__tuple__": items} if isinstance(obj, tuple) else items
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise CheckpointError(f"cannot store a {type(obj).__name__} in a checkpoint state")


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if _TENSOR in obj:
            return tensors[obj[_TENSOR]]
        if "__dict__" in obj:
            return {_unflatten(k, tensors): _unflatten(v, tensors) for k, v in obj["__dict__"]}
        if "__tuple__" in obj:
            return tuple(_unflatten(v, tensors) for v in obj["__tuple__"])
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    return obj


# ------------------------------------------------------------------------------- save / load

def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside DDP/compile wrappers (so saved names never start with ``module.``)."""
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    return getattr(model, "_orig_mod", model)


def save(model: nn.Module, path: str | Path, inference: dict[str, Any] | None = None, **state: Any) -> Path:
    """Write ``model`` (and optional training ``state``) as a checkpoint folder at ``path``, atomically.
    ``inference`` defaults to the model's own ``inference`` attribute (set when it was loaded or trained)."""
    model = unwrap(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {"model": model.model_name, "config": model.config.to_dict(), "format": FORMAT}
    inference = inference if inference is not None else getattr(model, "inference", None)
    if inference:
        header["inference"] = dict(inference)
    with replacing(path, folder=True) as tmp:
        weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(weights, tmp / "model.safetensors", metadata={"ftlib": json.dumps(header)})
        (tmp / "config.json").write_text(json.dumps(header, indent=2) + "\n")
        if state:
            tensors: dict[str, torch.Tensor] = {}
            skeleton = _flatten(state, tensors)
            save_file(tensors, tmp / "state.safetensors")
            (tmp / "state.json").write_text(json.dumps(skeleton) + "\n")
    return path


def _folder(path: str | Path) -> Path:
    path = Path(path)
    if path.is_file() and path.suffix == ".safetensors":
        path = path.parent
    if not (path / "model.safetensors").is_file():
        raise CheckpointError(f"{path}: not an ftlib checkpoint (no model.safetensors); pass a checkpoint folder")
    return path


def read_header(path: str | Path) -> dict[str, Any]:
    """The ``{"model", "config", "inference"}`` header of a checkpoint (``inference`` may be empty)."""
    path = _folder(path)
    try:
        header = json.loads((path / "config.json").read_text())
        return {"model": header["model"], "config": header["config"], "inference": header.get("inference", {})}
    except (OSError, json.JSONDecodeError, KeyError) as exc:
        raise CheckpointError(f"{path}/config.json is missing or corrupt ({exc})") from exc


def update_inference(path: str | Path, **values: Any) -> dict[str, Any]:
    """Add ``values`` to a checkpoint's inference settings (atomically); returns them all."""
    path = _folder(path)
    header = json.loads((path / "config.json").read_text())
    header["inference"] = {**header.get("inference", {}), **values}
    atomic.write_text(path / "config.json", json.dumps(header, indent=2) + "\n")
    return header["inference"]


def load_weights(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The state dict saved at ``path``, without building the model."""
    path = _folder(path)
    try:
        return load_file(path / "model.safetensors", device=str(map_location))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}/model.safetensors is corrupt or truncated ({exc})") from exc


def load(path: str | Path, expect: str | None = None, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model saved at ``path`` (folder or its model.safetensors) with its weights.

    ``expect`` names the architecture the caller needs; another one raises CheckpointError.
    """
    from ftlib import models

    path = _folder(path)
    header = read_header(path)
    if expect is not None and header["model"] != expect:
        raise CheckpointError(f"{path} holds a {header['model']!r} model, expected {expect!r}")
    try:
        model = models.from_config(header["model"], header["config"], strict=False)
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot rebuild model {header['model']!r} from its config ({exc})") from exc
    weights = load_weights(path, map_location)
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the {header['model']!r} config ({exc})") from exc
    model.inference = header["inference"]
    return model


def load_state(path: str | Path) -> dict[str, Any]:
    """The training state saved beside the weights (``{}`` when there is none)."""
    path = _folder(path)
    if not (path / "state.json").is_file():
        return {}
    try:
        tensors = load_file(path / "state.safetensors")
        return _unflatten(json.loads((path / "state.json").read_text()), tensors)
    except (SafetensorError, OSError, json.JSONDecodeError, KeyError) as exc:
        raise CheckpointError(f"{path}: training state is corrupt ({exc})") from exc
