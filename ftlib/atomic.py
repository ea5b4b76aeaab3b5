"""Atomic writes: a file or folder appears under its final name complete, or not at all.

Everything ftlib writes (audio, checkpoints, caches, JSON) goes to a hidden temporary sibling that
is renamed onto the final path once complete; a crash or an error leaves the old version (or
nothing) in place, never half a file.

    with replacing(path) as tmp:          # a file: write tmp, it becomes path
        np.save(tmp, array)
    with replacing(folder, folder=True) as tmp:
        (tmp / "model.safetensors").write_bytes(...)
    write_json(path, {"step": 3})
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class Pending:
    """A temporary sibling of ``path`` (a file, or with ``folder=True`` a folder) that becomes
    ``path`` on :meth:`commit` and disappears on :meth:`discard`."""

    def __init__(self, path: str | Path, folder: bool = False):
        self.path, self.folder = Path(path), folder
        self.path.parent.mkdir(parents=True, exist_ok=True)
        prefix, suffix = f".{self.path.stem}-", "" if folder else self.path.suffix
        if folder:
            self.tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=self.path.parent))
        else:
            fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=self.path.parent)
            os.close(fd)
            self.tmp = Path(name)

    def commit(self) -> Path:
        """Rename the temporary onto ``path`` (a folder replaces the old one)."""
        if self.folder and self.path.exists():
            old = self.path.with_name(f".{self.path.name}-old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(self.path, old)
            os.replace(self.tmp, self.path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.tmp, self.path)
        return self.path

    def discard(self) -> None:
        """Delete the temporary, if it is still there."""
        if self.folder:
            shutil.rmtree(self.tmp, ignore_errors=True)
        elif self.tmp.exists():
            self.tmp.unlink()


@contextlib.contextmanager
def replacing(path: str | Path, folder: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; it replaces ``path`` when the block ends
    without an error and is deleted otherwise."""
    pending = Pending(path, folder)
    try:
        yield pending.tmp
        pending.commit()
    finally:
        pending.discard()


def jsonable(value: Any) -> Any:
    """Plain-JSON copy of ``value``: numpy/torch scalars become numbers, NaN/inf become None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist") and hasattr(value, "shape"):
        return jsonable(value.tolist())  # numpy/torch scalar or array -> Python number or list
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    with replacing(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON atomically (NaN and inf are stored as null)."""
    return write_text(path, json.dumps(jsonable(data), indent=2, allow_nan=False, default=str) + "\n")
