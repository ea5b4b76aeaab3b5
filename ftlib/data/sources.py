"""Folder sources: ``instrumentals/`` + ``vocals/`` stems and ``valid/<song>/`` aligned songs."""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from ftlib.audio import is_audio_file
from ftlib.errors import DataError

log = logging.getLogger(__name__)


@dataclasses.dataclass
class StemFolders:
    """Unaligned training stems found under ``root``: ``instrumentals/*`` and ``vocals/*``."""

    root: Path
    instrumentals: list[Path]
    vocals: list[Path]


def audio_files(folder: Path) -> list[Path]:
    """Every audio file directly in ``folder`` (sorted), or a DataError if the folder is missing."""
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found")
    return sorted(p for p in folder.iterdir() if p.is_file() and is_audio_file(p))


def scan_stems(root: str | Path) -> StemFolders:
    """Find the stems of a dataset folder laid out as ``root/{instrumentals,vocals}/``."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found")
    found = {}
    for name in ("instrumentals", "vocals"):
        files = audio_files(root / name)
        if not files:
            raise DataError(f"{root / name}: no audio files (.wav, .flac, .ogg, .mp3) found")
        found[name] = files
    return StemFolders(root, found["instrumentals"], found["vocals"])


def scan_songs(folder: str | Path, stems: tuple[str, ...] = ("mixture", "vocals", "instrumental")) -> list[dict[str, Path]]:
    """Aligned songs ``folder/<song>/<stem>.<ext>``: one ``{"name", stem: path, ...}`` per song.

    ``instrumental`` may be absent when ``mixture`` and ``vocals`` exist (it is their difference);
    a song missing another stem is skipped with a warning.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: song folder not found")
    songs = []
    for song in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = {p.stem: p for p in song.iterdir() if is_audio_file(p)}
        missing = [s for s in stems if s not in files and not (s == "instrumental" and {"mixture", "vocals"} <= set(files))]
        if missing:
            log.warning("skipping %s: missing %s", song, ", ".join(missing))
            continue
        songs.append({"name": song.name, **{s: files[s] for s in stems if s in files}})
    if not songs:
        raise DataError(f"{folder}: no song folders with {', '.join(stems)} found")
    return songs
