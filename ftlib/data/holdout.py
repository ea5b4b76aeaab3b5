"""Validation songs made from held-out stems, for a dataset folder that has only ``instrumentals/`` and
``vocals/``.

A seeded split holds out whole groups of stems: files in one sub-folder (``vocals/<singer>/``) or
sharing a file-name prefix (the text before the first ``__`` or `` - ``, e.g. ``artist - title``) are
one group, so nothing of a held-out group reaches training. Held-out instrumental ``k`` is mixed with
held-out vocal ``k`` at a seeded gain into ``<folder>/<song>/{mixture,vocals,instrumental}.wav``; the
split (training files, held-out files, the songs and their gains) is saved in ``split.json`` and reused
when it exists, so a resumed run validates on the same songs.
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np

from ftlib import atomic, audio
from ftlib.data.augment import item_rng
from ftlib.data.sources import scan_stems
from ftlib.data.splits import split_songs
from ftlib.errors import DataError

log = logging.getLogger(__name__)

SPLIT_FILE = "split.json"
_PREFIX = re.compile(r"__| - ")


def group_of(path: Path, folder: Path) -> str:
    """The group of a stem: its sub-folder under ``folder`` and its file-name prefix."""
    relative = path.relative_to(folder)
    return "/".join((*relative.parent.parts, _PREFIX.split(relative.stem, maxsplit=1)[0]))


def _hold_out(files: list[Path], folder: Path, count: int, seed: int) -> tuple[list[Path], list[Path]]:
    groups = {group_of(p, folder) for p in files}
    if len(groups) < 2 or len(files) < count + 1:
        raise DataError(f"{folder}: {len(files)} usable files in {len(groups)} groups (sub-folders or name "
                        f"prefixes); holding out {count} validation songs needs at least {count + 1} files in 2 "
                        f"or more groups. Add stems, lower the number of validation songs or add a valid/ folder "
                        f"of songs")
    train, valid = split_songs(files, count / len(files), seed, lambda p: group_of(p, folder))
    return train, valid


def _write_song(folder: Path, name: str, instrumental: np.ndarray, vocals: np.ndarray, sample_rate: int) -> None:
    n = min(instrumental.shape[-1], vocals.shape[-1])
    instrumental, vocals = instrumental[:, :n], vocals[:, :n]
    mixture = instrumental + vocals
    peak = float(np.abs(mixture).max())
    scale = 0.99 / peak if peak > 0.99 else 1.0  # no clipping: all three scaled alike
    for stem, wave in (("mixture", mixture), ("vocals", vocals), ("instrumental", instrumental)):
        audio.save(folder / name / f"{stem}.wav", wave * scale, sample_rate)


def make_validation_songs(root: str | Path, out_dir: str | Path, songs: int = 6, seed: int = 0,
                          vocal_gain_db: tuple[float, float] = (-6.0, 3.0), sample_rate: int = 44100
                          ) -> tuple[list[Path], Path]:
    """Hold out stems of ``root`` (see the module docstring) and mix them into ``songs`` validation songs
    under ``out_dir/valid``; returns ``(training stems, validation folder)``. When ``out_dir`` already
    holds ``split.json`` the split is reused (and its songs rebuilt if missing)."""
    root, out_dir = Path(root), Path(out_dir)
    folder, split_path = out_dir / "valid", out_dir / SPLIT_FILE
    stems = scan_stems(root)
    if split_path.is_file():
        split = json.loads(split_path.read_text())
    else:
        inst_train, inst_valid = _hold_out(stems.instrumentals, root / "instrumentals", songs, seed)
        voc_train, voc_valid = _hold_out(stems.vocals, root / "vocals", songs, seed + 1)
        count = min(len(inst_valid), len(voc_valid))
        rel = lambda p: p.relative_to(root).as_posix()  # noqa: E731
        split = {"root": str(root.resolve()), "seed": seed,
                 "train": [rel(p) for p in inst_train + voc_train],
                 "valid": [rel(p) for p in inst_valid + voc_valid],
                 "songs": [{"name": f"{k:02d}_{inst_valid[k].stem}+{voc_valid[k].stem}",
                            "instrumental": rel(inst_valid[k]), "vocals": rel(voc_valid[k]),
                            "vocal_gain_db": float(item_rng(seed, 0, k).uniform(*vocal_gain_db))}
                           for k in range(count)]}
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic.write_json(split_path, split)
        log.info("held out %d instrumental and %d vocal stems of %s as %d validation songs (%s)",
                 len(inst_valid), len(voc_valid), root, count, split_path)
    for song in split["songs"]:
        if not (folder / song["name"] / "mixture.wav").is_file():
            gain = 10 ** (song["vocal_gain_db"] / 20)
            _write_song(folder, song["name"], audio.load(root / song["instrumental"], sample_rate),
                        gain * audio.load(root / song["vocals"], sample_rate), sample_rate)
    return [root / p for p in split["train"]], folder
