"""Folder sources of training and evaluation audio.

Layouts under a dataset root (any audio extension; sub-folders allowed where marked ``**``)::

    instrumentals/**/*.wav        unaligned instrumental stems   (voxaug)
    vocals/**/*.wav               unaligned vocal stems          (voxaug)
    pairs/<song>/mixture.wav      aligned real pairs, with instrumental.wav and/or vocals.wav
    valid/<song>/...              aligned validation songs, same files as pairs/
    unlabeled/**/*.wav            any music, for masked pretraining
    <musdb>/{train,test}/<song>/{mixture,vocals,drums,bass,other}.wav   MUSDB18-HQ

A song is a dict ``{"name": str, "mixture": Path, "instrumental": Path, "vocals": Path, ...}``;
when ``instrumental`` is absent it is ``mixture - vocals`` (exact in the STFT domain).
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Collection
from pathlib import Path

from ftlib.audio import is_audio_file
from ftlib.errors import DataError

log = logging.getLogger(__name__)

MUSDB_STEMS = ("mixture", "vocals", "drums", "bass", "other")


@dataclasses.dataclass
class StemFolders:
    """Unaligned training stems found under ``root``: ``instrumentals/**`` and ``vocals/**``."""

    root: Path
    instrumentals: list[Path]
    vocals: list[Path]


def audio_files(folder: str | Path, recursive: bool = False) -> list[Path]:
    """Every audio file in ``folder`` (and its sub-folders when ``recursive``; hidden ones never),
    sorted, or a DataError if the folder is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found")
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.is_file() and is_audio_file(p)
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def keep_only(paths: list[Path], keep: Collection[str | Path] | None) -> list[Path]:
    """``paths`` that are in ``keep`` (compared as absolute paths); all of them when ``keep`` is None."""
    if keep is None:
        return paths
    wanted = {Path(p).absolute() for p in keep}
    return [p for p in paths if p.absolute() in wanted]


def scan_stems(root: str | Path, keep: Collection[str | Path] | None = None) -> StemFolders:
    """Find the stems of a dataset folder laid out as ``root/{instrumentals,vocals}/**``.

    ``keep`` (e.g. one side of a split, see :mod:`ftlib.data.splits`) restricts the stems to those files.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found")
    found = {}
    for name in ("instrumentals", "vocals"):
        files = keep_only(audio_files(root / name, recursive=True), keep)
        if not files:
            among = " among the files kept" if keep is not None else ""
            raise DataError(f"{root / name}: no audio files (.wav, .flac, .ogg, .mp3) found{among}")
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
    for song in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = {p.stem: p for p in song.iterdir() if is_audio_file(p)}
        missing = [s for s in stems if s not in files and not (s == "instrumental" and {"mixture", "vocals"} <= set(files))]
        if missing:
            log.warning("skipping %s: missing %s", song, ", ".join(missing))
            continue
        keys = (*stems, "vocals") if "instrumental" in stems and "instrumental" not in files else stems
        songs.append({"name": song.name, **{k: files[k] for k in keys if k in files}})
    if not songs:
        raise DataError(f"{folder}: no song folders with {', '.join(stems)} found")
    return songs


def scan_pairs(folder: str | Path) -> list[dict[str, Path]]:
    """Aligned real pairs ``folder/<song>/{mixture, instrumental and/or vocals}`` (also a MUSDB split)."""
    return scan_songs(folder, ("mixture", "instrumental"))


def scan_musdb(root: str | Path, split: str = "train") -> list[dict[str, Path]]:
    """Songs of a MUSDB18-HQ folder ``root/<split>/<song>/{mixture,vocals,drums,bass,other}.wav``;
    the instrumental is ``mixture - vocals``."""
    folder = Path(root) / split
    if not folder.is_dir():
        raise DataError(f"{folder}: not found; a MUSDB18-HQ folder holds train/ and test/ song folders")
    return scan_songs(folder, ("mixture", "vocals"))


def scan_unlabeled(folder: str | Path) -> list[Path]:
    """Every audio file under ``folder`` (recursively): music without stems, for pretraining."""
    files = audio_files(folder, recursive=True)
    if not files:
        raise DataError(f"{folder}: no audio files (.wav, .flac, .ogg, .mp3) found")
    return files


def report_conversions(root: str | Path, sample_rate: int = 44100, channels: int = 2) -> list[str]:
    """Log (once, as one warning) and return the stems of ``root/{instrumentals,vocals}`` that will be
    converted when read: mono or multichannel files, other sample rates. Headers only: nothing is decoded."""
    import soundfile as sf

    notes = []
    for name in ("instrumentals", "vocals"):
        folder = Path(root) / name
        for path in audio_files(folder, recursive=True) if folder.is_dir() else []:
            try:
                info = sf.info(str(path))
            except Exception:  # unreadable files are reported when the cache reads them
                continue
            if info.channels != channels:
                notes.append(f"{path}: {info.channels} channel(s), {'duplicated' if info.channels == 1 else 'mixed down'} "
                             f"to {channels}")
            if info.samplerate != sample_rate:
                notes.append(f"{path}: {info.samplerate} Hz, resampled to {sample_rate} Hz")
    if notes:
        log.warning("%d stem(s) are converted when read:\n  %s", len(notes), "\n  ".join(notes))
    return notes
