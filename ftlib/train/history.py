"""Questions asked of a training log (``ftlib.runs.read_log``), and the context-length study file."""
from __future__ import annotations

import json
from pathlib import Path

from ftlib.errors import DataError


def validation_losses(records: list[dict]) -> list[tuple[int, float]]:
    """``(step, valid_loss)`` pairs in step order."""
    return [(r["step"], r["valid_loss"]) for r in records if "valid_loss" in r]


def steps_to_reach(records: list[dict], loss: float) -> int | None:
    """The first step whose validation loss is at most ``loss``, or None if it never gets there."""
    return next((step for step, value in validation_losses(records) if value <= loss), None)


CONTEXT_LENGTH_FILE = "context_length.json"


def context_length(run_dir: str | Path) -> list[dict]:
    """The context-length study of a run (``<run_dir>/context_length.json``): rows with at least
    ``cropsize`` (int) and ``valid_loss`` (float), sorted by crop size; ``[]`` when there is none."""
    path = Path(run_dir) / CONTEXT_LENGTH_FILE
    if not path.is_file():
        return []
    try:
        rows = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc}); fix or delete the file") from exc
    valid = isinstance(rows, list) and all(
        isinstance(r, dict) and isinstance(r.get("cropsize"), int) and isinstance(r.get("valid_loss"), (int, float))
        for r in rows)
    if not valid:
        raise DataError(f'{path}: expected a JSON list of {{"cropsize": int, "valid_loss": float}} rows')
    return sorted(rows, key=lambda r: r["cropsize"])


def save_context_length(run_dir: str | Path, rows: list[dict]) -> Path:
    """Write context-length rows (see :func:`ftlib.train.context_length_study`) to the run folder."""
    path = Path(run_dir) / CONTEXT_LENGTH_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(list(rows), indent=2) + "\n")
    tmp.replace(path)
    return path
