"""Train/validation splits by song or by sub-folder, saved as JSON lists so runs are reproducible.

    train, valid = split_songs(files, valid_fraction=0.1, seed=0, group_by="folder")
    save_split("split.json", train, valid, root)
    train, valid = load_split("split.json", root)        # absolute paths again
    stems = scan_stems(root, keep=train)                 # or VoxAugDataset(..., files=train)

Items (files or song folders) in one group always land on the same side: ``group_by="song"``
groups by name without extension, so ``instrumentals/x.wav`` and ``vocals/x.flac`` stay together;
``group_by="folder"`` groups by parent folder, e.g. ``vocals/<artist>/*.wav``, so no artist leaks
from training into validation.
"""
from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ftlib.errors import ConfigError, DataError

log = logging.getLogger(__name__)

GROUPERS: dict[str, Callable[[Path], str]] = {"song": lambda p: p.stem, "folder": lambda p: p.parent.name}


def split_songs(items: Sequence[str | Path], valid_fraction: float, seed: int = 0,
                group_by: str | Callable[[Path], str] = "song") -> tuple[list[Path], list[Path]]:
    """Split ``items`` into ``(train, valid)`` by whole groups, in input order.

    Groups are shuffled by ``seed`` and moved to ``valid`` until it holds at least
    ``valid_fraction`` of the items; ``valid`` gets at least one group when ``valid_fraction > 0``
    and ``train`` always keeps one. ``group_by`` is ``"song"``, ``"folder"`` or ``path -> key``.
    """
    if not 0 <= valid_fraction < 1:
        raise ConfigError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
    if isinstance(group_by, str) and group_by not in GROUPERS:
        raise ConfigError(f"group_by must be one of {', '.join(GROUPERS)} or a function, got {group_by!r}")
    key = GROUPERS[group_by] if isinstance(group_by, str) else group_by
    items = [Path(p) for p in items]
    groups = sorted({key(p) for p in items})
    if valid_fraction > 0 and len(groups) < 2:
        raise DataError(f"cannot split {len(items)} items in {len(groups)} group(s): a split needs >= 2 groups")
    wanted, held, count = math.ceil(valid_fraction * len(items)), set(), 0
    for g in np.random.default_rng(seed).permutation(len(groups)):
        if count >= wanted or len(held) == len(groups) - 1:
            break
        held.add(groups[g])
        count += sum(key(p) == groups[g] for p in items)
    return [p for p in items if key(p) not in held], [p for p in items if key(p) in held]


def save_split(path: str | Path, train: Sequence[Path], valid: Sequence[Path], root: str | Path) -> Path:
    """Write ``{"train": [...], "valid": [...]}`` as paths relative to ``root`` (POSIX separators)."""
    root, path = Path(root).absolute(), Path(path)
    rel = lambda paths: [Path(p).absolute().relative_to(root).as_posix() for p in paths]  # noqa: E731
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"train": rel(train), "valid": rel(valid)}, indent=1) + "\n")
    return path


def load_split(path: str | Path, root: str | Path) -> tuple[list[Path], list[Path]]:
    """Read a split written by :func:`save_split`; every listed file must exist under ``root``."""
    path, root = Path(path), Path(root)
    try:
        data = json.loads(path.read_text())
        train, valid = [root / p for p in data["train"]], [root / p for p in data["valid"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not a readable split file ({exc})") from exc
    missing = [str(p) for p in train + valid if not p.exists()]
    if missing:
        raise DataError(f"{path} lists {len(missing)} missing file(s): {', '.join(missing[:5])}; restore them "
                        "or delete the split file to make a new one (the new split will differ)")
    return train, valid


def load_or_make_split(path: str | Path, items: Sequence[str | Path], root: str | Path, valid_fraction: float,
                       seed: int = 0, group_by: str | Callable[[Path], str] = "song") -> tuple[list[Path], list[Path]]:
    """The split saved at ``path``, or a new one of ``items`` saved there. Items the saved split does
    not list (added since) are left out of both sides, with a warning."""
    if Path(path).is_file():
        train, valid = load_split(path, root)
        listed = {p.absolute() for p in train + valid}
        new = [str(p) for p in items if Path(p).absolute() not in listed]
        if new:
            log.warning("%s: %d file(s) added since the split was made are not used: %s", path, len(new),
                        ", ".join(new[:5]))
        return train, valid
    train, valid = split_songs(items, valid_fraction, seed, group_by)
    save_split(path, train, valid, root)
    return train, valid
