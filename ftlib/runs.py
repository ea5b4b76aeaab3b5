"""Run folders: one per executed notebook or training job.

A run lives in ``runs/<YYYYmmdd-HHMMSS>-<notebook>-<tag>/`` and holds ``config.json``,
``metrics.jsonl`` (one JSON object per logged step, written by the trainer), ``metrics.json`` (final
summary), ``checkpoints/``, ``figures/*.png``, ``audio/*.wav`` and the executed notebook. Notebooks
begin with::

    run = ftlib.runs.start("00_quickstart", run_dir=run_dir, config=config.to_dict())
"""
from __future__ import annotations

import json
import logging
import math
import re
import time
from pathlib import Path
from typing import Any

from ftlib import paths

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_STAMP = re.compile(r"^\d{8}-\d{6}-")


def _sanitise(text: str) -> str:
    """Replace every run of characters outside ``[A-Za-z0-9_.-]`` by ``_``."""
    return _UNSAFE.sub("_", text).strip("_.-")


def _jsonable(value: Any) -> Any:
    """Plain-JSON copy of ``value``: numpy/torch scalars become numbers, NaN/inf become None."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist") and hasattr(value, "shape"):
        return _jsonable(value.tolist())  # numpy/torch scalar or array -> Python number or list
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _write_json(path: Path, data: Any) -> Path:
    """Write ``data`` as indented JSON atomically (temp file, then rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(_jsonable(data), indent=2, allow_nan=False, default=str) + "\n")
    tmp.replace(path)
    return path


def _with_suffix(name: str, suffix: str) -> str:
    return name if name.lower().endswith(suffix) else name + suffix


class Run:
    """A run folder; creates ``figures/``, ``audio/`` and ``checkpoints/`` inside it."""

    def __init__(self, path: str | Path):
        self.path = Path(path).resolve()
        for sub in ("figures", "audio", "checkpoints"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def figures(self) -> Path:
        return self.path / "figures"

    @property
    def audio(self) -> Path:
        return self.path / "audio"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def save_config(self, config: dict | Any) -> Path:
        """Write ``config.json``; a Config object is converted with ``to_dict()``."""
        if hasattr(config, "to_dict"):
            config = config.to_dict()
        return _write_json(self.path / "config.json", config)

    def save_figure(self, name: str, fig) -> Path:
        """Save a matplotlib figure to ``figures/<name>.png``; the figure stays open for display."""
        path = self.figures / _with_suffix(name, ".png")
        fig.savefig(path, dpi=120, bbox_inches="tight")
        return path

    def save_audio(self, name: str, audio, sample_rate: int = 44100) -> Path:
        """Write ``[C, S]`` (or ``[S]``) audio to ``audio/<name>.wav``."""
        from ftlib import audio as ftaudio

        return ftaudio.save(self.audio / _with_suffix(name, ".wav"), audio, sample_rate)

    def save_metrics(self, metrics: dict) -> Path:
        """Write the final summary ``metrics.json`` (NaN is stored as null)."""
        return _write_json(self.path / "metrics.json", metrics)

    def load_metrics(self) -> dict:
        """The ``metrics.json`` summary, or ``{}`` when the run has none yet."""
        path = self.path / "metrics.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def read_log(self) -> list[dict]:
        """Every step logged to ``metrics.jsonl``; a line cut short by a crash is skipped."""
        path = self.path / "metrics.jsonl"
        if not path.is_file():
            return []
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        records = []
        for i, line in enumerate(lines):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                if i != len(lines) - 1:
                    log.warning("%s: skipping malformed line %d", path, i + 1)
        return records


def new_run_dir(notebook: str | Path, tag: str = "", root: str | Path | None = None) -> Path:
    """Create and return a fresh ``<root>/<YYYYmmdd-HHMMSS>-<notebook stem>[-<tag>]`` folder.

    ``root`` defaults to :func:`ftlib.paths.runs_dir`. A folder made in the same second gets a
    ``-2``, ``-3``... suffix.
    """
    root = Path(root) if root is not None else paths.runs_dir()
    root.mkdir(parents=True, exist_ok=True)
    parts = [time.strftime("%Y%m%d-%H%M%S"), _sanitise(Path(notebook).stem) or "run", _sanitise(tag)]
    base = "-".join(p for p in parts if p)
    for n in range(1, 10_000):
        path = root / (base if n == 1 else f"{base}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"cannot create a unique run folder for {base} in {root}")


def start(notebook: str | Path, run_dir: str | Path | None = None, tag: str = "", config: dict | None = None) -> Run:
    """Open the run a notebook writes into: ``run_dir`` when given (papermill/``ftlib run`` pass it),
    else a new folder from :func:`new_run_dir`; ``config`` is saved to ``config.json`` when given."""
    run = Run(run_dir if run_dir else new_run_dir(notebook, tag))
    if config is not None:
        run.save_config(config)
    return run


def _guess_notebook(folder: Path) -> str:
    """The executed notebook's stem, else the part of the folder name after the timestamp."""
    notebooks = sorted(folder.glob("*.ipynb"))
    if notebooks:
        return notebooks[0].stem
    return _STAMP.sub("", folder.name).split("-")[0]


def list_runs(root: str | Path | None = None) -> list[dict]:
    """One dict per run folder, sorted by name: run, path, notebook, status and scalar metrics."""
    root = Path(root) if root is not None else paths.runs_dir()
    if not root.is_dir():
        return []
    rows = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        metrics_path = folder / "metrics.json"
        try:
            metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
        except json.JSONDecodeError:
            log.warning("%s: unreadable metrics.json", folder)
            metrics = {}
        scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool)) or v is None}
        status = "done" if metrics_path.is_file() else "incomplete"
        rows.append({**scalars, "run": folder.name, "path": folder, "notebook": _guess_notebook(folder), "status": status})
    return rows
