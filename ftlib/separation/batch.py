"""Batch separation: command-line inputs (audio files, folders, JSON playlists) become jobs; outputs
are named, finished songs skipped, and a bad input is reported while the others go on.

A playlist is the seed's conversion list, paths relative to the playlist file::

    {"output": "Album", "convert": ["01 intro.flac", "02 song.flac"], "copy": ["cover.jpg", "03 interlude.flac"]}

``convert`` entries are separated into ``OUTDIR/<output>/``; ``copy`` entries are copied there
verbatim: an audio file (instrumental already) as ``<name>_Instruments<ext>`` as the seed did, any
other file under its own name. Sources may be absolute paths (the seed's lists were); an ``output``
or ``copy`` entry that would put anything outside OUTDIR rejects the playlist.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from pathlib import Path
from typing import TextIO

from tqdm.auto import tqdm

from ftlib.atomic import replacing
from ftlib.audio import is_audio_file
from ftlib.errors import DataError, FtlibError
from ftlib.separation.separator import STEM_NAMES, Separator, stem_paths

PLAYLIST_KEYS = ("output", "convert", "copy")


@dataclasses.dataclass
class Job:
    """Separate ``source`` into ``out_dir``, or, with ``copy_to``, copy it there verbatim."""

    source: Path
    out_dir: Path
    copy_to: Path | None = None


@dataclasses.dataclass
class BatchResult:
    """What a batch did: outputs per separated source, skipped (already done) and failed inputs."""

    done: dict[Path, dict[str, Path]] = dataclasses.field(default_factory=dict)
    skipped: list[Path] = dataclasses.field(default_factory=list)
    failed: dict[Path, str] = dataclasses.field(default_factory=dict)


# ---------------------------------------------------------------------------------- playlists

def _inside(root: Path, relative: str, playlist: Path, what: str) -> Path:
    """``root / relative``, refused when it is absolute or resolves outside ``root``."""
    target = (root / relative).resolve()
    if not relative or Path(relative).is_absolute() or not target.is_relative_to(root.resolve()):
        raise DataError(f"{playlist}: {what} {relative!r} would write outside the output folder {root}; "
                        "use a relative path without '..'")
    return target


def read_playlist(path: str | Path, out_dir: str | Path) -> list[Job]:
    """Jobs of a JSON playlist (see the module docstring); DataError naming the problem entry."""
    path, out_dir = Path(path), Path(out_dir)
    try:
        data = json.loads(path.read_text(encoding="utf8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a readable JSON playlist ({exc})") from exc
    if not isinstance(data, dict) or set(data) - set(PLAYLIST_KEYS):
        raise DataError(f"{path}: a playlist is a JSON object with the keys {', '.join(PLAYLIST_KEYS)}")
    output = data.get("output") or "."
    lists = {k: data.get(k) or [] for k in ("convert", "copy")}
    if not isinstance(output, str) or not all(isinstance(v, list) and all(isinstance(e, str) and e for e in v)
                                              for v in lists.values()):
        raise DataError(f"{path}: 'output' must be a string, 'convert' and 'copy' lists of file paths")
    target = _inside(out_dir, output, path, "output folder") if output != "." else out_dir.resolve()
    jobs = [Job(path.parent / entry, target) for entry in lists["convert"]]
    for entry in lists["copy"]:
        name = Path(entry).name
        if is_audio_file(name):
            name = f"{Path(name).stem}_{STEM_NAMES['instrumental']}{Path(name).suffix}"
        jobs.append(Job(path.parent / entry, target, _inside(target, name, path, "copy entry")))
    return jobs


def collect_jobs(inputs: list[str | Path], out_dir: str | Path) -> tuple[list[Job], dict[Path, str]]:
    """Jobs for files (as given), folders (their audio files, sorted) and ``.json`` playlists, with
    the inputs refused up front (bad playlists, two inputs writing the same outputs)."""
    jobs: list[Job] = []
    refused: dict[Path, str] = {}
    for item in map(Path, inputs):
        if item.is_dir():
            jobs += [Job(p, Path(out_dir)) for p in sorted(item.iterdir()) if p.is_file() and is_audio_file(p)]
        elif item.suffix.lower() == ".json":
            try:
                jobs += read_playlist(item, out_dir)
            except DataError as exc:
                refused[item] = str(exc)
        else:
            jobs.append(Job(item, Path(out_dir)))
    unique: dict[Path, Job] = {}
    for job in jobs:
        key = job.copy_to or (job.out_dir.resolve() / job.source.stem)
        if key in unique:
            refused[job.source] = f"writes the same outputs as {unique[key].source}; rename one of them"
        else:
            unique[key] = job
    return list(unique.values()), refused


# ---------------------------------------------------------------------------------- the batch

def _copy(source: Path, target: Path) -> Path:
    """Copy atomically."""
    if not source.is_file():
        raise DataError(f"{source}: no such file to copy")
    with replacing(target) as tmp:
        shutil.copyfile(source, tmp)
    return target


def separate_all(separator: Separator, inputs: list[str | Path], out_dir: str | Path, fmt: str = "wav",
                 vocals: bool = True, bit_depth: int | None = None, model_names: bool = False,
                 overwrite: bool = False, progress: bool = True, out: TextIO | None = None,
                 err: TextIO | None = None) -> BatchResult:
    """Separate (or copy) every input into ``out_dir``; what ``ftlib separate`` runs.

    Songs whose outputs exist are skipped unless ``overwrite``; a failing input is reported on
    ``err`` and skipped. ``model_names`` appends ``_<model>[+<model>...]`` to output names.
    Raises DataError only when the inputs hold nothing to do.
    """
    out, err = out or sys.stdout, err or sys.stderr
    jobs, refused = collect_jobs(inputs, out_dir)
    report = BatchResult(failed=dict(refused))
    for source, reason in refused.items():
        print(f"skipped {source}: {reason}", file=err)
    if not jobs and not refused:
        raise DataError(f"no audio files found in {', '.join(map(str, inputs))}")
    suffix = "_" + "+".join(separator.names) if model_names else ""
    for job in tqdm(jobs, desc="songs", unit="song", disable=not progress or len(jobs) < 2):
        targets = {"copy": job.copy_to} if job.copy_to else stem_paths(job.source, job.out_dir, fmt, vocals, suffix)
        if not overwrite and all(t.is_file() for t in targets.values()):
            print(f"{job.source}: already done, skipped (--overwrite to redo)", file=out)
            report.skipped.append(job.source)
            continue
        try:
            if job.copy_to:
                written = {"copy": _copy(job.source, job.copy_to)}
            else:
                written = separator.separate_file(job.source, job.out_dir, fmt=fmt, vocals=vocals,
                                                  bit_depth=bit_depth, suffix=suffix, progress=progress)
        except (FtlibError, OSError) as exc:
            print(f"skipped {job.source}: {exc}", file=err)
            report.failed[job.source] = str(exc)
            continue
        report.done[job.source] = written
        print(job.source, file=out)
        for stem, path in written.items():
            print(f"  {stem}: {path}", file=out)
    return report
