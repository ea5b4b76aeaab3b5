"""Reading a training run's ``metrics.jsonl`` back, and questions asked of it."""
from __future__ import annotations

import json
from pathlib import Path


def read_metrics(run_dir: str | Path) -> list[dict]:
    """Every record of ``<run_dir>/metrics.jsonl`` (``[]`` without one); a last line cut short by a
    crash is skipped."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def validation_losses(records: list[dict]) -> list[tuple[int, float]]:
    """``(step, valid_loss)`` pairs in step order."""
    return [(r["step"], r["valid_loss"]) for r in records if "valid_loss" in r]


def steps_to_reach(records: list[dict], loss: float) -> int | None:
    """The first step whose validation loss is at most ``loss``, or None if it never gets there."""
    return next((step for step, value in validation_losses(records) if value <= loss), None)


def context_length(run_dir: str | Path) -> list[dict]:
    """The context-length study of a run (``context_length.json``): ``[{"cropsize", "valid_loss",
    "items"}]``, or ``[]`` when the run has none."""
    path = Path(run_dir) / "context_length.json"
    return json.loads(path.read_text()) if path.is_file() else []
